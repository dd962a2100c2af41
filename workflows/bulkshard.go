package workflows

import (
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// A shard reports to its root when reportEvery results are unreported, or
// reportAfter after its first unreported change: the root's progress is
// that late at most, and costs one signal per reportEvery devices.
const (
	reportEvery = 200
	reportAfter = 10 * time.Second
)

// BulkChangeShard runs one shard of a sharded bulk change: the sliding
// window of BulkChange over the shard's own batches. Its device workflows
// report to it; it reports to the root in batches (cumulative counts, the
// operators' requests it has applied) and ends when every device change of
// its batches has ended. The root alone starts, finishes and talks to
// operators; a shard takes pause, resume and cancellation from the root.
func BulkChangeShard(ctx workflow.Context, in api.ShardInput) (*api.ShardResult, error) {
	b := newShardRun(ctx, in)
	if err := b.setupShard(); err != nil {
		return nil, err
	}
	if in.Recover && in.Resume == nil {
		if err := b.recoverShard(); err != nil {
			return nil, err
		}
	}
	if err := b.runWindow(); err != nil {
		return nil, err
	}
	b.state.Progress.Phase = change.PhaseFinished
	b.touch()
	last := b.report(b.ctx, true)
	// Completing at once would drop the report.
	if err := workflow.Await(b.ctx, func() bool { return b.reportsPending == 0 }); err != nil {
		return nil, err
	}
	return &api.ShardResult{Report: last}, nil
}

// shardWindow is a shard's part of the bulk change's window: bulk.window
// device workflows in flight per bulk change, whatever its shape. A window
// per shard multiplied the starts a server has in flight with the shards
// and made each start that much slower, and the server's work per device
// dearer (docs/benchmarks.md).
func shardWindow(o api.Options) int {
	at := max(o.ShardsAtOnce, 1)
	return max((o.Window+at-1)/at, 1)
}

func newShardRun(ctx workflow.Context, in api.ShardInput) *bulkRun {
	b := newRun(ctx, in.BulkChangeID, api.BulkChangeInput{BulkChangeID: in.BulkChangeID, Tenant: in.Tenant})
	b.logger = log.With(b.logger, "shard", in.Shard.No)
	if in.Resume != nil {
		b.resumeFrom(*in.Resume)
		return b
	}
	sh := in.Shard
	b.state = api.BulkState{
		Plan:      in.Plan,
		NextBatch: sh.FirstBatch,
		// Before the first device of its first batch (seq counts from 1).
		Cursor: api.Cursor{BatchNo: sh.FirstBatch, Seq: -1},
		Runs:   1,
		Progress: api.Progress{
			BulkChangeID: in.BulkChangeID, Phase: change.PhaseRunning, Runs: 1, Status: change.BulkRunning,
			Total: sh.Devices, Batches: sh.LastBatch - sh.FirstBatch + 1, Tally: change.NewTally(),
		},
		Shard: &api.ShardState{Shard: sh, RootWorkflowID: in.RootWorkflowID},
	}
	b.applyControl(in.Control)
	// Nothing is in flight yet: the root's requests so far are applied.
	b.state.Shard.Epoch = in.Control.Epoch
	return b
}

// setupShard: a shard is a workflow type younger than every version of
// BulkChange, so it takes each change at its newest without a marker; it
// tells no one (its root does).
func (b *bulkRun) setupShard() error {
	b.coalesce, b.watch, b.startWithoutWaiting = true, true, true
	b.lastResultAt = workflow.Now(b.ctx)
	b.lastReportAt = b.lastResultAt
	// Touched: the root hears from a new run within reportAfter.
	b.touch()
	workflow.Go(b.ctx, b.takeControl)
	return b.setProgressQuery()
}

// recoverShard takes over the shard's part from PostgreSQL, as recover
// does a whole bulk change's: batches whose devices all left PENDING were
// sent; their device changes without an outcome get their child again (one
// still running is adopted: it reports to this workflow ID).
func (b *bulkRun) recoverShard() error {
	var rec activities.RecoveredShard
	in := activities.RecoverShardInput{BulkChangeID: b.in.BulkChangeID, Shard: b.state.Shard.Shard}
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.RecoverShard, in).Get(b.ctx, &rec); err != nil {
		return err
	}
	b.state.NextBatch = rec.NextBatch
	b.state.RecoveredBelow = rec.NextBatch
	b.state.Queued = rec.Unfinished
	p := &b.state.Progress
	p.BatchesSent = rec.NextBatch - b.state.Shard.Shard.FirstBatch
	p.DevicesSent = rec.DevicesSent
	p.Tally.Add(rec.Tally)
	p.Recovered++
	b.touch()
	b.logger.Info("recovered shard", "nextBatch", rec.NextBatch, "unfinished", rec.Unfinished)
	return nil
}

