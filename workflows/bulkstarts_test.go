package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// slowStarts makes the test server answer the parent's child starts late,
// as a busy Temporal server does (seconds per page on a loaded host), and
// refuses the starts of chosen workflow IDs.
type slowStarts struct {
	interceptor.WorkerInterceptorBase
	delay time.Duration
	// refuse: workflow IDs whose start fails, answered after refuseAfter.
	refuse      map[string]bool
	refuseAfter time.Duration
	requested   []time.Time // workflow time of each start request
	confirmed   int
}

func (s *slowStarts) InterceptWorkflow(
	_ workflow.Context,
	next interceptor.WorkflowInboundInterceptor,
) interceptor.WorkflowInboundInterceptor {
	in := &slowStartsInbound{root: s}
	in.Next = next
	return in
}

type slowStartsInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	root *slowStarts
}

func (i *slowStartsInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	out := &slowStartsOutbound{root: i.root}
	out.Next = outbound
	return i.Next.Init(out)
}

type slowStartsOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	root *slowStarts
}

func (o *slowStartsOutbound) ExecuteChildWorkflow(
	ctx workflow.Context,
	childType string,
	args ...interface{},
) workflow.ChildWorkflowFuture {
	s := o.root
	if childType == notify.WorkflowName {
		// Not a device's: what the bulk change tells at its end.
		return o.Next.ExecuteChildWorkflow(ctx, childType, args...)
	}
	s.requested = append(s.requested, workflow.Now(ctx))
	started, setStarted := workflow.NewFuture(ctx)
	if s.refuse[workflow.GetChildWorkflowOptions(ctx).WorkflowID] {
		result, setResult := workflow.NewFuture(ctx)
		workflow.Go(ctx, func(ctx workflow.Context) {
			_ = workflow.Sleep(ctx, s.refuseAfter)
			err := errors.New("start refused by the server")
			setStarted.SetError(err)
			setResult.SetError(err)
		})
		return &refusedChild{result: result, started: started}
	}
	child := o.Next.ExecuteChildWorkflow(ctx, childType, args...)
	workflow.Go(ctx, func(ctx workflow.Context) {
		_ = workflow.Sleep(ctx, s.delay)
		var we workflow.Execution
		err := child.GetChildWorkflowExecution().Get(ctx, &we)
		s.confirmed++
		setStarted.Set(we, err)
	})
	return &lateChild{ChildWorkflowFuture: child, started: started}
}

// lateChild is a child whose start is answered by started.
type lateChild struct {
	workflow.ChildWorkflowFuture
	started workflow.Future
}

func (c *lateChild) GetChildWorkflowExecution() workflow.Future { return c.started }

// refusedChild is a child that never ran. The parent never signals its
// children: the embedded (nil) future's other methods are never called.
type refusedChild struct {
	workflow.ChildWorkflowFuture
	result, started workflow.Future
}

func (c *refusedChild) Get(ctx workflow.Context, valuePtr interface{}) error {
	return c.result.Get(ctx, valuePtr)
}
func (c *refusedChild) IsReady() bool                              { return c.result.IsReady() }
func (c *refusedChild) GetChildWorkflowExecution() workflow.Future { return c.started }

func withSlowStarts(env *testsuite.TestWorkflowEnvironment, s *slowStarts) {
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{s}})
}

// The parent keeps its window full while the server is still confirming
// earlier starts: waiting for each page's starts kept a page (200), not a
// window (500), of children in flight on a busy server.
func TestBulkChangeFillsTheWindowWhileStartsAreConfirmed(t *testing.T) {
	f := newFakeBulk("bs1", 300)
	env := newBulkEnv(t, f, bulkOptions(250, 1000))
	starts := &slowStarts{delay: 30 * time.Second}
	withSlowStarts(env, starts)

	res := runBulk(t, env, api.BulkChangeInput{BulkChangeID: "bs1"})
	require.Equal(t, 300, res.Progress.Processed)
	require.Len(t, starts.requested, 300, "one start per device")
	require.Equal(t, starts.requested[0], starts.requested[249],
		"the whole window (two pages) is requested before the first page's starts are confirmed")
	require.Equal(t, 250, f.maxInFlight, "the window, not a page, is in flight")
}

