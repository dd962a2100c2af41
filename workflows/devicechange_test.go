package workflows

import (
	"context"
	"errors"
	sdkpb "go.temporal.io/api/sdk/v1"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const parentID = "bulk-change/b1"

func deviceInput(op change.Operation) api.DeviceChangeInput {
	return api.DeviceChangeInput{
		BulkChangeID: "b1", DeviceChangeID: 7, ICCID: "89148000000000000011", Operation: op, AccountName: "acct",
		ParentWorkflowID: parentID,
		Options: api.Options{
			Timing: api.Timing{
				CallbackTimeout: 30 * time.Minute,
				ConfirmDeadline: 24 * time.Hour,
				PollInterval:    5 * time.Minute,
				PollMaxInterval: 30 * time.Minute,
			},
			CallbacksEnabled: true, BillingEnabled: true,
		},
	}
}

// deviceEnv is a test environment for one DeviceChange workflow with the
// activities every path uses mocked, recording what was completed and
// reported.
type deviceEnv struct {
	*testsuite.TestWorkflowEnvironment
	completed []activities.CompleteInput
	reported  []api.DeviceResult
	polled    []time.Time
	start     time.Time
	// stored, when set, is what the database already holds: a change that
	// is already final keeps its first outcome.
	stored *activities.CompleteResult
	// loads counts the reads of the device change (LoadDeviceChange).
	loads int
}

func newDeviceEnv(t *testing.T, st activities.DeviceState) *deviceEnv {
	var s testsuite.WorkflowTestSuite
	env := &deviceEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment()}
	env.start = env.Now()
	activities.Register(env, &activities.Activities{})
	env.OnActivity(a.LoadDeviceChange, mock.Anything, int64(7)).Return(
		func(context.Context, int64) (*activities.DeviceState, error) {
			env.loads++
			return &st, nil
		}).Maybe()
	env.OnActivity(a.CompleteDeviceChange, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.CompleteInput) (*activities.CompleteResult, error) {
			env.completed = append(env.completed, in)
			if env.stored != nil {
				return env.stored, nil
			}
			return &activities.CompleteResult{
				Status:    in.Status,
				Outcome:   in.Outcome,
				ErrorCode: in.ErrorCode,
				MSISDN:    in.MSISDN,
			}, nil
		}).Maybe()
	env.OnActivity(a.RequestPoll, mock.Anything, mock.Anything).
		Return(func(_ context.Context, in activities.RequestPollInput) error {
			env.polled = append(env.polled, env.Now())
			return nil
		}).
		Maybe()
	env.OnActivity(a.CancelPoll, mock.Anything, mock.Anything).Return(nil).Maybe()
	env.OnActivity(a.StoredConfirmations, mock.Anything, mock.Anything).Return([]api.Confirmation(nil), nil).Maybe()
	env.OnSignalExternalWorkflow(mock.Anything, parentID, "", api.DeviceResultSignal, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			env.reported = append(env.reported, arg.(api.DeviceResult))
			return nil
		}).Maybe()
	t.Cleanup(func() { env.AssertExpectations(t) })
	return env
}

func (e *deviceEnv) signalAt(d time.Duration, c api.Confirmation) {
	e.RegisterDelayedCallback(func() {
		c.At = e.Now()
		e.SignalWorkflow(api.ConfirmationSignal, c)
	}, d)
}

// ppuUpdated is the PPU update of an already-active device: sent as
// request ppu-1, confirmed after d by source, and the device then looked up
// active.
func (e *deviceEnv) ppuUpdated(d time.Duration, source change.Source) {
	e.OnActivity(a.UpdatePlaceOfUse, mock.Anything, activities.PPUUpdateInput{BulkChangeID: "b1", DeviceChangeID: 7}).
		Return(&activities.PPUUpdateResult{RequestID: "ppu-1"}, nil).Once()
	e.signalAt(d, api.Confirmation{Source: source, RequestID: "ppu-1", Success: true})
	e.OnActivity(a.LookupDevice, mock.Anything, mock.Anything).
		Return(&activities.DeviceLookup{Found: true, State: "active", MSISDN: "5551230003"}, nil).Once()
}

