package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/change"
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
	var err error
	if b.state.Tree != nil || in.Resume == nil && b.startsTree() {
		err = b.runTree()
	} else {
		b.adopting = false
		err = b.runWindow()
	}
	if err != nil {
		return nil, err
	}
	return b.finish()
}

// runWindow is the sliding window: send the batches, start a child per
// device (at most Window at a time), gather their results. A bulk change
// runs it itself, or each of its shards does over its own batches.
func (b *bulkRun) runWindow() error {
	for {
		// Results first: the last one may be what completes the window.
		b.drainResults()
		b.reportIfDue()
		if b.allDone() {
			return nil
		}
		if b.shouldContinueAsNew() {
			return b.continueAsNew()
		}
		var err error
		switch {
		case b.canStartChildren():
			err = b.startChildren()
		case b.canSend():
			err = b.sendNextBatch()
		default:
			b.awaitResult()
		}
		if err != nil {
			return err
		}
	}
}

type bulkRun struct {
	ctx      workflow.Context
	logger   log.Logger
	in       api.BulkChangeInput
	state    api.BulkState
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
	// sending: a SendBatch is in flight (a pause or a cancellation waits
	// for its answer).
	sending bool
	// epoch counts operators' requests, so that a wait ends on one.
	epoch int
	// searchable: the status search attribute is kept current (versioned).
	searchable bool
	// startWithoutWaiting: the parent goes on while its children's starts
	// are being confirmed (versioned); starting holds those not yet
	// confirmed, unstarted counts those that could not start.
	startWithoutWaiting bool
	starting            map[int64]bool
	unstarted           int
	// notifies: events are told to people (versioned).
	notifies bool
	// The root of a sharded bulk change (bulktree.go): the shards whose
	// start is not yet confirmed, the reports received by this run, and
	// what stops the tree (a shard that could not start).
	reports       workflow.ReceiveChannel
	shardStarting map[int]bool
	received      int
	treeErr       error
	recovered     bool
	shardsEnded   []int
	// A shard (bulkshard.go): results and changes not yet reported to the
	// root, when it last reported, the timer that makes it report a
	// change that came alone, its reports in flight, and whether its
	// control coroutine is applying a request.
	dirty          bool
	unreported     int
	lastReportAt   time.Time
	reportTimer    workflow.Future
	reportsPending int
	controlBusy    bool
	// adopting: a recovered root has not yet decided its shape, or not yet
	// adopted the shards the failed run left running; an operator's request
	// waits for it (awaitAdoption).
	adopting bool
}

func newBulkRun(ctx workflow.Context, in api.BulkChangeInput) *bulkRun {
	b := newRun(ctx, in.BulkChangeID, in)
	b.adopting = in.Recover
	if in.Resume != nil {
		b.resumeFrom(*in.Resume)
	} else {
		b.state = api.BulkState{NextBatch: 1, Runs: 1, Progress: api.Progress{
			BulkChangeID: in.BulkChangeID, Phase: change.PhaseStarting, Runs: 1,
			Tally: change.NewTally(),
		}}
	}
	return b
}

// newRun is the part of a run common to a bulk change and a shard.
func newRun(ctx workflow.Context, bulkChangeID string, in api.BulkChangeInput) *bulkRun {
	return &bulkRun{
		ctx:           ctx,
		logger:        log.With(workflow.GetLogger(ctx), "bulkChangeId", bulkChangeID),
		in:            in,
		inFlight:      map[int64]string{},
		starting:      map[int64]bool{},
		shardStarting: map[int]bool{},
		results:       workflow.GetSignalChannel(ctx, api.DeviceResultSignal),
		reports:       workflow.GetSignalChannel(ctx, api.ShardReportSignal),
	}
}

// resumeFrom takes the state the previous run continued as new with.
func (b *bulkRun) resumeFrom(st api.BulkState) {
	b.state = st
	for _, f := range b.state.InFlight {
		b.inFlight[f.DeviceChangeID] = f.ICCID
		b.order = append(b.order, f.DeviceChangeID)
	}
	b.state.InFlight = nil
	b.state.Runs++
	b.state.Progress.Runs = b.state.Runs
}

func (b *bulkRun) setup() error {
	b.coalesce = workflow.GetVersion(b.ctx, versionCoalesceResults, workflow.DefaultVersion, 1) >= 1
	b.watch = workflow.GetVersion(b.ctx, versionWatchChildren, workflow.DefaultVersion, 1) >= 1
	b.searchable = workflow.GetVersion(b.ctx, versionStatusSearchAttribute, workflow.DefaultVersion, 1) >= 1
	// Not waiting for starts needs the watched wait (awaitResult), which
	// wakes when a start fails.
	b.startWithoutWaiting = b.watch &&
		workflow.GetVersion(b.ctx, versionStartWithoutWaiting, workflow.DefaultVersion, 1) >= 1
	b.notifies = workflow.GetVersion(b.ctx, versionNotify, workflow.DefaultVersion, 1) >= 1
	b.lastResultAt = workflow.Now(b.ctx)
	if err := b.setupControl(); err != nil {
		return err
	}
	return b.setProgressQuery()
}

func (b *bulkRun) setProgressQuery() error {
	return workflow.SetQueryHandler(b.ctx, api.ProgressQuery, func() (api.Progress, error) {
		p := b.state.Progress
		if b.state.Tree == nil {
			// A tree's root has its shards' sum.
			p.InFlight = len(b.inFlight)
		}
		return p, nil
	})
}

