package workflows

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// fakeBulk is an in-memory bulk change behind the parent's mocked
// activities: batches of devices, and the outcome each child reports.
type fakeBulk struct {
	// mu guards what the mocked activities write: the test environment
	// runs activities on goroutines of their own, and a tree's shards run
	// theirs at the same time.
	mu sync.Mutex
	// told are the events the bulk change told people (notifications).
	told         []notify.Event
	id           string
	batches      [][]activities.DeviceToStart
	outcome      map[string]api.DeviceResult // by ICCID; default PROCESSED
	sent         []int
	started      []string
	refuseBatch  int  // SendBatch of this batch fails with refused credentials
	together     bool // every child finishes at the same moment
	maxInFlight  int
	inFlight     int
	finished     bool
	finishedWith activities.FinishInput
	// silent children never report (terminated by an operator, say).
	silent map[string]bool
	// delay, when set, is how long a child runs before it reports.
	delay func(api.DeviceChangeInput) time.Duration
	// billingOwed counts Rev.io steps owed: FinishBulkChange refuses to
	// finish while it is above zero.
	billingOwed int
	// done lists device changes that already have an outcome (a recovered
	// bulk change).
	done map[int64]bool
}

func newFakeBulk(id string, sizes ...int) *fakeBulk {
	f := &fakeBulk{id: id, outcome: map[string]api.DeviceResult{}, silent: map[string]bool{}, done: map[int64]bool{}}
	seq := 0
	for b, n := range sizes {
		var batch []activities.DeviceToStart
		for i := 0; i < n; i++ {
			seq++
			batch = append(batch, activities.DeviceToStart{ID: int64(seq), Seq: seq, BatchNo: b + 1,
				ICCID: fmt.Sprintf("8914800000000%07d", seq), Operation: "suspend"})
		}
		f.batches = append(f.batches, batch)
	}
	return f
}

func (f *fakeBulk) total() int {
	n := 0
	for _, b := range f.batches {
		n += len(b)
	}
	return n
}

func (f *fakeBulk) plan(opts api.Options) *api.Plan {
	return &api.Plan{BulkChangeID: f.id, AccountName: "acct", Total: f.total(), Batches: len(f.batches), Options: opts}
}

// listAfter mimics the database query: devices of sent batches after
// the cursor, in (batch, seq) order.
func (f *fakeBulk) listAfter(in activities.ListDevicesInput) []activities.DeviceToStart {
	var out []activities.DeviceToStart
	for _, b := range f.batches {
		for _, d := range b {
			if d.BatchNo > in.MaxBatch {
				continue
			}
			if d.BatchNo < in.After.BatchNo || (d.BatchNo == in.After.BatchNo && d.Seq <= in.After.Seq) {
				continue
			}
			if d.BatchNo < in.UnfinishedBelowBatch && f.done[d.ID] {
				continue
			}
			if len(out) < in.Limit {
				out = append(out, d)
			}
		}
	}
	return out
}

func newBulkEnv(t *testing.T, f *fakeBulk, opts api.Options) *testsuite.TestWorkflowEnvironment {
	env := newActivityEnv()
	env.OnActivity(a.CheckThingSpaceAuth, mock.Anything, mock.Anything).Return(nil).Maybe()
	return withBulkMocks(t, env, f, opts)
}

// newActivityEnv is a workflow test environment with the activities
// registered, to be mocked.
func newActivityEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	activities.Register(env, &activities.Activities{})
	return env
}

// recordTold registers a stand-in notification workflow that keeps what
// the bulk change tells.
func recordTold(env *testsuite.TestWorkflowEnvironment, f *fakeBulk) {
	env.RegisterWorkflowWithOptions(func(_ workflow.Context, in notify.Input) (notify.Result, error) {
		f.told = append(f.told, in.Event)
		return notify.Result{}, nil
	}, workflow.RegisterOptions{Name: notify.WorkflowName})
}

