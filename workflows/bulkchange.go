package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Defaults for options a bulk change did not set.
const (
	DefaultWindow       = 500
	DefaultStartsPerRun = 500
	// startPage caps the device changes read per page when starting
	// children.
	startPage = 200
)

// BulkChange runs one bulk change: it sends the device changes to
// ThingSpace in batches of compatible changes, starts one DeviceChange child
// per device (at most Window at a time), gathers their results, and ends by
// giving the default site to devices left in inventory or pending state.
//
// The device list is never an input or a single payload: device changes are
// paged from PostgreSQL. Every StartsPerRun children the workflow continues
// as new with its counters, so its history stays small whatever the size of
// the bulk change. Children outlive a continue-as-new and report by signal.
func BulkChange(ctx workflow.Context, in api.BulkChangeInput) (*api.BulkChangeResult, error) {
	b := newBulkRun(ctx, in)
	if err := b.setup(); err != nil {
		return nil, err
	}
	switch {
	case in.Recover:
		if err := b.recover(); err != nil {
			return nil, err
		}
	case in.Resume == nil:
		if err := b.start(); err != nil {
			return nil, err
		}
	}
	for {
		// Results first: the last one may be what completes the bulk change.
		b.drainResults()
		if b.allDone() {
			break
		}
		if b.shouldContinueAsNew() {
			return nil, b.continueAsNew()
		}
		var err error
		switch {
		case b.canStartChildren():
			err = b.startChildren()
		case b.canSubmit():
			err = b.submitNextBatch()
		default:
			b.awaitResult()
		}
		if err != nil {
			return nil, err
		}
	}
	return b.finish()
}

type bulkRun struct {
	ctx      workflow.Context
	logger   log.Logger
	in       api.BulkChangeInput
	st       api.BulkState
	inFlight map[int64]string // device change id → ICCID
	// order lists the device changes in flight in the order they started
	// (lazily pruned), so that nothing depends on map iteration order.
	order   []int64
	results workflow.ReceiveChannel
	started int // children started by this run
	// coalesce: results are gathered in batches (a change made after the
	// first runs were recorded, hence versioned).
	coalesce bool
	// watch: a parent that hears nothing for Timing.StallCheck asks Temporal
	// about its children (versioned like coalesce).
	watch        bool
	watchTimer   workflow.Future
	lastResultAt time.Time
}

func newBulkRun(ctx workflow.Context, in api.BulkChangeInput) *bulkRun {
	b := &bulkRun{
		ctx:      ctx,
		logger:   log.With(workflow.GetLogger(ctx), "bulkChangeId", in.BulkChangeID),
		in:       in,
		inFlight: map[int64]string{},
		results:  workflow.GetSignalChannel(ctx, api.DeviceResultSignal),
	}
	if in.Resume != nil {
		b.st = *in.Resume
		for _, f := range b.st.InFlight {
			b.inFlight[f.DeviceChangeID] = f.ICCID
			b.order = append(b.order, f.DeviceChangeID)
		}
		b.st.InFlight = nil
		b.st.Runs++
		b.st.Progress.Runs = b.st.Runs
	} else {
		b.st = api.BulkState{NextBatch: 1, Runs: 1, Progress: api.Progress{
			BulkChangeID: in.BulkChangeID, Phase: "starting", Runs: 1,
			ByOutcome: map[string]int{}, ErrorsByCode: map[string]int{},
		}}
	}
	return b
}

func (b *bulkRun) setup() error {
	b.coalesce = workflow.GetVersion(b.ctx, "coalesce-results", workflow.DefaultVersion, 1) >= 1
	b.watch = workflow.GetVersion(b.ctx, "watch-children", workflow.DefaultVersion, 1) >= 1
	b.lastResultAt = workflow.Now(b.ctx)
	return workflow.SetQueryHandler(b.ctx, api.ProgressQuery, func() (api.Progress, error) {
		p := b.st.Progress
		p.InFlight = len(b.inFlight)
		return p, nil
	})
}