// A device change whose workflow could not start is recorded ERROR, and
// the parent, waiting for results, wakes for it: it may be the last one.
func TestBulkChangeRecordsAChildThatCouldNotStart(t *testing.T) {
	f := newFakeBulk("bs2", 4)
	bad := f.batches[0][2]
	env := newBulkEnv(t, f, bulkOptions(10, 100))
	starts := &slowStarts{
		delay:       time.Second,
		refuse:      map[string]bool{api.DeviceChangeWorkflowID("bs2", bad.ICCID): true},
		refuseAfter: 8 * time.Minute, // after every other child reported
	}
	withSlowStarts(env, starts)
	var ended []activities.EndDeviceChangeInput
	env.OnActivity(a.EndDeviceChange, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.EndDeviceChangeInput) (*api.DeviceResult, error) {
			ended = append(ended, in)
			return &api.DeviceResult{DeviceChangeID: in.DeviceChangeID, ICCID: bad.ICCID,
				Status: change.Failed, ErrorCode: in.Code}, nil
		})
	began := env.Now()

	res := runBulk(t, env, api.BulkChangeInput{BulkChangeID: "bs2"})
	require.Equal(t, 3, res.Progress.Processed)
	require.Equal(t, 1, res.Progress.Errors)
	require.Equal(t, 1, res.Progress.ErrorsByCode[change.WorkflowStartFailed])
	require.Len(t, ended, 1)
	require.Equal(t, bad.ID, ended[0].DeviceChangeID)
	require.Equal(t, change.WorkflowStartFailed, ended[0].Code)
	require.Contains(t, ended[0].Message, "start refused by the server")
	require.Less(t, env.Now().Sub(began), defaultStallCheck,
		"the refused start ends the wait, not the stall check's timer")
}

// No start is half-done at a continue-as-new: its answer would reach a run
// that is gone.
func TestBulkChangeContinuesAsNewOnlyWithEveryStartConfirmed(t *testing.T) {
	f := newFakeBulk("bs3", 9)
	env := newBulkEnv(t, f, bulkOptions(10, 4))
	starts := &slowStarts{delay: 45 * time.Second}
	withSlowStarts(env, starts)

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "bs3"})

	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	require.NotEmpty(t, starts.requested)
	require.Equal(t, len(starts.requested), starts.confirmed, "every start confirmed before continuing as new")
}

// A start refused just before a continue-as-new is recorded in this run,
// not carried into the next one as a child that will never report.
func TestBulkChangeRecordsARefusedStartBeforeContinuingAsNew(t *testing.T) {
	f := newFakeBulk("bs4", 9)
	bad := f.batches[0][8] // the last start the parent waits for
	env := newBulkEnv(t, f, bulkOptions(10, 4))
	withSlowStarts(env, &slowStarts{
		delay:       time.Second,
		refuse:      map[string]bool{api.DeviceChangeWorkflowID("bs4", bad.ICCID): true},
		refuseAfter: time.Second,
	})
	env.OnActivity(a.EndDeviceChange, mock.Anything, mock.Anything).After(time.Minute).Return(
		&api.DeviceResult{DeviceChangeID: bad.ID, ICCID: bad.ICCID, Status: change.Failed,
			ErrorCode: change.WorkflowStartFailed}, nil)

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "bs4"})

	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next api.BulkChangeInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 1, next.Resume.Progress.ErrorsByCode[change.WorkflowStartFailed])
	for _, c := range next.Resume.InFlight {
		require.NotEqual(t, bad.ID, c.DeviceChangeID, "the refused start is not carried as in flight")
	}
}