// withBulkMocks mocks the parent's activities (but the authentication
// check) on the fake bulk change, and registers a stand-in child.
func withBulkMocks(
	_ *testing.T,
	env *testsuite.TestWorkflowEnvironment,
	f *fakeBulk,
	opts api.Options,
) *testsuite.TestWorkflowEnvironment {
	env.OnActivity(a.StartBulkChange, mock.Anything, f.id).Return(f.plan(opts), nil).Maybe()
	env.OnActivity(activities.SendBatchActivity, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.SendBatchInput) (*activities.SendBatchResult, error) {
			if in.BatchNo == f.refuseBatch {
				return nil, temporal.NewNonRetryableApplicationError(
					"refused",
					activities.ErrTypeInvalidCredentials,
					nil,
				)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.sent = append(f.sent, in.BatchNo)
			return &activities.SendBatchResult{Devices: len(f.batches[in.BatchNo-1]), State: db.RequestAccepted}, nil
		}).Maybe()
	env.OnActivity(a.ListDevicesToStart, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ListDevicesInput) ([]activities.DeviceToStart, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.listAfter(in), nil
		}).Maybe()
	env.OnActivity(a.FinishBulkChange, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.FinishInput) (*activities.FinishResult, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.billingOwed > 0 {
				return &activities.FinishResult{BillingOwed: f.billingOwed}, nil
			}
			f.finished = true
			f.finishedWith = in
			res := &activities.FinishResult{}
			for _, b := range f.batches {
				for _, d := range b {
					if r, ok := f.outcome[d.ICCID]; ok && r.Status == change.Failed {
						res.Errors++
					} else {
						res.Processed++
					}
				}
			}
			return res, nil
		}).Maybe()
	recordTold(env, f)
	// A stand-in for the device workflow, registered under its name: it
	// reports its result to the parent by signal after a while, as the real
	// one does once ThingSpace has confirmed.
	env.RegisterWorkflowWithOptions(
		func(ctx workflow.Context, in api.DeviceChangeInput) (*api.DeviceResult, error) {
			f.started = append(f.started, in.ICCID)
			f.inFlight++
			f.maxInFlight = max(f.maxInFlight, f.inFlight)
			delay := time.Duration(1+int(in.DeviceChangeID)%5) * time.Minute
			if f.together {
				delay = time.Minute
			}
			if f.delay != nil {
				delay = f.delay(in)
			}
			if err := workflow.Sleep(ctx, delay); err != nil {
				return nil, err
			}
			if f.silent[in.ICCID] {
				return nil, errors.New("terminated")
			}
			res, ok := f.outcome[in.ICCID]
			if !ok {
				res = api.DeviceResult{Status: change.Processed, Outcome: change.Suspended}
			}
			res.DeviceChangeID, res.ICCID, res.Operation = in.DeviceChangeID, in.ICCID, in.Operation
			f.inFlight--
			err := workflow.SignalExternalWorkflow(ctx, in.ParentWorkflowID, "", api.DeviceResultSignal, res).
				Get(ctx, nil)
			return &res, err
		}, workflow.RegisterOptions{Name: api.DeviceChangeWorkflowType})
	return env
}

// runBulk runs the bulk change to its end and returns its result.
func runBulk(t *testing.T, env *testsuite.TestWorkflowEnvironment, in api.BulkChangeInput) api.BulkChangeResult {
	t.Helper()
	env.ExecuteWorkflow(BulkChange, in)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res api.BulkChangeResult
	require.NoError(t, env.GetWorkflowResult(&res))
	return res
}

func bulkOptions(window, startsPerRun int) api.Options {
	return api.Options{Window: window, StartsPerRun: startsPerRun, CallbacksEnabled: true,
		Timing: api.Timing{
			CallbackTimeout: 30 * time.Minute,
			ConfirmDeadline: 24 * time.Hour,
			PollInterval:    5 * time.Minute,
			PollMaxInterval: 30 * time.Minute,
		}}
}

func TestBulkChangeHappyPath(t *testing.T) {
	f := newFakeBulk("b1", 3, 3, 2)
	env := newBulkEnv(t, f, bulkOptions(4, 100))

	res := runBulk(t, env, api.BulkChangeInput{BulkChangeID: "b1"})
	require.Equal(t, 8, res.Total)
	require.Equal(t, 8, res.Processed)
	require.Equal(t, 0, res.Errors)
	require.Equal(t, []int{1, 2, 3}, f.sent, "each batch is sent once, in order")
	require.Len(t, f.started, 8, "one child per device")
	require.LessOrEqual(t, f.maxInFlight, 4, "the window bounds the children in flight")
	require.True(t, f.finished)
	require.Equal(t, change.PhaseFinished, res.Progress.Phase)
	require.Equal(t, 8, res.Progress.ByOutcome[change.Suspended])
	require.Equal(t, 8, res.Progress.DevicesSent)
}

