package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// reportsPerRun: the root of a tree continues as new after this many shard
// reports (a report is a signal and its share of a workflow task).
const reportsPerRun = 500

// maxShardRestarts: a shard that keeps ending without finishing fails the
// bulk change instead of being started again without end.
const maxShardRestarts = 3

// shouldShard: the bulk change's options ask for shards and it is larger
// than one. A bulk change submitted before shards has no ShardSize in its
// options, so a parent started before them keeps its one-parent shape.
func (b *bulkRun) shouldShard() bool {
	o := b.state.Plan.Options
	return o.ShardSize > 0 && b.state.Plan.Total > o.ShardSize
}

// startsTree decides, in the bulk change's first run (or a recovery's),
// whether it runs as a tree; later runs follow the state they carry, so a
// run never changes shape half-way.
func (b *bulkRun) startsTree() bool {
	return b.shouldShard() && workflow.GetVersion(b.ctx, versionShards, workflow.DefaultVersion, 1) >= 1
}

// runTree is the root of a sharded bulk change: it cuts the batches into
// shards, runs ShardsAtOnce of them at a time, sums their reports, and
// returns when every shard has ended (or, cancelled, every started one).
func (b *bulkRun) runTree() error {
	if b.state.Tree == nil {
		if b.state.Control.Cancelled != nil {
			// Cancelled before it sent anything: no shard to run.
			b.adopting = false
			return nil
		}
		if err := b.planTree(); err != nil {
			return err
		}
	}
	b.adopting = false
	if t := b.state.Tree; len(t.Restart) > 0 {
		// Ended while the last run was ending: started again first.
		b.shardsEnded, t.Restart = append(b.shardsEnded, t.Restart...), nil
	}
	for {
		b.drainReports()
		switch {
		case b.treeErr != nil:
			return b.treeErr
		case len(b.shardsEnded) > 0:
			ended := b.shardsEnded
			b.shardsEnded = nil
			b.restartShards(ended)
		case b.treeDone():
			return nil
		case b.received >= reportsPerRun || workflow.GetInfo(b.ctx).GetContinueAsNewSuggested():
			return b.continueAsNew()
		case b.canStartShard():
			b.startShard()
		default:
			b.awaitReports()
		}
	}
}

func (b *bulkRun) planTree() error {
	var shards []api.Shard
	in := activities.PlanShardsInput{BulkChangeID: b.in.BulkChangeID, ShardSize: b.state.Plan.Options.ShardSize}
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.PlanShards, in).Get(b.ctx, &shards); err != nil {
		return fmt.Errorf("cut bulk change %s into shards: %w", b.in.BulkChangeID, err)
	}
	t := &api.TreeState{Shards: shards, Ended: api.Progress{Tally: change.NewTally()}, Recover: b.recovered}
	b.state.Tree = t
	b.logger.Info("bulk change runs as shards", "shards", len(shards), "shardSize", b.state.Plan.Options.ShardSize)
	if b.recovered {
		// Above every epoch of the root run that failed, whose shards may
		// still run and have applied its requests.
		t.Epoch = recoveredEpochs * b.state.Progress.Recovered
		if err := b.adoptRunningShards(); err != nil {
			return err
		}
	}
	b.sumShards()
	return nil
}

// recoveredEpochs: a recovered root numbers its requests to the shards from
// Progress.Recovered times this.
const recoveredEpochs = 1 << 20

// adoptRunningShards takes over, first, the shards of the root run that
// failed that still run: they report to this workflow ID, and must hear
// this run's pause or cancel (ShardsAtOnce does not hold them back).
func (b *bulkRun) adoptRunningShards() error {
	t := b.state.Tree
	in := activities.CheckShardsInput{BulkChangeID: b.in.BulkChangeID}
	for _, sh := range t.Shards {
		in.Shards = append(in.Shards, sh.No)
	}
	var notRunning []int
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.CheckShardWorkflows, in).Get(b.ctx, &notRunning); err != nil {
		return fmt.Errorf("find the running shards of bulk change %s: %w", b.in.BulkChangeID, err)
	}
	idle := map[int]bool{}
	for _, no := range notRunning {
		idle[no] = true
	}
	for _, sh := range t.Shards {
		if !idle[sh.No] {
			t.Adopted = append(t.Adopted, sh.No)
			b.runShard(sh)
		}
	}
	if len(t.Adopted) > 0 {
		b.logger.Info("adopted the shards still running", "shards", t.Adopted)
	}
	return nil
}