func (e *deviceEnv) result(t *testing.T) api.DeviceResult {
	t.Helper()
	require.True(t, e.IsWorkflowCompleted())
	require.NoError(t, e.GetWorkflowError())
	var res api.DeviceResult
	require.NoError(t, e.GetWorkflowResult(&res))
	require.Len(t, e.reported, 1, "the result is reported to the parent once")
	require.Equal(t, res, e.reported[0])
	require.Len(t, e.completed, 1, "the outcome is recorded once")
	return res
}

// run executes the device workflow and returns its checked result.
func (e *deviceEnv) run(t *testing.T, in api.DeviceChangeInput) api.DeviceResult {
	t.Helper()
	e.ExecuteWorkflow(DeviceChange, in)
	return e.result(t)
}

// recordBillingFailure expects one billing failure to be recorded and
// returns where it will be.
func (e *deviceEnv) recordBillingFailure() *activities.RecordBillingFailureInput {
	return inputOfOne[activities.RecordBillingFailureInput](e.TestWorkflowEnvironment, a.RecordBillingFailure)
}

// inputOfOne expects act, an activity that returns only an error, to be
// called once and returns where its input will be.
func inputOfOne[T any](env *testsuite.TestWorkflowEnvironment, act any) *T {
	in := new(T)
	env.OnActivity(act, mock.Anything, mock.Anything).
		Return(func(_ context.Context, got T) error {
			*in = got
			return nil
		}).
		Once()
	return in
}

// syncedSuspend is a suspend ThingSpace confirmed in its answer, and a bare
// environment to run it in: the test mocks every activity itself.
func syncedSuspend() (*testsuite.TestWorkflowEnvironment, activities.DeviceState) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	activities.Register(env, &activities.Activities{})
	st := sent("suspend")
	st.Sync = &api.Confirmation{Source: change.BySync, Success: true}
	return env, st
}

func sent(op change.Operation) activities.DeviceState {
	return activities.DeviceState{
		ID:            7,
		BulkChangeID:  "b1",
		ICCID:         "89148000000000000011",
		Operation:     op,
		AccountName:   "acct",
		Status:        change.Sent,
		RequestID:     "req-1",
		BillingStatus: change.BillingNone,
	}
}

func TestDeviceChangeCallbackBeforeTimer(t *testing.T) {
	st := sent("activate")
	st.HasBilling = true
	env := newDeviceEnv(t, st)
	// The Web UI's current details say where the device stands, without
	// the MSISDN.
	var waiting string
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow("__temporal_workflow_metadata")
		require.NoError(t, err)
		var md sdkpb.WorkflowMetadata
		require.NoError(t, v.Get(&md))
		waiting = md.GetCurrentDetails()
	}, time.Minute)
	env.signalAt(
		3*time.Minute,
		api.Confirmation{Source: change.ByCallback, RequestID: "req-1", Success: true, MSISDN: "5551230001"},
	)
	env.OnActivity(a.CreateBillingService, mock.Anything, activities.BillingInput{BulkChangeID: "b1", DeviceChangeID: 7}).
		Return(&activities.BillingResult{ServiceID: 100001, Created: true}, nil).
		Once()

	res := env.run(t, deviceInput("activate"))
	require.Equal(t, change.Processed, res.Status)
	require.Equal(t, change.Activated, res.Outcome)
	require.False(t, res.BillingError)
	c := env.completed[0]
	require.Equal(t, "5551230001", c.MSISDN, "the MSISDN comes from the callback")
	require.Equal(t, change.ByCallback, c.ConfirmedBy)
	require.True(t, c.BillingPending)
	require.Empty(t, env.polled, "no polling when the callback came in time")
	require.Less(t, env.Now().Sub(env.start), 30*time.Minute)
	require.Regexp(t, `^activate \d+ · waiting for ThingSpace's callback since \d{4}-`, waiting)
	require.NotContains(t, waiting, "5551230001")
}

func TestDeviceChangeTimerThenPollingToSuccess(t *testing.T) {
	env := newDeviceEnv(t, sent("activate"))
	// The poller answers 10 minutes after the callback timer fired; the
	// MSISDN is not in its confirmation, so it is read from the device list.
	env.signalAt(
		40*time.Minute,
		api.Confirmation{Source: change.ByPoll, RequestID: "req-1", Success: true, State: "active"},
	)
	env.OnActivity(a.LookupDevice, mock.Anything, mock.Anything).
		Return(&activities.DeviceLookup{Found: true, State: "active", MSISDN: "5551230002"}, nil).Once()

	res := env.run(t, deviceInput("activate"))
	require.Equal(t, change.Processed, res.Status)
	require.Len(t, env.polled, 1)
	require.Equal(t, 30*time.Minute, env.polled[0].Sub(env.start), "polling starts when the 30-minute timer fires")
	require.Equal(t, change.ByPoll, env.completed[0].ConfirmedBy)
	require.Equal(t, "5551230002", env.completed[0].MSISDN)
}