func TestBulkChangePermanentFailureNextToSuccesses(t *testing.T) {
	f := newFakeBulk("b2", 5)
	bad := f.batches[0][2].ICCID
	f.outcome[bad] = api.DeviceResult{Status: change.Failed, ErrorCode: "INPUT_INVALID.DeviceState.Invalid"}
	env := newBulkEnv(t, f, bulkOptions(10, 100))

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "b2"})

	require.NoError(t, env.GetWorkflowError())
	var res api.BulkChangeResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 4, res.Processed)
	require.Equal(t, 1, res.Errors)
	require.Equal(t, 1, res.Progress.ErrorsByCode["INPUT_INVALID.DeviceState.Invalid"])
	require.Equal(t, 4, res.Progress.Processed)
	// Finished, with its error told by code.
	require.Len(t, f.told, 1)
	ev := f.told[0]
	require.Equal(t, notify.Finished, ev.Kind)
	require.Equal(t, notify.EventID("b2", notify.Finished, ""), ev.ID)
	require.Equal(t, []int{5, 4, 1}, []int{ev.Total, ev.Processed, ev.Errors})
	require.Equal(t, []notify.ErrorCount{{Code: "INPUT_INVALID.DeviceState.Invalid", Count: 1}}, ev.ErrorsByCode)
}

func TestBulkChangeBadCredentialsTouchesNoDevice(t *testing.T) {
	f := newFakeBulk("b3", 4)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	activities.Register(env, &activities.Activities{})
	recordTold(env, f)
	env.OnActivity(a.StartBulkChange, mock.Anything, "b3").Return(f.plan(bulkOptions(10, 100)), nil)
	env.OnActivity(a.CheckThingSpaceAuth, mock.Anything, mock.Anything).Return(temporal.NewNonRetryableApplicationError(
		"thingspace authentication: thingspace login: HTTP 400: UnifiedWebService.REQUEST_FAILED.InvalidCredentials",
		activities.ErrTypeInvalidCredentials, nil)).Once()
	failed := inputOfOne[activities.FailBulkInput](env, a.FailBulkChange)

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "b3"})

	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "ThingSpace authentication failed")
	require.Equal(t, change.AuthFailed, failed.Code)
	require.Contains(t, failed.Message, "InvalidCredentials")
	env.AssertNotCalled(t, activities.SendBatchActivity, mock.Anything, mock.Anything)
	env.AssertExpectations(t)
	// The credentials are checked once: the refusal is not retried.
	env.AssertNumberOfCalls(t, "CheckThingSpaceAuth", 1)
	// Progress shows every device change ended with the code.
	v, err := env.QueryWorkflow(api.ProgressQuery)
	require.NoError(t, err)
	var p api.Progress
	require.NoError(t, v.Get(&p))
	require.Equal(t, 4, p.Errors)
	require.Equal(t, map[change.Code]int{change.AuthFailed: 4}, p.ErrorsByCode)
	// People are told it failed, and why.
	require.Len(t, f.told, 1)
	ev := f.told[0]
	require.Equal(t, notify.Failed, ev.Kind)
	require.Equal(t, notify.EventID("b3", notify.Failed, ""), ev.ID)
	require.Equal(t, 4, ev.Errors)
	require.Equal(t, []notify.ErrorCount{{Code: string(change.AuthFailed), Count: 4}}, ev.ErrorsByCode)
	require.Contains(t, ev.Reason, "ThingSpace authentication failed")
}

