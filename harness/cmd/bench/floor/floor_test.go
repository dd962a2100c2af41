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

// floorEnv runs the parent with real children; each child gets its callback
// a second (of test time) after it starts, as the benchmark sends it. It
// reports the most children running at once.
func floorEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, func() int) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	var mu sync.Mutex
	running, most := 0, 0
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		id := info.WorkflowExecution.ID
		env.RegisterDelayedCallback(func() {
			if err := env.SignalWorkflowByID(id, CallbackSignal, true); err != nil {
				t.Errorf("signal %s: %v", id, err)
			}
		}, time.Second)
	})
	env.SetOnChildWorkflowCompletedListener(func(*workflow.Info, converter.EncodedValue, error) {
		mu.Lock()
		running--
		mu.Unlock()
	})
	return env, func() int { mu.Lock(); defer mu.Unlock(); return most }
}

func TestParentRunsEveryDeviceWithinTheWindow(t *testing.T) {
	for _, pageWait := range []bool{false, true} {
		env, most := floorEnv(t)
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
		if m := most(); m > 5 || m < 3 {
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
