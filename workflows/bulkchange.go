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
	if in.Resume == nil {
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
	return workflow.SetQueryHandler(b.ctx, api.ProgressQuery, func() (api.Progress, error) {
		p := b.st.Progress
		p.InFlight = len(b.inFlight)
		return p, nil
	})
}

// start validates the bulk change and checks ThingSpace authentication once:
// with refused credentials no device is touched.
func (b *bulkRun) start() error {
	var plan api.Plan
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.StartBulkChange, b.in.BulkChangeID).Get(b.ctx, &plan); err != nil {
		return fmt.Errorf("start bulk change %s: %w", b.in.BulkChangeID, err)
	}
	b.st.Plan = withDefaults(plan)
	b.st.Progress.Total = plan.Total
	b.st.Progress.Batches = plan.Batches
	b.st.Progress.Phase = "running"
	b.touch()

	err := workflow.ExecuteActivity(withAuthCheck(b.ctx), a.CheckThingSpaceAuth).Get(b.ctx, nil)
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
	in := activities.ListDevicesInput{BulkChangeID: b.in.BulkChangeID, After: b.st.Cursor, MaxBatch: b.st.NextBatch - 1, Limit: limit}
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
			b.record(api.DeviceResult{DeviceChangeID: c.dev.ID, ICCID: c.dev.ICCID, Operation: c.dev.Operation,
				Status: db.ChangeError, ErrorCode: "WORKFLOW_START_FAILED"})
		}
	}
	b.touch()
	return nil
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
	var r api.DeviceResult
	b.results.Receive(b.ctx, &r)
	b.record(r)
	if b.coalesce && len(b.inFlight) >= coalesceAbove {
		_ = workflow.Sleep(b.ctx, coalesceFor)
	}
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

func (b *bulkRun) finish() (*api.BulkChangeResult, error) {
	b.st.Progress.Phase = "finishing"
	b.touch()
	var fin activities.FinishResult
	in := activities.FinishInput{BulkChangeID: b.in.BulkChangeID, DefaultSite: b.st.Plan.Options.DefaultSite}
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.FinishBulkChange, in).Get(b.ctx, &fin); err != nil {
		return nil, err
	}
	b.st.Progress.Phase = "finished"
	b.touch()
	return &api.BulkChangeResult{
		BulkChangeID: b.in.BulkChangeID, Status: db.BulkFinished, Total: b.st.Plan.Total,
		Processed: fin.Processed, Errors: fin.Errors, SitesSet: fin.SitesSet, Error: b.st.Progress.Error,
		Progress: b.st.Progress,
	}, nil
}

func (b *bulkRun) touch() { b.st.Progress.UpdatedAt = workflow.Now(b.ctx) }