func TestBulkChangeStopsSendingWhenCredentialsAreRefusedMidway(t *testing.T) {
	f := newFakeBulk("b4", 2, 2, 2)
	f.refuseBatch = 2
	env := newBulkEnv(t, f, bulkOptions(10, 100))
	var failed activities.FailUnsentInput
	env.OnActivity(a.FailUnsent, mock.Anything, mock.Anything).
		Return(func(_ context.Context, in activities.FailUnsentInput) (int, error) {
			failed = in
			return 4, nil
		}).
		Once()

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "b4"})

	require.NoError(t, env.GetWorkflowError())
	var res api.BulkChangeResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 2, failed.FromBatch)
	require.Equal(t, change.AuthFailed, failed.Code)
	require.Len(t, f.started, 2, "only the first batch's devices got a child")
	require.Equal(t, 4, res.Progress.ErrorsByCode[change.AuthFailed])
	require.Contains(t, res.Progress.Error, "batch 2 could not be sent")
}

// The parent continues as new every StartsPerRun children; the counters,
// the cursor and the children still in flight ride along, and the next runs
// finish the bulk change with nothing counted twice or lost.
func TestBulkChangeContinueAsNewKeepsCounters(t *testing.T) {
	f := newFakeBulk("b5", 4, 4, 3)
	f.outcome[f.batches[1][1].ICCID] = api.DeviceResult{
		Status:    change.Failed,
		ErrorCode: "REQUEST_FAILED.DeviceNotFound",
	}
	opts := bulkOptions(3, 4)
	in := api.BulkChangeInput{BulkChangeID: "b5"}
	runs := 0
	for {
		runs++
		require.Less(t, runs, 10, "the bulk change should finish in a few runs")
		env := newBulkEnv(t, f, opts)
		if in.Resume != nil {
			// Children started by the previous run outlive it and report to
			// this one (each test environment runs one run only).
			for i, c := range in.Resume.InFlight {
				res, ok := f.outcome[c.ICCID]
				if !ok {
					res = api.DeviceResult{Status: change.Processed, Outcome: change.Suspended}
				}
				res.DeviceChangeID, res.ICCID, res.Operation = c.DeviceChangeID, c.ICCID, "suspend"
				f.inFlight--
				env.RegisterDelayedCallback(
					func() { env.SignalWorkflow(api.DeviceResultSignal, res) },
					time.Duration(i+1)*time.Second,
				)
			}
		}
		env.ExecuteWorkflow(BulkChange, in)
		require.True(t, env.IsWorkflowCompleted())
		err := env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		if errors.As(err, &can) {
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &in))
			require.NotNil(t, in.Resume)
			require.LessOrEqual(t, len(in.Resume.InFlight), 3, "in-flight children carried over")
			require.Equal(t, runs, in.Resume.Runs, "the run count rides along")
			continue
		}
		require.NoError(t, err)
		var res api.BulkChangeResult
		require.NoError(t, env.GetWorkflowResult(&res))
		require.Greater(t, runs, 2, "11 devices at 4 starts per run need several runs")
		require.Equal(t, 11, res.Progress.Started)
		require.Equal(t, 10, res.Progress.Processed)
		require.Equal(t, 1, res.Progress.Errors)
		require.Equal(t, 1, res.Progress.ErrorsByCode["REQUEST_FAILED.DeviceNotFound"])
		require.Equal(t, 11, res.Progress.DevicesSent)
		require.Equal(t, runs, res.Progress.Runs)
		break
	}
	require.Equal(t, []int{1, 2, 3}, f.sent, "no batch sent twice across runs")
	require.Len(t, f.started, 11, "no child started twice across runs")
}

func TestBulkChangeProgressQuery(t *testing.T) {
	f := newFakeBulk("b6", 5)
	env := newBulkEnv(t, f, bulkOptions(5, 100))
	var mid api.Progress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(api.ProgressQuery)
		require.NoError(t, err)
		require.NoError(t, v.Get(&mid))
	}, 150*time.Second)

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "b6"})

	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, change.PhaseRunning, mid.Phase)
	require.Equal(t, 5, mid.Total)
	require.Equal(t, 5, mid.Started)
	require.Greater(t, mid.InFlight, 0, "some children are still running at 2.5 minutes")
	require.Greater(t, mid.Done(), 0, "some have finished")
	require.Equal(t, 5, mid.InFlight+mid.Done())
}

