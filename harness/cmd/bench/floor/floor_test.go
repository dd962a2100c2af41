package floor

import (
	"errors"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// floorEnv runs the parent (or the root) with real children; each device
// child gets its callback a second (of test time) after it starts, as the
// benchmark sends it. It reports the most device children running at once,
// and how many times each device child's ID started.
func floorEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *childCount) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	cc := &childCount{starts: map[string]int{}, shards: map[string]bool{}}
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		if info.WorkflowType.Name != ChildType {
			cc.shardStarted(info)
			return
		}
		id := info.WorkflowExecution.ID
		cc.started(id)
		env.RegisterDelayedCallback(func() {
			if err := env.SignalWorkflowByID(id, CallbackSignal, true); err != nil {
				t.Errorf("signal %s: %v", id, err)
			}
		}, time.Second)
	})
	env.SetOnChildWorkflowCompletedListener(func(info *workflow.Info, _ converter.EncodedValue, _ error) {
		cc.completed(info)
	})
	return env, cc
}

// childCount counts the children of a floor run as they start and end.
type childCount struct {
	mu            sync.Mutex
	running, most int
	shards        map[string]bool // running
	mostShards    int
	starts        map[string]int
}

func (c *childCount) started(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.starts[id]++
	c.running++
	c.most = max(c.most, c.running)
}

func (c *childCount) shardStarted(info *workflow.Info) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// By ID: a shard's next run is the same shard.
	c.shards[info.WorkflowExecution.ID] = true
	c.mostShards = max(c.mostShards, len(c.shards))
}

func (c *childCount) completed(info *workflow.Info) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if info.WorkflowType.Name == ChildType {
		c.running--
	} else {
		delete(c.shards, info.WorkflowExecution.ID)
	}
}

func (c *childCount) mostAtOnce() int { c.mu.Lock(); defer c.mu.Unlock(); return c.most }

func TestParentRunsEveryDeviceWithinTheWindow(t *testing.T) {
	for _, pageWait := range []bool{false, true} {
		env, cc := floorEnv(t)
		env.ExecuteWorkflow(ParentType, ParentInput{Devices: 23, Window: 5, StartsPerRun: 100, PageWait: pageWait, Page: 3})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatalf("pageWait=%v: %v", pageWait, err)
		}
		var res Result
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		if res.Devices != 23 || res.Runs != 1 {
			t.Errorf("pageWait=%v: result %+v, want 23 devices in 1 run", pageWait, res)
		}
		if m := cc.mostAtOnce(); m > 5 || m < 3 {
			t.Errorf("pageWait=%v: %d children ran at once, want 3..5 (window 5)", pageWait, m)
		}
	}
}

func TestParentContinuesAsNewWithItsChildrenInFlight(t *testing.T) {
	env, _ := floorEnv(t)
	env.ExecuteWorkflow(ParentType, ParentInput{Devices: 50, Window: 6, StartsPerRun: 10})
	err := env.GetWorkflowError()
	if !workflow.IsContinueAsNewError(err) {
		t.Fatalf("got %v, want a continue-as-new after 10 starts", err)
	}
	can := asContinueAsNew(t, err)
	var next ParentInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	st := next.Resume
	if st == nil || st.Next != 10 || st.Runs != 1 {
		t.Fatalf("carried state %+v, want Next 10 of run 1", st)
	}
	if st.Done+len(st.InFlight) != 10 {
		t.Errorf("done %d + in flight %v != 10 started", st.Done, st.InFlight)
	}
	for k := 1; k < len(st.InFlight); k++ {
		if st.InFlight[k-1] >= st.InFlight[k] {
			t.Errorf("in flight %v not in index order (map order must not reach the history)", st.InFlight)
		}
	}
	if next.Devices != 50 || next.Window != 6 || next.StartsPerRun != 10 {
		t.Errorf("settings not carried: %+v", next)
	}
}

func asContinueAsNew(t *testing.T, err error) *workflow.ContinueAsNewError {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("%v is not a ContinueAsNewError", err)
	}
	return can
}

func TestTreeRunsEveryDeviceOnceInShardsAFewAtATime(t *testing.T) {
	env, cc := floorEnv(t)
	env.ExecuteWorkflow(RootType, RootInput{Devices: 50, ShardSize: 20, ShardsAtOnce: 2, Window: 6, StartsPerRun: 10, ReportEvery: 4})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	// Shards of 20, 20 and 10 devices; each continues as new every 10
	// starts, the last time with every device started (as BulkChange
	// does): 3 + 3 + 2 runs, and the root's.
	if res.Devices != 50 || res.Shards != 3 || res.Runs != 9 {
		t.Errorf("result %+v, want 50 devices in 3 shards and 9 runs (the root's, 3+3+2 of the shards)", res)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for k, n := range Shards(50, 20) {
		for i := range n {
			if id := ChildID(ShardID("default-test-workflow-id", k), i); cc.starts[id] != 1 {
				t.Errorf("%s started %d times, want once", id, cc.starts[id])
			}
		}
	}
	if len(cc.starts) != 50 {
		t.Errorf("%d device children started, want 50", len(cc.starts))
	}
	if cc.mostShards != 2 {
		t.Errorf("%d shards ran at once, want 2", cc.mostShards)
	}
	if cc.most > 2*6 {
		t.Errorf("%d device children ran at once, want at most 2 shards x window 6", cc.most)
	}
}

func TestRootCountsAShardsReportsOnce(t *testing.T) {
	// Reports are cumulative: a repeated or stale one changes nothing, and
	// the shard's result is its last word.
	env, _ := floorEnv(t)
	for _, r := range []ShardReport{{Index: 0, Done: 3, InFlight: 2}, {Index: 0, Done: 3, InFlight: 2}, {Index: 0, Done: 1, InFlight: 5}} {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(ShardReportSignal, r) }, time.Millisecond)
	}
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(ProgressQuery)
		if err != nil {
			t.Error(err)
			return
		}
		var p Progress
		if err := v.Get(&p); err != nil {
			t.Error(err)
			return
		}
		// No shard has reported yet (every 100 results): only the test's
		// reports count, the stale one not.
		if p.InFlight != 2 || p.Done != 3 {
			t.Errorf("progress %+v after reports of 3 done and 2 in flight, then of 1 done", p)
		}
	}, 2*time.Millisecond)
	env.ExecuteWorkflow(RootType, RootInput{Devices: 30, ShardSize: 20, ShardsAtOnce: 2, Window: 30, StartsPerRun: 100, ReportEvery: 100})
	var res Result
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Devices != 30 || res.Runs != 3 {
		t.Errorf("result %+v, want 30 devices, 3 runs", res)
	}
}
