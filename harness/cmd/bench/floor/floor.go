// Package floor is the benchmark's floor: the least the product's design
// can cost on a given Temporal server, measured in the same run as the
// product so that the two can be compared as a ratio that carries from one
// host to another.
//
// The floor has the design's shape and nothing else: a parent starts one
// child per device with the same sliding window and the same continue-as-new
// cadence as BulkChange; each child waits for one signal (the benchmark
// process sends it, as the callback receiver does for a device) and reports
// to the parent by signal, as DeviceChange does. No activities, no timers, no
// database, no ThingSpace. It runs on its own task queue and its own worker
// processes, and shares no code with the product's workflows, so it never
// touches them.
//
// The tree floor (Root, tree.go) has the shape of a bulk change split into
// shards: a root runs shard workflows, a few at a time, each of them the
// parent above over its range of devices, reporting to the root by signal.
package floor

import (
	"fmt"
	"sort"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Names the floor registers and uses; none is the product's.
const (
	TaskQueue      = "tsbulk-bench-floor"
	ParentType     = "BenchFloorParent"
	ChildType      = "BenchFloorChild"
	CallbackSignal = "floor-callback"
	ResultSignal   = "floor-result"
	ProgressQuery  = "floor-progress"
	// The tree floor's: its root, and the parent under another name when it
	// runs as a shard (its histories are then told apart by type).
	RootType          = "BenchFloorRoot"
	ShardType         = "BenchFloorShard"
	ShardReportSignal = "floor-shard-report"
)

// ChildID is the workflow ID of device i's child of the parent parentID.
func ChildID(parentID string, i int) string { return fmt.Sprintf("%s/device/%d", parentID, i) }

// ParentInput is the parent's input; Resume carries the state across a
// continue-as-new.
type ParentInput struct {
	Devices      int
	Window       int
	StartsPerRun int
	// PageWait makes the parent start children as BulkChange did before its
	// version start-without-waiting: at most Page at a time, then wait until
	// every child of the page has started before doing anything else. Off
	// (the floor, and BulkChange now), the parent starts as many children as
	// the window allows and waits for their starts only before a
	// continue-as-new, where it must. The benchmark turns it on to measure
	// what that way of starting cost (-floor-page-wait).
	PageWait bool
	Page     int
	// SearchAttributes gives each child the search attributes the product
	// gives a device workflow (bulk change, ICCID, operation), under the
	// same names: it measures what they cost the server
	// (-floor-search-attributes).
	SearchAttributes bool
	// Shard is set when the parent is one shard of the tree floor: it then
	// reports its progress to the root.
	Shard  *ShardInput `json:",omitempty"`
	Resume *State
}

// ShardInput is what a parent needs to run as a shard of the tree floor.
type ShardInput struct {
	RootID string
	Index  int
	// First is the index of the shard's first device among the root's (the
	// shard numbers its children from 0; First only makes their search
	// attributes unique across shards).
	First int
	// ReportEvery: the shard reports to the root every ReportEvery results,
	// and when it is done.
	ReportEvery int
}

// State is what a run hands to the next.
type State struct {
	// Next is the index of the next device to start.
	Next int
	// Done counts the results received.
	Done int
	Runs int
	// Reported is the Done of the last report to the root (a shard).
	Reported int
	// InFlight lists the children started (and confirmed started) whose
	// result has not arrived, in index order.
	InFlight []int
}

// Progress is the answer to ProgressQuery.
type Progress struct {
	// Started counts the children whose start was requested; Pending lists
	// those among them not yet known to have started. The benchmark signals
	// the others.
	Started  int
	Pending  []int
	Done     int
	InFlight int
	Runs     int
}

// Result is the parent's result, or the root's.
type Result struct {
	Devices int
	// Runs counts the workflow runs above the children: the parent's, or
	// the root's and every shard's.
	Runs int
	// Shards is the tree floor's number of shards (0: one parent).
	Shards int `json:",omitempty"`
}

// ChildInput is a child's input.
type ChildInput struct {
	ParentID string
	Index    int
}

type pendingStart struct {
	index  int
	future workflow.ChildWorkflowFuture
}

// Parent starts one child per device, at most Window in flight, and counts
// their results; it continues as new every StartsPerRun starts (or when the
// server suggests it), carrying the children in flight.
func Parent(ctx workflow.Context, in ParentInput) (Result, error) {
	st := State{Runs: 1}
	if in.Resume != nil {
		st = *in.Resume
		st.Runs++
	}
	inFlight := make(map[int]bool, len(st.InFlight))
	for _, i := range st.InFlight {
		inFlight[i] = true
	}
	var pending []pendingStart // started by this run, start not yet confirmed, in index order
	startedThisRun := 0
	info := workflow.GetInfo(ctx)
	parentID := info.WorkflowExecution.ID
	results := workflow.GetSignalChannel(ctx, ResultSignal)
	rep := reporter{ctx: ctx, shard: in.Shard}

	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (Progress, error) {
		p := Progress{Started: st.Next, Done: st.Done, InFlight: len(inFlight), Runs: st.Runs}
		for _, ps := range pending {
			if !ps.future.GetChildWorkflowExecution().IsReady() {
				p.Pending = append(p.Pending, ps.index)
			}
		}
		return p, nil
	}); err != nil {
		return Result{}, err
	}
	record := func(i int) {
		if inFlight[i] { // a duplicate is ignored, as BulkChange does
			delete(inFlight, i)
			st.Done++
		}
	}
	drain := func() {
		var i int
		for results.ReceiveAsync(&i) {
			record(i)
		}
	}
	// settle takes the confirmed starts off the pending list; wait: all of
	// them, blocking. A child that could not start is an error: the floor
	// must not lose devices silently.
	settle := func(wait bool) error {
		for len(pending) > 0 {
			f := pending[0].future.GetChildWorkflowExecution()
			if !wait && !f.IsReady() {
				return nil
			}
			if err := f.Get(ctx, nil); err != nil {
				return fmt.Errorf("floor child %d did not start: %w", pending[0].index, err)
			}
			pending = pending[1:]
		}
		return nil
	}
	childCtx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		// As in the product: children outlive the parent's continue-as-new
		// and report to whichever run is current.
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})

	for {
		drain()
		rep.report(&st, len(inFlight), in.Devices)
		if st.Done >= in.Devices {
			if err := rep.wait(); err != nil {
				return Result{}, err
			}
			return Result{Devices: st.Done, Runs: st.Runs}, nil
		}
		if startedThisRun >= in.StartsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			// No start may be half-done at a continue-as-new, nor a report.
			if err := settle(true); err != nil {
				return Result{}, err
			}
			if err := rep.wait(); err != nil {
				return Result{}, err
			}
			drain()
			next := st
			next.InFlight = make([]int, 0, len(inFlight))
			//workflowcheck:ignore sorted below
			for i := range inFlight {
				next.InFlight = append(next.InFlight, i)
			}
			sort.Ints(next.InFlight) // map order must not reach the history
			// As itself: a shard goes on as a shard.
			return Result{}, workflow.NewContinueAsNewError(ctx, info.WorkflowType.Name, ParentInput{Devices: in.Devices, Window: in.Window,
				StartsPerRun: in.StartsPerRun, PageWait: in.PageWait, Page: in.Page,
				SearchAttributes: in.SearchAttributes, Shard: in.Shard, Resume: &next})
		}
		if st.Next < in.Devices && len(inFlight) < in.Window {
			n := min(in.Window-len(inFlight), in.Devices-st.Next, in.StartsPerRun-startedThisRun)
			if in.PageWait && in.Page > 0 {
				n = min(n, in.Page)
			}
			for range n {
				i := st.Next
				c := workflow.WithWorkflowID(childCtx, ChildID(parentID, i))
				if in.SearchAttributes {
					c = withSearchAttributes(c, in.Shard.bulkChangeID(parentID), in.Shard.first()+i)
				}
				f := workflow.ExecuteChildWorkflow(c, ChildType, ChildInput{ParentID: parentID, Index: i})
				pending = append(pending, pendingStart{index: i, future: f})
				inFlight[i] = true
				st.Next++
				startedThisRun++
			}
			if in.PageWait {
				if err := settle(true); err != nil {
					return Result{}, err
				}
			}
			continue
		}
		var i int
		results.Receive(ctx, &i)
		record(i)
		if err := settle(false); err != nil {
			return Result{}, err
		}
	}
}