// When the last results arrive together, the one that completes the bulk
// change is taken while draining; the workflow must notice and finish
// rather than wait for a result that will never come.
func TestBulkChangeFinishesWhenLastResultsArriveTogether(t *testing.T) {
	f := newFakeBulk("b7", 6)
	f.together = true
	env := newBulkEnv(t, f, bulkOptions(10, 100))
	start := env.Now()

	res := runBulk(t, env, api.BulkChangeInput{BulkChangeID: "b7"})
	require.Equal(t, 6, res.Processed)
	require.Less(t, env.Now().Sub(start), time.Hour, "finished as soon as the children did")
}

// A child that ends without reporting (terminated from the Web UI, failed)
// is noticed once the parent has heard nothing for StallCheck: its device
// change is ended ERROR and the bulk change finishes.
func TestBulkChangeNoticesAChildThatEndedWithoutReporting(t *testing.T) {
	f := newFakeBulk("b8", 4)
	lost := f.batches[0][1]
	f.silent[lost.ICCID] = true
	opts := bulkOptions(10, 100)
	opts.Timing.StallCheck = 20 * time.Minute
	env := newBulkEnv(t, f, opts)
	var checked []api.InFlight
	env.OnActivity(a.CheckDeviceWorkflows, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.CheckDeviceWorkflowsInput) ([]api.DeviceResult, error) {
			checked = append(checked, in.InFlight...)
			var out []api.DeviceResult
			for _, c := range in.InFlight {
				if f.silent[c.ICCID] {
					out = append(
						out,
						api.DeviceResult{DeviceChangeID: c.DeviceChangeID, ICCID: c.ICCID, Operation: "suspend",
							Status: change.Failed, ErrorCode: change.DeviceWorkflowEnded},
					)
				}
			}
			return out, nil
		})
	start := env.Now()

	res := runBulk(t, env, api.BulkChangeInput{BulkChangeID: "b8"})
	require.Equal(t, 3, res.Progress.Processed)
	require.Equal(t, 1, res.Progress.ErrorsByCode[change.DeviceWorkflowEnded])
	require.Equal(t, []api.InFlight{{DeviceChangeID: lost.ID, ICCID: lost.ICCID}}, checked,
		"only the child still awaited was checked, once")
	require.Less(t, env.Now().Sub(start), time.Hour, "noticed after the stall check, not never")
}

// Results that arrive while the parent waits to coalesce them are not a
// stall, however long that wait ran (a loaded server fires timers late):
// here the stall check is shorter than the wait, and results come every
// 100 ms, so there is never a stall to tell of or check.
func TestResultsWaitingAreNotAStall(t *testing.T) {
	f := newFakeBulk("b10", 60)
	f.delay = func(in api.DeviceChangeInput) time.Duration {
		return time.Duration(in.DeviceChangeID) * 100 * time.Millisecond
	}
	opts := bulkOptions(60, 100)
	opts.Timing.StallCheck = 200 * time.Millisecond
	require.Less(t, opts.Timing.StallCheck, coalesceFor)
	env := newBulkEnv(t, f, opts)
	checks := 0
	env.OnActivity(a.CheckDeviceWorkflows, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.CheckDeviceWorkflowsInput) ([]api.DeviceResult, error) {
			checks++
			return nil, nil
		}).Maybe()

	res := runBulk(t, env, api.BulkChangeInput{BulkChangeID: "b10"})
	require.Equal(t, 60, res.Progress.Processed)
	require.Zero(t, checks, "no device workflow checked")
	require.NotContains(t, f.told, notify.Stalled, "no stall told")
}