// takeControl applies the root's ShardControl signals, in epoch order, and
// acknowledges each in a report once no request of the shard is in flight:
// the root's pause or cancellation returns only then.
func (b *bulkRun) takeControl(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, api.ShardControlSignal)
	for {
		var c api.ShardControl
		ch.Receive(ctx, &c)
		if c.Epoch <= b.state.Shard.Epoch {
			continue
		}
		b.controlBusy = true
		b.applyControl(c)
		// The main loop sends nothing new once paused or cancelled; wait
		// for the request it may have in flight.
		_ = workflow.Await(ctx, func() bool { return !b.sending })
		b.state.Shard.Epoch = c.Epoch
		b.epoch++
		b.report(ctx, false)
		b.controlBusy = false
	}
}

func (b *bulkRun) applyControl(c api.ShardControl) {
	ctl := &b.state.Control
	ctl.Paused = c.Paused
	if c.Cancelled && ctl.Cancelled == nil {
		ctl.Cancelled = &api.OperatorAction{By: "bulk change", At: workflow.Now(b.ctx)}
		ctl.Paused = false
		// Its root ends the device changes not yet sent.
		b.state.UnsentCancelled = true
	}
	b.touch()
}

// reportIfDue reports to the root when enough has changed, or a change has
// waited long enough.
func (b *bulkRun) reportIfDue() {
	if b.state.Shard == nil || !b.dirty {
		return
	}
	if b.unreported >= reportEvery || workflow.Now(b.ctx).Sub(b.lastReportAt) >= reportAfter {
		b.report(b.ctx, false)
	}
}

// armReportTimer makes a shard waiting for results wake to report a change
// in time; a root, or a shard with nothing to report, arms nothing.
func (b *bulkRun) armReportTimer() {
	if b.state.Shard == nil || !b.dirty || b.reportTimer != nil {
		return
	}
	wait := max(reportAfter-workflow.Now(b.ctx).Sub(b.lastReportAt), time.Second)
	b.reportTimer = workflow.NewTimer(b.ctx, wait)
}

func (b *bulkRun) reportTimerFired() bool {
	if b.reportTimer == nil || !b.reportTimer.IsReady() {
		return false
	}
	b.reportTimer = nil
	return true
}

// report sends the shard's progress to its root. The report is not waited
// for here (the window goes on); the shard waits for those in flight
// before it continues as new or ends, which would drop them.
func (b *bulkRun) report(ctx workflow.Context, done bool) api.ShardReport {
	s := b.state.Shard
	s.Reports++
	p := b.state.Progress
	p.InFlight = len(b.inFlight)
	r := api.ShardReport{Shard: s.Shard.No, Seq: s.Reports, Progress: p, Epoch: s.Epoch, Done: done}
	b.dirty, b.unreported, b.lastReportAt = false, 0, workflow.Now(ctx)
	f := workflow.SignalExternalWorkflow(ctx, s.RootWorkflowID, "", api.ShardReportSignal, r)
	b.reportsPending++
	workflow.Go(ctx, func(ctx workflow.Context) {
		if err := f.Get(ctx, nil); err != nil {
			// The root is gone (failed, terminated): a recovered root reads
			// where the shard stands from PostgreSQL.
			b.logger.Warn("could not report to the bulk change", "error", err)
		}
		b.reportsPending--
	})
	return r
}

// awaitShardQuiet waits, before a continue-as-new, for the shard's reports
// in flight and the operators' request it is applying.
func (b *bulkRun) awaitShardQuiet() error {
	ctl := workflow.GetSignalChannel(b.ctx, api.ShardControlSignal)
	return workflow.Await(b.ctx, func() bool {
		return b.reportsPending == 0 && !b.controlBusy && ctl.Len() == 0
	})
}

// shardContinueAsNew carries the shard's state into its next run.
func (b *bulkRun) shardContinueAsNew(next api.BulkState) error {
	s := *next.Shard
	return workflow.NewContinueAsNewError(b.ctx, BulkChangeShard, api.ShardInput{
		BulkChangeID:   b.in.BulkChangeID,
		Tenant:         b.in.Tenant,
		RootWorkflowID: s.RootWorkflowID,
		Shard:          s.Shard,
		Plan:           next.Plan,
		Resume:         &next,
	})
}