// The product's device-workflow search attributes, by name (the floor
// shares no code with the product).
var (
	bulkChangeIDAttr = temporal.NewSearchAttributeKeyKeyword("BulkChangeId")
	iccidAttr        = temporal.NewSearchAttributeKeyKeyword("ICCID")
	operationAttr    = temporal.NewSearchAttributeKeyKeywordList("Operation")
)

func withSearchAttributes(ctx workflow.Context, bulkChangeID string, i int) workflow.Context {
	opts := workflow.GetChildWorkflowOptions(ctx)
	opts.TypedSearchAttributes = temporal.NewSearchAttributes(
		bulkChangeIDAttr.ValueSet(bulkChangeID),
		iccidAttr.ValueSet(fmt.Sprintf("89148000%011d", i)),
		operationAttr.ValueSet([]string{"suspend"}),
	)
	return workflow.WithChildOptions(ctx, opts)
}

// Child waits for its one callback signal and reports to its parent.
func Child(ctx workflow.Context, in ChildInput) error {
	var confirmed bool
	workflow.GetSignalChannel(ctx, CallbackSignal).Receive(ctx, &confirmed)
	// Wait for the signal to be delivered, as DeviceChange does: a workflow
	// that completes right after requesting it could lose it.
	return workflow.SignalExternalWorkflow(ctx, in.ParentID, "", ResultSignal, in.Index).Get(ctx, nil)
}

// Register registers the floor's workflows under their names.
func Register(r interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
}) {
	r.RegisterWorkflowWithOptions(Parent, workflow.RegisterOptions{Name: ParentType})
	r.RegisterWorkflowWithOptions(Parent, workflow.RegisterOptions{Name: ShardType})
	r.RegisterWorkflowWithOptions(Root, workflow.RegisterOptions{Name: RootType})
	r.RegisterWorkflowWithOptions(Child, workflow.RegisterOptions{Name: ChildType})
}