func TestDeviceChangeTimerThenPollingToFailure(t *testing.T) {
	env := newDeviceEnv(t, sent("suspend"))
	env.signalAt(
		45*time.Minute,
		api.Confirmation{Source: change.ByPoll, RequestID: "req-1", FaultCode: change.PollStateMismatch,
			FaultMessage: "device is active at ThingSpace after the suspend request (expected suspended)"},
	)

	res := env.run(t, deviceInput("suspend"))
	require.Equal(t, change.Failed, res.Status)
	require.Equal(t, change.PollStateMismatch, res.ErrorCode)
	require.Contains(t, env.completed[0].ErrorMessage, "expected suspended")
	require.Len(t, env.polled, 1)
}

func TestDeviceChangeCallbackDuringPollingWins(t *testing.T) {
	env := newDeviceEnv(t, sent("restore"))
	env.signalAt(50*time.Minute, api.Confirmation{Source: change.ByCallback, RequestID: "req-1", Success: true})
	env.signalAt(55*time.Minute, api.Confirmation{Source: change.ByPoll, RequestID: "req-1", Success: true})

	res := env.run(t, deviceInput("restore"))
	require.Equal(t, change.Restored, res.Outcome)
	require.Len(t, env.polled, 1, "the device was handed to the poller after the timer")
	require.Equal(t, change.ByCallback, env.completed[0].ConfirmedBy, "the late callback won")
	require.Equal(t, change.StateActive, env.completed[0].FinalState)
}

func TestDeviceChangeStoredCallbackBeforeWorkflowWaits(t *testing.T) {
	st := sent("deactivate")
	st.Stored = []api.Confirmation{{Source: change.ByCallback, RequestID: "req-1", Success: true, CallbackID: 3}}
	env := newDeviceEnv(t, st)

	res := env.run(t, deviceInput("deactivate"))
	require.Equal(t, change.Deactivated, res.Outcome)
	require.True(t, env.completed[0].ReleaseMSISDN)
	require.Equal(t, time.Duration(0), env.Now().Sub(env.start), "nothing was awaited")
}

func TestDeviceChangeIgnoresConfirmationOfAnotherRequest(t *testing.T) {
	env := newDeviceEnv(t, sent("suspend"))
	env.signalAt(time.Minute, api.Confirmation{Source: change.ByCallback, RequestID: "req-old", FaultCode: "X"})
	env.signalAt(2*time.Minute, api.Confirmation{Source: change.ByCallback, RequestID: "req-1", Success: true})

	res := env.run(t, deviceInput("suspend"))
	require.Equal(t, change.Processed, res.Status)
}

func TestDeviceChangeNotConfirmedByDeadline(t *testing.T) {
	env := newDeviceEnv(t, sent("suspend"))

	res := env.run(t, deviceInput("suspend"))
	require.Equal(t, change.Failed, res.Status)
	require.Equal(t, change.NotConfirmed, res.ErrorCode)
	require.Equal(t, 24*time.Hour, env.Now().Sub(env.start))
}

func TestDeviceChangePollingOnlyWhenCallbacksDisabled(t *testing.T) {
	env := newDeviceEnv(t, sent("suspend"))
	env.signalAt(6*time.Minute, api.Confirmation{Source: change.ByPoll, RequestID: "req-1", Success: true})
	in := deviceInput("suspend")
	in.Options.CallbacksEnabled = false

	env.ExecuteWorkflow(DeviceChange, in)

	env.result(t)
	require.Len(t, env.polled, 1)
	require.Equal(t, env.start, env.polled[0], "with callbacks off, polling starts at once")
}