func (b *bulkRun) allDone() bool {
	return b.sendingDone() && b.state.Queued == 0 && len(b.inFlight) == 0
}

// sendingDone: every batch was sent, or nothing more will be (sending
// stopped, or the unsent device changes were cancelled).
func (b *bulkRun) sendingDone() bool {
	return b.state.NextBatch > b.lastBatch() || b.state.StopSending != "" || b.state.UnsentCancelled
}

// lastBatch is the last batch this run sends: the bulk change's, or its
// shard's.
func (b *bulkRun) lastBatch() int {
	if b.state.Shard != nil {
		return b.state.Shard.Shard.LastBatch
	}
	return b.state.Plan.Batches
}

// canStartChildren: sent device changes wait for a child, the window
// has room, and no operator paused the bulk change.
func (b *bulkRun) canStartChildren() bool {
	return b.state.Queued > 0 && len(b.inFlight) < b.state.Plan.Options.Window && !b.state.Control.Paused
}

// canSend: batches remain and fewer than a window of sent devices wait
// for their child. Sending runs at most one window ahead of the
// children: ThingSpace's callbacks for devices without a child yet are
// stored and found when the child starts.
func (b *bulkRun) canSend() bool {
	return !b.sendingDone() && b.state.Queued < b.state.Plan.Options.Window &&
		!b.state.Control.Paused && b.state.Control.Cancelled == nil
}

func (b *bulkRun) shouldContinueAsNew() bool {
	return b.started >= b.state.Plan.Options.StartsPerRun || workflow.GetInfo(b.ctx).GetContinueAsNewSuggested()
}

// continueAsNew carries the counters, the cursor and the children in flight
// into a new run. Every child started by this run has started (no start may
// be half-done across runs: its answer would reach a run that is gone) and
// every result received is counted.
func (b *bulkRun) continueAsNew() error {
	if err := b.awaitStarts(); err != nil {
		return err
	}
	b.drainResults()
	// An operator's request being handled finishes in this run.
	if err := workflow.Await(b.ctx, func() bool { return workflow.AllHandlersFinished(b.ctx) }); err != nil {
		return err
	}
	if b.state.Shard != nil {
		if err := b.awaitShardQuiet(); err != nil {
			return err
		}
	}
	b.drainResults()
	b.drainReports()
	if t := b.state.Tree; t != nil && len(b.shardsEnded) > 0 {
		// Their end reached this run only: the next starts them again.
		t.Restart = append(t.Restart, b.shardsEnded...)
	}
	next := b.state
	next.InFlight = make([]api.InFlight, 0, len(b.inFlight))
	for _, id := range b.order {
		if iccid, ok := b.inFlight[id]; ok {
			next.InFlight = append(next.InFlight, api.InFlight{DeviceChangeID: id, ICCID: iccid})
		}
	}
	b.logger.Info("continuing as new", "run", next.Runs, "started", next.Progress.Started, "inFlight", len(next.InFlight))
	if next.Shard != nil {
		return b.shardContinueAsNew(next)
	}
	return workflow.NewContinueAsNewError(
		b.ctx,
		BulkChange,
		api.BulkChangeInput{BulkChangeID: b.in.BulkChangeID, Tenant: b.in.Tenant, Resume: &next},
	)
}

// awaitStarts waits until no child start is pending. A shard keeps
// reporting meanwhile (the starts of a window take tens of seconds on a
// busy server, and the root's progress would stand still).
func (b *bulkRun) awaitStarts() error {
	for {
		b.armReportTimer()
		if err := workflow.Await(b.ctx, func() bool {
			return len(b.starting) == 0 && len(b.shardStarting) == 0 || b.reportTimerFired()
		}); err != nil {
			return err
		}
		if len(b.starting) == 0 && len(b.shardStarting) == 0 {
			return nil
		}
		b.drainResults()
		b.reportIfDue()
	}
}

// touch marks the progress updated, and says where the bulk change stands
// in the Web UI's current details.
func (b *bulkRun) touch() {
	p := &b.state.Progress
	p.UpdatedAt = workflow.Now(b.ctx)
	b.dirty = true
	inFlight := len(b.inFlight)
	if b.state.Tree != nil {
		inFlight = p.InFlight
	}
	details := fmt.Sprintf("%s · %d of %d device changes done (%d processed, %d errors) · %d of %d ThingSpace requests sent · %d device workflows in flight",
		p.Phase, p.Processed+p.Errors, p.Total, p.Processed, p.Errors, p.BatchesSent, p.Batches, inFlight)
	switch {
	case b.state.Tree != nil:
		details += fmt.Sprintf(" · shards: %d of %d done, %d running", p.ShardsDone, p.Shards, p.ShardsRunning)
	case b.state.Shard != nil:
		details = fmt.Sprintf("shard %d of bulk change %s · ", b.state.Shard.Shard.No, b.in.BulkChangeID) + details
	}
	if p.Waiting != "" {
		details += " · waiting for " + p.Waiting
	}
	if b.state.Control.Paused {
		details += " · paused"
	}
	workflow.SetCurrentDetails(b.ctx, details)
}

// tenant is the bulk change's tenant: its input's, else its plan's (a
// parent started without one: `starter resume-failed`, or a submission
// older than tenants); "" for a parent recorded before tenants.
func (b *bulkRun) tenant() string {
	if b.in.Tenant != "" {
		return b.in.Tenant
	}
	return b.state.Plan.Tenant
}