func (b *bulkRun) treeDone() bool {
	t := b.state.Tree
	return len(t.Running) == 0 && (b.nextShard() >= len(t.Shards) || b.state.Control.Cancelled != nil)
}

// nextShard is the index of the next shard to start, past those adopted.
func (b *bulkRun) nextShard() int {
	t := b.state.Tree
	for t.Next < len(t.Shards) && slices.Contains(t.Adopted, t.Shards[t.Next].No) {
		t.Next++
	}
	return t.Next
}

// canStartShard: a shard waits, there is room for it, and no operator
// paused or cancelled the bulk change (a shard's first act is to send).
func (b *bulkRun) canStartShard() bool {
	t := b.state.Tree
	return b.nextShard() < len(t.Shards) && len(t.Running) < max(b.state.Plan.Options.ShardsAtOnce, 1) &&
		!b.state.Control.Paused && b.state.Control.Cancelled == nil
}

func (b *bulkRun) startShard() {
	t := b.state.Tree
	sh := t.Shards[b.nextShard()]
	t.Next++
	b.runShard(sh)
}

// runShard counts the shard running and starts its workflow.
func (b *bulkRun) runShard(sh api.Shard) {
	t := b.state.Tree
	t.Running = append(t.Running, api.RunningShard{
		No:      sh.No,
		Report:  api.ShardReport{Shard: sh.No, Epoch: t.Epoch, Progress: api.Progress{Tally: change.NewTally()}},
		HeardAt: workflow.Now(b.ctx),
	})
	b.launchShard(sh, t.Recover)
	b.sumShards()
}

// launchShard starts a shard's workflow. Its start is confirmed in a
// coroutine, as a device workflow's is; one already running (a recovered
// root finds the shards of the run that failed) is adopted: it reports to
// this workflow ID.
func (b *bulkRun) launchShard(sh api.Shard, recover bool) {
	ctx := workflow.WithChildOptions(b.ctx, workflow.ChildWorkflowOptions{
		WorkflowID: api.ShardWorkflowID(b.in.BulkChangeID, sh.No),
		// Shards outlive the root's continue-as-new and report by signal.
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		StaticSummary: fmt.Sprintf("shard %d of %d · %d device changes · bulk change %s",
			sh.No, len(b.state.Tree.Shards), sh.Devices, b.in.BulkChangeID),
	})
	// Its part of the window travels in its plan, so that its runs keep it.
	plan := b.state.Plan
	plan.Options.Window = shardWindow(plan.Options)
	f := workflow.ExecuteChildWorkflow(ctx, BulkChangeShard, api.ShardInput{
		BulkChangeID:   b.in.BulkChangeID,
		Tenant:         b.tenant(),
		RootWorkflowID: workflow.GetInfo(b.ctx).WorkflowExecution.ID,
		Shard:          sh,
		Plan:           plan,
		Control:        b.shardControl(),
		Recover:        recover,
	})
	b.shardStarting[sh.No] = true
	workflow.Go(b.ctx, func(ctx workflow.Context) {
		err := f.GetChildWorkflowExecution().Get(ctx, nil)
		var already *temporal.ChildWorkflowExecutionAlreadyStartedError
		if err != nil && !errors.As(err, &already) {
			// Nothing would ever run its part: the bulk change fails, and
			// `starter resume-failed` takes it over.
			b.treeErr = fmt.Errorf("shard %d of bulk change %s could not start: %w", sh.No, b.in.BulkChangeID, err)
		}
		delete(b.shardStarting, sh.No)
		if errors.As(err, &already) {
			// Started by the root run that failed: it has that run's
			// requests applied, and must take this one's.
			ctl := b.shardControl()
			serr := workflow.SignalExternalWorkflow(ctx, api.ShardWorkflowID(b.in.BulkChangeID, sh.No), "",
				api.ShardControlSignal, ctl).Get(ctx, nil)
			if serr != nil {
				b.logger.Warn("could not reach an adopted shard", "shard", sh.No, "error", serr)
			}
		}
		if err != nil {
			return
		}
		// Its end reaches this run only (not the next after a
		// continue-as-new, where the stall check finds it): its result is
		// its last report, in case that signal was lost, and a shard that
		// failed or was terminated is started again at once.
		var res api.ShardResult
		if err := f.Get(ctx, &res); err != nil {
			b.logger.Warn("shard ended without finishing", "shard", sh.No, "error", err)
			b.shardsEnded = append(b.shardsEnded, sh.No)
			return
		}
		b.takeReport(res.Report)
	})
}

func (b *bulkRun) shardControl() api.ShardControl {
	return api.ShardControl{
		Epoch:     b.state.Tree.Epoch,
		Paused:    b.state.Control.Paused,
		Cancelled: b.state.Control.Cancelled != nil,
	}
}