// start validates the bulk change and checks ThingSpace authentication once:
// with refused credentials no device is touched. A ThingSpace outage is not a
// refusal: the check waits it out, as every ThingSpace call does (the
// attempts and the last error show in `starter status`).
func (b *bulkRun) start() error {
	var plan api.Plan
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.StartBulkChange, b.in.BulkChangeID).Get(b.ctx, &plan); err != nil {
		return fmt.Errorf("start bulk change %s: %w", b.in.BulkChangeID, err)
	}
	b.usePlan(plan)
	b.st.Progress.Phase = "checking_thingspace"
	b.touch()

	err := workflow.ExecuteActivity(withAuthCheck(b.ctx), a.CheckThingSpaceAuth, b.in.BulkChangeID).Get(b.ctx, nil)
	b.st.Progress.Phase = "running"
	b.touch()
	if err == nil {
		return nil
	}
	msg := "ThingSpace authentication failed: " + rootMessage(err)
	b.logger.Error("bulk change cannot run", "error", err)
	fail := activities.FailBulkInput{BulkChangeID: b.in.BulkChangeID, Code: db.CodeAuthFailed, Message: msg}
	if ferr := workflow.ExecuteActivity(withDB(b.ctx), a.FailBulkChange, fail).Get(b.ctx, nil); ferr != nil {
		return ferr
	}
	b.st.Progress.Phase = "failed"
	b.st.Progress.Error = msg
	b.st.Progress.Errors = plan.Total
	b.st.Progress.ErrorsByCode[db.CodeAuthFailed] = plan.Total
	return temporal.NewNonRetryableApplicationError(msg, "BulkChangeFailed", err)
}

func (b *bulkRun) usePlan(plan api.Plan) {
	b.st.Plan = withDefaults(plan)
	b.st.Progress.Total = plan.Total
	b.st.Progress.Batches = plan.Batches
	b.st.Progress.Phase = "running"
}

// recover takes over a bulk change whose previous parent run ended without
// finishing it (failed, terminated, timed out): an operator started this run
// with Recover (`starter resume-failed`). Where that run stood is read from
// PostgreSQL, not from its history: batches whose devices all left PENDING
// were sent (SubmitBatch is idempotent, so a batch sent half-way is taken up
// where it stood, never sent twice); device changes of those batches that
// have their outcome are counted; the others get their child again, and a
// child still running from the failed run is adopted (it reports to this
// workflow ID).
func (b *bulkRun) recover() error {
	var rec activities.RecoveredBulk
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.RecoverBulkChange, b.in.BulkChangeID).Get(b.ctx, &rec); err != nil {
		return fmt.Errorf("recover bulk change %s: %w", b.in.BulkChangeID, err)
	}
	b.usePlan(rec.Plan)
	b.st.NextBatch = rec.NextBatch
	b.st.RecoveredBelow = rec.NextBatch
	b.st.Queued = rec.Unfinished
	p := &b.st.Progress
	p.BatchesSent = rec.NextBatch - 1
	p.Submitted = rec.Submitted
	p.Processed, p.Errors = rec.Processed, rec.Errors
	for k, v := range rec.ByOutcome {
		p.ByOutcome[k] = v
	}
	for k, v := range rec.ErrorsByCode {
		p.ErrorsByCode[k] = v
	}
	p.Recovered++
	b.touch()
	b.logger.Info("recovered bulk change", "nextBatch", rec.NextBatch, "unfinished", rec.Unfinished)
	return nil
}

func withDefaults(p api.Plan) api.Plan {
	if p.Options.Window <= 0 {
		p.Options.Window = DefaultWindow
	}
	if p.Options.StartsPerRun <= 0 {
		p.Options.StartsPerRun = DefaultStartsPerRun
	}
	return p
}

func (b *bulkRun) allDone() bool {
	return b.submissionDone() && b.st.Queued == 0 && len(b.inFlight) == 0
}

func (b *bulkRun) submissionDone() bool {
	return b.st.NextBatch > b.st.Plan.Batches || b.st.StopSubmitting != ""
}

// canStartChildren: submitted device changes wait for a child and the window
// has room.
func (b *bulkRun) canStartChildren() bool {
	return b.st.Queued > 0 && len(b.inFlight) < b.st.Plan.Options.Window
}

// canSubmit: batches remain and fewer than a window of submitted devices
// wait for their child. Submission runs at most one window ahead of the
// children: ThingSpace's callbacks for devices without a child yet are
// stored and found when the child starts.
func (b *bulkRun) canSubmit() bool {
	return !b.submissionDone() && b.st.Queued < b.st.Plan.Options.Window
}