func TestDeviceChangeAlreadyActiveUpdatesPPUOnly(t *testing.T) {
	st := sent("activate")
	st.HasPPU, st.HasBilling = true, true
	st.Sync = &api.Confirmation{
		Source:       change.BySync,
		FaultCode:    change.FaultAlreadyActive,
		FaultMessage: "Device is already active",
	}
	env := newDeviceEnv(t, st)
	env.ppuUpdated(2*time.Minute, change.ByCallback)
	env.OnActivity(a.CreateBillingService, mock.Anything, mock.Anything).
		Return(&activities.BillingResult{ServiceID: 1}, nil).
		Once()

	res := env.run(t, deviceInput("activate"))
	require.Equal(t, change.Processed, res.Status)
	require.Equal(t, change.AlreadyActivePPU, res.Outcome)
	require.Equal(t, "5551230003", env.completed[0].MSISDN)
	require.Equal(t, "ppu-1", env.completed[0].RequestID)
}

// Polling sees an already-active device active whether or not the address
// was set: without the update's own callback the outcome says so.
func TestDeviceChangeAlreadyActivePPUConfirmedOnlyByPolling(t *testing.T) {
	st := sent("activate")
	st.HasPPU = true
	st.Sync = &api.Confirmation{Source: change.BySync, FaultCode: change.FaultAlreadyActive}
	env := newDeviceEnv(t, st)
	env.ppuUpdated(31*time.Minute, change.ByPoll)

	res := env.run(t, deviceInput("activate"))
	require.Equal(t, change.Processed, res.Status)
	require.Equal(t, change.AlreadyActivePPUUnconfirmed, res.Outcome)
	require.Equal(t, change.ByPoll, env.completed[0].ConfirmedBy)
}

func TestDeviceChangeAlreadyActiveWithoutPPU(t *testing.T) {
	st := sent("activate")
	st.Stored = []api.Confirmation{
		{Source: change.ByCallback, RequestID: "req-1", FaultCode: change.FaultAlreadyActive},
	}
	env := newDeviceEnv(t, st)
	env.OnActivity(a.LookupDevice, mock.Anything, mock.Anything).
		Return(&activities.DeviceLookup{Found: true, MSISDN: "5551230004"}, nil).
		Once()

	res := env.run(t, deviceInput("activate"))
	require.Equal(t, change.AlreadyActive, res.Outcome)
	env.AssertNotCalled(t, "UpdatePlaceOfUse", mock.Anything, mock.Anything)
}

func TestDeviceChangeRevioFailureKeepsActivation(t *testing.T) {
	st := sent("activate")
	st.HasBilling = true
	env := newDeviceEnv(t, st)
	env.signalAt(
		time.Minute,
		api.Confirmation{Source: change.ByCallback, RequestID: "req-1", Success: true, MSISDN: "5551230005"},
	)
	env.OnActivity(a.CreateBillingService, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("create Rev.io service: HTTP 400: customer 9 does not exist", activities.ErrTypeRevio, nil),
	).
		Once()
	recorded := env.recordBillingFailure()

	res := env.run(t, deviceInput("activate"))
	require.Equal(t, change.Processed, res.Status, "the activation stands")
	require.Equal(t, change.Activated, res.Outcome)
	require.True(t, res.BillingError)
	require.Equal(t, int64(7), recorded.DeviceChangeID)
	require.Contains(t, recorded.Message, "customer 9 does not exist")
}

func TestDeviceChangeRefusedAtSubmissionOnlyRecords(t *testing.T) {
	st := sent("suspend")
	st.Status, st.Final, st.ErrorCode = change.Failed, true, change.DeviceBusy
	env := newDeviceEnv(t, st)
	env.stored = &activities.CompleteResult{Status: change.Failed, ErrorCode: change.DeviceBusy}

	res := env.run(t, deviceInput("suspend"))
	require.Equal(t, change.Failed, res.Status)
	require.Equal(t, change.DeviceBusy, res.ErrorCode)
}

func TestDeviceChangeInventoryIsConfirmedSynchronously(t *testing.T) {
	st := sent("inventory")
	st.RequestID = ""
	st.Sync = &api.Confirmation{Source: change.BySync, Success: true, State: "preactive"}
	env := newDeviceEnv(t, st)

	res := env.run(t, deviceInput("inventory"))
	require.Equal(t, change.AddedToInventory, res.Outcome)
	require.Equal(t, change.StatePreActive, env.completed[0].FinalState)
}