func (b *bulkRun) drainReports() { takeAll(b.reports, b.takeReport) }

// takeReport keeps a running shard's latest report; a shard's last one
// moves its counts to the ended shards'. Reports of shards not running,
// and older ones, change nothing.
func (b *bulkRun) takeReport(r api.ShardReport) {
	if b.state.Tree == nil {
		return
	}
	b.received++
	t := b.state.Tree
	i := b.runningShard(r.Shard)
	// A later report (an acknowledgement) may overtake the last one: the
	// last is taken whatever its number.
	if i < 0 || r.Seq < t.Running[i].Report.Seq && !r.Done {
		return
	}
	b.lastResultAt = workflow.Now(b.ctx)
	t.Running[i].Report = r
	t.Running[i].HeardAt = b.lastResultAt
	if r.Done {
		addCounts(&t.Ended, r.Progress)
		t.Running = append(t.Running[:i], t.Running[i+1:]...)
		t.Done++
	}
	b.sumShards()
}

func (b *bulkRun) runningShard(no int) int {
	for i, r := range b.state.Tree.Running {
		if r.No == no {
			return i
		}
	}
	return -1
}

// sumShards makes the bulk change's progress the sum of its shards'.
func (b *bulkRun) sumShards() {
	t := b.state.Tree
	sum := api.Progress{Tally: change.NewTally()}
	addCounts(&sum, t.Ended)
	p := &b.state.Progress
	for _, r := range t.Running {
		addCounts(&sum, r.Report.Progress)
		if r.Report.Progress.Limit != nil {
			lim := *r.Report.Progress.Limit
			p.Limit = &lim
		}
	}
	p.Tally, p.Started, p.InFlight = sum.Tally, sum.Started, sum.InFlight
	p.DevicesSent, p.BatchesSent, p.BillingErrors = sum.DevicesSent, sum.BatchesSent, sum.BillingErrors
	if p.Error == "" {
		p.Error = sum.Error
	}
	if p.Limit != nil {
		p.Limit.BatchesWaiting = p.Batches - p.BatchesSent
		p.Limit.DevicesWaiting = p.Total - p.DevicesSent
	}
	p.Shards, p.ShardsRunning, p.ShardsDone = len(t.Shards), len(t.Running), t.Done
	b.touch()
}

// addCounts adds a shard's counts to dst.
func addCounts(dst *api.Progress, src api.Progress) {
	dst.Tally.Add(src.Tally)
	dst.Started += src.Started
	dst.InFlight += src.InFlight
	dst.DevicesSent += src.DevicesSent
	dst.BatchesSent += src.BatchesSent
	dst.BillingErrors += src.BillingErrors
	if dst.Error == "" {
		dst.Error = src.Error
	}
}

// awaitReports waits for a shard's report or an operator's request. A root
// that hears from no shard for Timing.StallCheck says so and asks Temporal
// about its shards.
func (b *bulkRun) awaitReports() {
	if b.watchTimer == nil {
		b.watchTimer = workflow.NewTimer(b.ctx, b.stallCheck())
	}
	epoch := b.epoch
	_ = workflow.Await(b.ctx, func() bool {
		return b.reports.Len() > 0 || b.watchTimer.IsReady() || b.epoch != epoch || b.treeErr != nil ||
			len(b.shardsEnded) > 0
	})
	b.drainReports()
	if !b.watchTimer.IsReady() {
		return
	}
	b.watchTimer = nil
	now := workflow.Now(b.ctx)
	if silent := now.Sub(b.lastResultAt); silent >= b.stallCheck() {
		b.tell(notify.Stalled, fmt.Sprintf("no report from its shards for %s; %d shards running",
			silent.Round(time.Second), len(b.state.Tree.Running)), b.stallOccurrence())
	}
	b.checkShards(now.Add(-b.stallCheck()))
}

// checkShards asks Temporal about the shards not heard from since before
// silentSince, and starts again, to recover its part from PostgreSQL, one
// whose workflow ended without its last report reaching the root (failed,
// terminated by an operator): the bulk change never waits for it forever.
func (b *bulkRun) checkShards(silentSince time.Time) {
	in := activities.CheckShardsInput{BulkChangeID: b.in.BulkChangeID}
	for _, r := range b.state.Tree.Running {
		if !b.shardStarting[r.No] && !r.HeardAt.After(silentSince) {
			in.Shards = append(in.Shards, r.No)
		}
	}
	if len(in.Shards) == 0 {
		return
	}
	var ended []int
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.CheckShardWorkflows, in).Get(b.ctx, &ended); err != nil {
		b.logger.Error("could not check the shards", "error", err)
		return
	}
	// A last report may have come while Temporal was asked.
	b.drainReports()
	b.restartShards(ended)
}