func (b *bulkRun) submitNextBatch() error {
	n := b.st.NextBatch
	var res activities.SubmitBatchResult
	err := workflow.ExecuteActivity(withThingSpace(b.ctx), a.SubmitBatch,
		activities.SubmitBatchInput{BulkChangeID: b.in.BulkChangeID, BatchNo: n}).Get(b.ctx, &res)
	if err != nil {
		// Only a refusal of our credentials (or a bug) gets here: ThingSpace
		// outages are retried without end. Nothing more can be sent.
		return b.stopSubmitting(n, err)
	}
	b.st.NextBatch++
	b.st.Queued += res.Devices
	b.st.Progress.BatchesSent++
	b.st.Progress.Submitted += res.Devices
	if res.Limit != nil {
		lim := *res.Limit
		lim.BatchesWaiting = b.st.Plan.Batches - b.st.Progress.BatchesSent
		lim.DevicesWaiting = b.st.Plan.Total - b.st.Progress.Submitted
		b.st.Progress.Limit = &lim
	}
	b.touch()
	return nil
}

// stopSubmitting ends the device changes no request will carry and lets the
// children already running finish.
func (b *bulkRun) stopSubmitting(fromBatch int, cause error) error {
	code := db.CodeSubmitFailed
	if isType(cause, activities.ErrTypeInvalidCredentials) {
		code = db.CodeAuthFailed
	}
	msg := fmt.Sprintf("batch %d could not be sent: %s", fromBatch, rootMessage(cause))
	b.logger.Error("stopping submission", "batch", fromBatch, "error", cause)
	var ended int
	in := activities.FailUnsentInput{BulkChangeID: b.in.BulkChangeID, FromBatch: fromBatch, Code: code, Message: msg}
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.FailUnsent, in).Get(b.ctx, &ended); err != nil {
		return err
	}
	b.st.StopSubmitting = msg
	b.st.Progress.Error = msg
	b.st.Progress.Errors += ended
	b.st.Progress.ErrorsByCode[code] += ended
	b.touch()
	return nil
}

// startChildren starts the next page of children, then waits until each one
// has started, so that none is half-started at a continue-as-new.
func (b *bulkRun) startChildren() error {
	limit := min(b.st.Plan.Options.Window-len(b.inFlight), b.st.Queued, startPage)
	var page []activities.DeviceToStart
	in := activities.ListDevicesInput{BulkChangeID: b.in.BulkChangeID, After: b.st.Cursor, MaxBatch: b.st.NextBatch - 1, Limit: limit,
		UnfinishedBelowBatch: b.st.RecoveredBelow}
	if err := workflow.ExecuteLocalActivity(withLocalDB(b.ctx), a.ListDevicesToStart, in).Get(b.ctx, &page); err != nil {
		return err
	}
	if len(page) == 0 {
		// The counters and the database disagree; trust the database.
		b.logger.Warn("no device changes left to start", "queued", b.st.Queued)
		b.st.Queued = 0
		return nil
	}
	type startedChild struct {
		dev    activities.DeviceToStart
		future workflow.ChildWorkflowFuture
	}
	children := make([]startedChild, 0, len(page))
	for _, d := range page {
		children = append(children, startedChild{d, b.startChild(d)})
		b.inFlight[d.ID] = d.ICCID
		b.order = append(b.order, d.ID)
		b.st.Cursor = api.Cursor{BatchNo: d.BatchNo, Seq: d.Seq}
		b.st.Queued--
		b.started++
		b.st.Progress.Started++
	}
	for _, c := range children {
		err := c.future.GetChildWorkflowExecution().Get(b.ctx, nil)
		var already *temporal.ChildWorkflowExecutionAlreadyStartedError
		switch {
		case err == nil, errors.As(err, &already):
			// Already running (the parent was reset): it reports to us too.
		default:
			b.logger.Error("device workflow did not start", "iccid", c.dev.ICCID, "error", err)
			b.childNotStarted(c.dev, err)
		}
	}
	b.touch()
	return nil
}

// childNotStarted ends the device change whose workflow could not start:
// nothing else would ever record it.
func (b *bulkRun) childNotStarted(d activities.DeviceToStart, cause error) {
	res := api.DeviceResult{DeviceChangeID: d.ID, ICCID: d.ICCID, Operation: d.Operation,
		Status: db.ChangeError, ErrorCode: db.CodeWorkflowStartFailed}
	if workflow.GetVersion(b.ctx, "record-start-failure", workflow.DefaultVersion, 1) >= 1 {
		in := activities.EndDeviceChangeInput{DeviceChangeID: d.ID, Code: db.CodeWorkflowStartFailed,
			Message: "its device workflow could not start: " + rootMessage(cause)}
		if err := workflow.ExecuteActivity(withDB(b.ctx), a.EndDeviceChange, in).Get(b.ctx, &res); err != nil {
			b.logger.Error("could not record the device change", "iccid", d.ICCID, "error", err)
		}
	}
	b.record(res)
}