func TestDeviceChangeParentGoneIsNotAnError(t *testing.T) {
	env, st := syncedSuspend()
	env.OnActivity(a.LoadDeviceChange, mock.Anything, mock.Anything).Return(&st, nil)
	env.OnActivity(a.CompleteDeviceChange, mock.Anything, mock.Anything).
		Return(&activities.CompleteResult{Status: change.Processed}, nil)
	env.OnSignalExternalWorkflow(mock.Anything, parentID, "", api.DeviceResultSignal, mock.Anything).
		Return(errors.New("workflow not found"))

	env.ExecuteWorkflow(DeviceChange, deviceInput("suspend"))

	require.NoError(t, env.GetWorkflowError())
}

// The change already had its outcome when the workflow loaded it because an
// earlier attempt of this very workflow task recorded it (the worker died
// before the task completed): the record owes the Rev.io step, so it runs.
func TestDeviceChangeRecordedByALostTaskStillRunsItsFollowUp(t *testing.T) {
	st := sent("activate")
	st.HasBilling = true
	st.Status, st.Final = change.Processed, true
	env := newDeviceEnv(t, st)
	env.stored = &activities.CompleteResult{Status: change.Processed, Outcome: change.Activated, MSISDN: "5551230009",
		BillingStatus: change.BillingPending}
	env.OnActivity(a.CreateBillingService, mock.Anything, activities.BillingInput{BulkChangeID: "b1", DeviceChangeID: 7}).
		Return(&activities.BillingResult{ServiceID: 100009, Created: true}, nil).
		Once()

	res := env.run(t, deviceInput("activate"))
	require.Equal(t, change.Processed, res.Status)
	require.False(t, res.BillingError)
}

// A deactivation owes the disconnection of its Rev.io service when
// configured; its failure is recorded with its code for a billing retry.
func TestDeviceChangeDeactivationDisconnectsBilling(t *testing.T) {
	st := sent("deactivate")
	st.Sync = &api.Confirmation{Source: change.BySync, Success: true}
	env := newDeviceEnv(t, st)
	in := deviceInput("deactivate")
	in.Options.DisconnectBillingOnDeactivate = true
	env.OnActivity(a.DisconnectBilling, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("disconnect Rev.io service: HTTP 400", activities.ErrTypeRevio, nil),
	).
		Once()
	recorded := env.recordBillingFailure()

	res := env.run(t, in)
	require.True(t, env.completed[0].BillingPending, "the record owes the disconnection")
	require.True(t, res.BillingError)
	require.Equal(t, activities.ErrTypeRevio, recorded.Code)
}

// An already-active device whose fault came by callback is recorded as
// confirmed by callback, not as a synchronous answer.
func TestDeviceChangeAlreadyActiveKeepsItsConfirmationSource(t *testing.T) {
	st := sent("activate")
	env := newDeviceEnv(t, st)
	env.signalAt(
		time.Minute,
		api.Confirmation{Source: change.ByCallback, RequestID: "req-1", FaultCode: change.FaultAlreadyActive},
	)
	env.OnActivity(a.LookupDevice, mock.Anything, mock.Anything).
		Return(&activities.DeviceLookup{Found: true, MSISDN: "5551230010"}, nil).
		Once()

	res := env.run(t, deviceInput("activate"))
	require.Equal(t, change.AlreadyActive, res.Outcome)
	require.Equal(t, change.ByCallback, env.completed[0].ConfirmedBy)
	require.Equal(t, "req-1", env.completed[0].RequestID)
}

// A database outage longer than any schedule-to-close of old (10 minutes)
// delays the device workflow; it does not fail it.
func TestDeviceChangeWaitsOutALongDatabaseOutage(t *testing.T) {
	env, st := syncedSuspend()
	start := env.Now()
	attempts := 0
	env.OnActivity(a.LoadDeviceChange, mock.Anything, int64(7)).
		Return(func(context.Context, int64) (*activities.DeviceState, error) {
			attempts++
			if env.Now().Sub(start) < 40*time.Minute {
				return nil, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
			}
			return &st, nil
		})
	env.OnActivity(a.CompleteDeviceChange, mock.Anything, mock.Anything).
		Return(&activities.CompleteResult{Status: change.Processed, Outcome: change.Suspended}, nil)
	env.OnSignalExternalWorkflow(mock.Anything, parentID, "", api.DeviceResultSignal, mock.Anything).Return(nil)

	env.ExecuteWorkflow(DeviceChange, deviceInput("suspend"))

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.GreaterOrEqual(t, env.Now().Sub(start), 40*time.Minute)
	require.Greater(t, attempts, 20)
}