// A bulk change is not FINISHED while a Rev.io step is owed: the stranded
// steps are settled by a billing retry child first.
func TestBulkChangeSettlesStrandedBillingBeforeFinishing(t *testing.T) {
	f := newFakeBulk("b9", 3)
	f.billingOwed = 2
	env := newBulkEnv(t, f, bulkOptions(10, 100))
	env.RegisterWorkflowWithOptions(BillingRetry, workflow.RegisterOptions{Name: api.BillingRetryWorkflowType})
	var listed []activities.ListOwedBillingInput
	env.OnActivity(a.ListOwedBilling, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ListOwedBillingInput) (*activities.OwedBillingPage, error) {
			listed = append(listed, in)
			return &activities.OwedBillingPage{Done: true, Next: 2, Owed: []activities.OwedBilling{
				{DeviceChangeID: 1, Operation: "activate", Stranded: true},
				{DeviceChangeID: 2, Operation: "deactivate", Stranded: true},
			}}, nil
		}).Once()
	env.OnActivity(a.CreateBillingService, mock.Anything, activities.BillingInput{BulkChangeID: "b9", DeviceChangeID: 1}).
		Return(func(context.Context, activities.BillingInput) (*activities.BillingResult, error) {
			f.billingOwed--
			return &activities.BillingResult{ServiceID: 9, Created: true}, nil
		}).
		Once()
	env.OnActivity(a.DisconnectBilling, mock.Anything, activities.BillingInput{BulkChangeID: "b9", DeviceChangeID: 2}).
		Return(func(context.Context, activities.BillingInput) error {
			f.billingOwed--
			return nil
		}).Once()

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "b9"})

	require.NoError(t, env.GetWorkflowError())
	require.True(t, f.finished, "finished once nothing was owed")
	require.Len(t, listed, 1)
	require.True(t, listed[0].StrandedOnly, "the bulk change settles stranded steps only, not failed ones")
	env.AssertExpectations(t)
}

// An operator resumes a bulk change whose parent failed: where it stood is
// read from the database; nothing already sent is sent again, finished
// device changes get no child, the others do.
func TestBulkChangeRecoverFromDatabase(t *testing.T) {
	f := newFakeBulk("b10", 3, 3, 2)
	// Batch 1 was sent and two of its devices have their outcome; batch 2
	// is next.
	f.done[1], f.done[2] = true, true
	env := newBulkEnv(t, f, bulkOptions(10, 100))
	env.OnActivity(a.RecoverBulkChange, mock.Anything, "b10").Return(&activities.RecoveredBulk{
		Plan: *f.plan(bulkOptions(10, 100)), NextBatch: 2, DevicesSent: 3, Unfinished: 1,
		Tally: change.Tally{
			Processed:    1,
			Errors:       1,
			ByOutcome:    map[change.Outcome]int{change.Suspended: 1},
			ErrorsByCode: map[change.Code]int{"X": 1},
		},
	}, nil).Once()

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "b10", Recover: true})

	require.NoError(t, env.GetWorkflowError())
	var res api.BulkChangeResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, []int{2, 3}, f.sent, "batch 1 was sent before the failure and is not sent again")
	require.Len(
		t,
		f.started,
		6,
		"one child for the unfinished device of batch 1, and one per device of batches 2 and 3",
	)
	require.NotContains(t, f.started, f.batches[0][0].ICCID)
	require.Equal(t, 8, res.Progress.Done())
	require.Equal(t, 1, res.Progress.Recovered)
	env.AssertNotCalled(t, "StartBulkChange", mock.Anything, mock.Anything)
}

// ThingSpace is down when the bulk change starts, for longer than the eight
// attempts (about three minutes) the authentication check used to get: the
// check waits it out, only a refusal of the credentials would fail the
// bulk change. (The test environment caps unlimited retries at ten
// attempts, about five minutes, hence a four-minute outage.)
func TestBulkChangeWaitsOutAThingSpaceOutageAtStart(t *testing.T) {
	f := newFakeBulk("b11", 2)
	env := newActivityEnv()
	start := env.Now()
	attempts := 0
	env.OnActivity(a.CheckThingSpaceAuth, mock.Anything, mock.Anything).Return(func(context.Context, string) error {
		attempts++
		if env.Now().Sub(start) < 4*time.Minute {
			return temporal.NewApplicationError("thingspace oauth: HTTP 503", activities.ErrTypeThingSpace)
		}
		return nil
	})
	env = withBulkMocks(t, env, f, bulkOptions(10, 100))

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "b11"})

	require.NoError(t, env.GetWorkflowError())
	var res api.BulkChangeResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 2, res.Processed)
	require.Greater(t, attempts, 8)
	require.GreaterOrEqual(t, env.Now().Sub(start), 4*time.Minute)
}