func (b *bulkRun) startChild(d activities.DeviceToStart) workflow.ChildWorkflowFuture {
	ctx := workflow.WithChildOptions(b.ctx, workflow.ChildWorkflowOptions{
		WorkflowID: api.DeviceChangeWorkflowID(b.in.BulkChangeID, d.ICCID),
		// Children outlive the parent's continue-as-new and report their
		// result by signal.
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	return workflow.ExecuteChildWorkflow(ctx, DeviceChange, api.DeviceChangeInput{
		BulkChangeID:     b.in.BulkChangeID,
		DeviceChangeID:   d.ID,
		ICCID:            d.ICCID,
		Operation:        d.Operation,
		AccountName:      b.st.Plan.AccountName,
		ParentWorkflowID: workflow.GetInfo(b.ctx).WorkflowExecution.ID,
		Options:          b.st.Plan.Options,
	})
}

// coalesceAbove and coalesceFor: with this many children in flight,
// results arrive close together; after the first one the workflow waits a
// moment and takes the others in the same workflow task, instead of one
// workflow task per result. That is most of the server's work per device.
const (
	coalesceAbove = 50
	coalesceFor   = 500 * time.Millisecond
)

func (b *bulkRun) awaitResult() {
	if !b.watch {
		var r api.DeviceResult
		b.results.Receive(b.ctx, &r)
		b.record(r)
		b.pauseToCoalesce()
		return
	}
	// One timer at a time, re-armed only when it fires: results arriving
	// cost no timer events.
	if b.watchTimer == nil {
		b.watchTimer = workflow.NewTimer(b.ctx, b.stallCheck())
	}
	got, fired := false, false
	sel := workflow.NewSelector(b.ctx)
	sel.AddReceive(b.results, func(ch workflow.ReceiveChannel, _ bool) {
		var r api.DeviceResult
		ch.Receive(b.ctx, &r)
		b.record(r)
		got = true
	})
	sel.AddFuture(b.watchTimer, func(workflow.Future) {
		b.watchTimer = nil
		fired = true
	})
	sel.Select(b.ctx)
	if got {
		b.pauseToCoalesce()
	}
	if fired && workflow.Now(b.ctx).Sub(b.lastResultAt) >= b.stallCheck() {
		b.checkChildren()
	}
}

func (b *bulkRun) pauseToCoalesce() {
	if b.coalesce && len(b.inFlight) >= coalesceAbove {
		_ = workflow.Sleep(b.ctx, coalesceFor)
	}
}

// defaultStallCheck is how long a parent waits without any result before it
// asks Temporal whether its children still run.
const defaultStallCheck = 10 * time.Minute

func (b *bulkRun) stallCheck() time.Duration {
	if d := b.st.Plan.Options.Timing.StallCheck; d > 0 {
		return d
	}
	return defaultStallCheck
}

// checkChildren notices device workflows that ended without reporting
// (failed, terminated by an operator, timed out): their device change is
// recorded ERROR with DEVICE_WORKFLOW_ENDED (or keeps the outcome it had),
// and counted, so the bulk change never waits forever for them.
func (b *bulkRun) checkChildren() {
	in := activities.CheckDeviceWorkflowsInput{BulkChangeID: b.in.BulkChangeID}
	for _, id := range b.order {
		if iccid, ok := b.inFlight[id]; ok {
			in.InFlight = append(in.InFlight, api.InFlight{DeviceChangeID: id, ICCID: iccid})
		}
	}
	var ended []api.DeviceResult
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.CheckDeviceWorkflows, in).Get(b.ctx, &ended); err != nil {
		b.logger.Error("could not check the device workflows", "error", err)
		return
	}
	for _, r := range ended {
		b.logger.Warn("device workflow ended without reporting", "iccid", r.ICCID, "errorCode", r.ErrorCode)
		b.record(r)
	}
	b.lastResultAt = workflow.Now(b.ctx)
}

func (b *bulkRun) drainResults() {
	for {
		var r api.DeviceResult
		if !b.results.ReceiveAsync(&r) {
			return
		}
		b.record(r)
	}
}

// record counts a child's result. Results of children not in flight
// (duplicates) are ignored.
func (b *bulkRun) record(r api.DeviceResult) {
	if _, ok := b.inFlight[r.DeviceChangeID]; !ok {
		return
	}
	delete(b.inFlight, r.DeviceChangeID)
	b.lastResultAt = workflow.Now(b.ctx)
	p := &b.st.Progress
	if r.Status == db.ChangeProcessed {
		p.Processed++
		p.ByOutcome[r.Outcome]++
	} else {
		p.Errors++
		p.ErrorsByCode[r.ErrorCode]++
	}
	if r.BillingError {
		p.BillingErrors++
	}
	b.touch()
}

func (b *bulkRun) shouldContinueAsNew() bool {
	return b.started >= b.st.Plan.Options.StartsPerRun || workflow.GetInfo(b.ctx).GetContinueAsNewSuggested()
}

// continueAsNew carries the counters, the cursor and the children in flight
// into a new run. Every child started by this run has started (startChildren
// waited for it) and every result received is counted.
func (b *bulkRun) continueAsNew() error {
	b.drainResults()
	st := b.st
	st.InFlight = make([]api.InFlight, 0, len(b.inFlight))
	for _, id := range b.order {
		if iccid, ok := b.inFlight[id]; ok {
			st.InFlight = append(st.InFlight, api.InFlight{DeviceChangeID: id, ICCID: iccid})
		}
	}
	b.logger.Info("continuing as new", "run", st.Runs, "started", st.Progress.Started, "inFlight", len(st.InFlight))
	return workflow.NewContinueAsNewError(b.ctx, BulkChange, api.BulkChangeInput{BulkChangeID: b.in.BulkChangeID, Resume: &st})
}

// finish gives the default site and marks the bulk change FINISHED. A bulk
// change is never FINISHED while one of its device changes owes a Rev.io
// step that has not ended (billing PENDING): such a step can only be
// stranded here, since every child ends its step before it reports, so a
// billing retry of the stranded steps runs first.
func (b *bulkRun) finish() (*api.BulkChangeResult, error) {
	b.st.Progress.Phase = "finishing"
	b.touch()
	var fin activities.FinishResult
	for attempt := 1; ; attempt++ {
		in := activities.FinishInput{BulkChangeID: b.in.BulkChangeID, DefaultSite: b.st.Plan.Options.DefaultSite}
		// A fresh value each time: a result without billingOwed must not
		// keep the previous attempt's.
		fin = activities.FinishResult{}
		if err := workflow.ExecuteActivity(withDB(b.ctx), a.FinishBulkChange, in).Get(b.ctx, &fin); err != nil {
			return nil, err
		}
		if fin.BillingOwed == 0 {
			break
		}
		if err := b.settleStrandedBilling(attempt, fin.BillingOwed); err != nil {
			return nil, err
		}
	}
	b.st.Progress.Phase = "finished"
	b.touch()
	return &api.BulkChangeResult{
		BulkChangeID: b.in.BulkChangeID, Status: db.BulkFinished, Total: b.st.Plan.Total,
		Processed: fin.Processed, Errors: fin.Errors, SitesSet: fin.SitesSet, Error: b.st.Progress.Error,
		Progress: b.st.Progress,
	}, nil
}

// settleStrandedBilling runs the stranded Rev.io steps as a billing retry
// child; a step whose device workflow still runs is left to it, and checked
// again a minute later.
func (b *bulkRun) settleStrandedBilling(attempt, owed int) error {
	b.st.Progress.Phase = "settling_billing"
	b.st.Progress.BillingPending = owed
	b.touch()
	b.logger.Warn("Rev.io steps owed at the end of the bulk change", "owed", owed, "attempt", attempt)
	ctx := workflow.WithChildOptions(b.ctx, workflow.ChildWorkflowOptions{
		WorkflowID: api.BillingSettleWorkflowID(b.in.BulkChangeID, b.st.Runs, attempt),
	})
	var res api.BillingRetryResult
	in := api.BillingRetryInput{BulkChangeID: b.in.BulkChangeID, StrandedOnly: true}
	if err := workflow.ExecuteChildWorkflow(ctx, BillingRetry, in).Get(b.ctx, &res); err != nil {
		return fmt.Errorf("settle stranded Rev.io steps: %w", err)
	}
	b.st.Progress.BillingErrors += res.Failed
	if res.Attempted == 0 {
		return workflow.Sleep(b.ctx, time.Minute)
	}
	return nil
}

func (b *bulkRun) touch() { b.st.Progress.UpdatedAt = workflow.Now(b.ctx) }