// restartShards starts again the running shards among those given. Not in
// the workflow task that learnt of a shard's end: the SDK still holds the
// ended child's start there and would refuse a new one of the same ID as
// already started (temporalio/sdk-go#947).
func (b *bulkRun) restartShards(nos []int) {
	t := b.state.Tree
	_ = workflow.Sleep(b.ctx, time.Second)
	b.drainReports()
	for _, no := range nos {
		i := b.runningShard(no)
		if i < 0 || b.shardStarting[no] {
			continue
		}
		if t.Running[i].Restarts >= maxShardRestarts {
			// Something a restart does not mend: an operator looks, and
			// `starter resume-failed` takes the bulk change over.
			b.treeErr = fmt.Errorf("shard %d of bulk change %s ended without finishing %d times",
				no, b.in.BulkChangeID, t.Running[i].Restarts+1)
			return
		}
		b.logger.Warn("shard ended without reporting its end; starting it again to recover its part", "shard", no)
		t.Running[i].Restarts++
		t.Running[i].Report.Seq = 0
		t.Running[i].HeardAt = workflow.Now(b.ctx)
		b.launchShard(t.Shards[no-1], true)
	}
}

// awaitAdoption makes an operator's request to a recovered root wait until
// the root has adopted the shards the failed run left running: until then
// they would not hear it, and a pause would return while they still send
// (version await-adoption, asked only then).
func (b *bulkRun) awaitAdoption(ctx workflow.Context) error {
	if !b.adopting || workflow.GetVersion(ctx, versionAwaitAdoption, workflow.DefaultVersion, 1) < 1 {
		return nil
	}
	return workflow.Await(ctx, func() bool { return !b.adopting })
}

// controlShards passes an operator's request on to the running shards and
// returns once each has applied it with no request in flight (or has
// ended): after a pause or a cancellation returns, no shard sends anything.
func (b *bulkRun) controlShards(ctx workflow.Context) error {
	t := b.state.Tree
	t.Epoch++
	ctl := b.shardControl()
	// A signal must find the shard: wait for the starts being confirmed.
	if err := workflow.Await(ctx, func() bool { return len(b.shardStarting) == 0 }); err != nil {
		return err
	}
	type sent struct {
		no int
		f  workflow.Future
	}
	var signals []sent
	for _, r := range t.Running {
		f := workflow.SignalExternalWorkflow(ctx, api.ShardWorkflowID(b.in.BulkChangeID, r.No), "",
			api.ShardControlSignal, ctl)
		signals = append(signals, sent{r.No, f})
	}
	for _, s := range signals {
		if err := s.f.Get(ctx, nil); err != nil {
			// Ended: it sends nothing more (the stall check recovers its
			// part if its end was not reported).
			b.logger.Warn("could not reach a shard", "shard", s.no, "error", err)
			if i := b.runningShard(s.no); i >= 0 {
				t.Running[i].Report.Epoch = ctl.Epoch
			}
		}
	}
	// A shard that ended without acknowledging (terminated, failed) sends
	// nothing more, and its restart carries this request. Counting it as
	// acknowledged is asked (versionEndedShardAcks) only when one does: the
	// main loop may be waiting for this request before it continues as new,
	// and would never restart it.
	endedAcks := -2
	unacked := func(r api.RunningShard) bool {
		return r.Report.Epoch < ctl.Epoch && !(endedAcks >= 1 && slices.Contains(b.shardsEnded, r.No))
	}
	acked := func() bool { return !slices.ContainsFunc(t.Running, unacked) }
	endedUnacked := func() bool {
		return slices.ContainsFunc(t.Running, func(r api.RunningShard) bool {
			return r.Report.Epoch < ctl.Epoch && slices.Contains(b.shardsEnded, r.No)
		})
	}
	// The acknowledgements are reports: read them here, as the main loop
	// may be waiting for this request to finish before it continues as new.
	for !acked() {
		if err := workflow.Await(ctx, func() bool {
			return acked() || b.reports.Len() > 0 || endedAcks == -2 && endedUnacked()
		}); err != nil {
			return err
		}
		b.drainReports()
		if endedAcks == -2 && endedUnacked() {
			endedAcks = int(workflow.GetVersion(ctx, versionEndedShardAcks, workflow.DefaultVersion, 1))
		}
	}
	return nil
}
