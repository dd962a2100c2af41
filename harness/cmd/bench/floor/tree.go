package floor

import (
	"fmt"

	"go.temporal.io/sdk/workflow"
)

// RootInput is the tree floor's input: Devices split into shards of
// ShardSize devices, ShardsAtOnce of them running at a time, each a parent
// with the given window and continue-as-new cadence.
type RootInput struct {
	Devices      int
	ShardSize    int
	ShardsAtOnce int
	Window       int
	StartsPerRun int
	// ReportEvery: each shard reports to the root every ReportEvery
	// results, and when it is done.
	ReportEvery      int
	SearchAttributes bool
}

// ShardReport is a shard's report to the root. Its counts are cumulative,
// so a report delivered twice, or late, or lost but for the last, changes
// nothing.
type ShardReport struct {
	Index    int
	Done     int
	InFlight int
	Runs     int
}

// ShardID is the workflow ID of shard k of the root rootID. Its children
// are ChildID(ShardID(rootID, k), i), i from 0 in each shard: unique.
func ShardID(rootID string, k int) string { return fmt.Sprintf("%s/shard/%d", rootID, k) }

// Shards is the number of devices of each shard, in order: all ShardSize
// but the last.
func Shards(devices, shardSize int) []int {
	var sizes []int
	for first := 0; first < devices; first += shardSize {
		sizes = append(sizes, min(shardSize, devices-first))
	}
	return sizes
}

// Root runs the shards, ShardsAtOnce at a time, starting the next as one
// ends, and adds up their reports. Its history grows with the shards, not
// with the devices, so it never continues as new.
func Root(ctx workflow.Context, in RootInput) (Result, error) {
	if in.ShardSize < 1 || in.ShardsAtOnce < 1 {
		return Result{}, fmt.Errorf("floor root: shard size %d and shards at once %d must be positive", in.ShardSize, in.ShardsAtOnce)
	}
	rootID := workflow.GetInfo(ctx).WorkflowExecution.ID
	sizes := Shards(in.Devices, in.ShardSize)
	latest := make([]ShardReport, len(sizes))
	apply := func(r ShardReport) {
		if r.Index >= 0 && r.Index < len(latest) && r.Done > latest[r.Index].Done {
			latest[r.Index] = r
		}
	}
	next, running, finished := 0, 0, 0
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (Progress, error) {
		// As the shards last reported; the root does not see their
		// children start, so Pending is empty.
		p := Progress{Runs: 1}
		for _, r := range latest[:next] {
			p.Done += r.Done
			p.InFlight += r.InFlight
			p.Runs += max(r.Runs, 1)
		}
		p.Started = p.Done + p.InFlight
		return p, nil
	}); err != nil {
		return Result{}, err
	}
	sel := workflow.NewSelector(ctx)
	reports := workflow.GetSignalChannel(ctx, ShardReportSignal)
	sel.AddReceive(reports, func(c workflow.ReceiveChannel, _ bool) {
		var r ShardReport
		c.Receive(ctx, &r)
		apply(r)
	})
	var shardErr error
	start := func(k int) {
		first := k * in.ShardSize
		c := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: ShardID(rootID, k)})
		// The window is the bulk change's, shared by its running shards,
		// as the product's (workflows/bulkshard.go, shardWindow).
		window := (in.Window + in.ShardsAtOnce - 1) / max(in.ShardsAtOnce, 1)
		f := workflow.ExecuteChildWorkflow(c, ShardType, ParentInput{Devices: sizes[k], Window: window,
			StartsPerRun: in.StartsPerRun, SearchAttributes: in.SearchAttributes,
			Shard: &ShardInput{RootID: rootID, Index: k, First: first, ReportEvery: in.ReportEvery}})
		sel.AddFuture(f, func(f workflow.Future) {
			running--
			finished++
			var res Result
			if err := f.Get(ctx, &res); err != nil {
				shardErr = fmt.Errorf("floor shard %d: %w", k, err)
				return
			}
			// Its result is its last word, whatever reports are still on
			// their way.
			latest[k] = ShardReport{Index: k, Done: res.Devices, Runs: res.Runs}
		})
	}
	for finished < len(sizes) {
		for running < in.ShardsAtOnce && next < len(sizes) {
			start(next)
			next++
			running++
		}
		sel.Select(ctx)
		if shardErr != nil {
			return Result{}, shardErr
		}
	}
	// Reports that arrived with the last shards' ends: received, so that
	// none is left unhandled.
	var r ShardReport
	for reports.ReceiveAsync(&r) {
		apply(r)
	}
	res := Result{Runs: 1, Shards: len(sizes)}
	for _, r := range latest {
		res.Devices += r.Done
		res.Runs += r.Runs
	}
	return res, nil
}

// reporter sends a shard's reports to its root (nothing for a parent that
// is not a shard).
type reporter struct {
	ctx   workflow.Context
	shard *ShardInput
	// sent are the reports not yet known delivered.
	sent []workflow.Future
}

// report sends the shard's counts when ReportEvery results have come in
// since the last report, or when every device is done.
func (r *reporter) report(st *State, inFlight, devices int) {
	if r.shard == nil || st.Done == st.Reported {
		return
	}
	if st.Done-st.Reported < max(r.shard.ReportEvery, 1) && st.Done < devices {
		return
	}
	st.Reported = st.Done
	f := workflow.SignalExternalWorkflow(r.ctx, r.shard.RootID, "", ShardReportSignal,
		ShardReport{Index: r.shard.Index, Done: st.Done, InFlight: inFlight, Runs: st.Runs})
	kept := r.sent[:0]
	for _, s := range r.sent {
		if !s.IsReady() {
			kept = append(kept, s)
		}
	}
	r.sent = append(kept, f)
}

// wait waits until every report sent is delivered: a run that ends right
// after requesting a signal could lose it.
func (r *reporter) wait() error {
	for _, f := range r.sent {
		if err := f.Get(r.ctx, nil); err != nil {
			return fmt.Errorf("floor shard %d: report to the root: %w", r.shard.Index, err)
		}
	}
	r.sent = nil
	return nil
}

func (s *ShardInput) first() int {
	if s == nil {
		return 0
	}
	return s.First
}

// bulkChangeID is what the product's device workflows carry as their bulk
// change: the root's ID for a shard's children.
func (s *ShardInput) bulkChangeID(parentID string) string {
	if s == nil {
		return parentID
	}
	return s.RootID
}
