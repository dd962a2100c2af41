package workflows

import (
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// GetVersion records its marker with an upsert of TemporalChangeVersion:
// counting the upserts counts the version markers a run records.
const upsertMethod = "workflow.UpsertSearchAttributes"

func countVersionMarkers(env *deviceEnv) {
	//lint:ignore SA1019 GetVersion upserts through the untyped call, which only this mock sees.
	env.OnUpsertSearchAttributes(mock.Anything).Return(nil).Maybe()
}

func protocol1(op change.Operation, k api.KnownDeviceChange) api.DeviceChangeInput {
	in := deviceInput(op)
	in.Protocol = api.DeviceChangeProtocol
	in.Known = &k
	return in
}

// A child of protocol 1 whose parent already read ThingSpace's answer (a
// stored callback, or the synchronous answer of /add) decides from its
// input: it neither reads the device change nor records a version marker,
// and the answer keeps its source.
func TestDeviceChangeOfProtocol1DecidesFromWhatTheParentKnew(t *testing.T) {
	for name, tc := range map[string]struct {
		op      change.Operation
		source  change.Source
		outcome change.Outcome
	}{
		"stored callback":    {"suspend", change.ByCallback, change.Suspended},
		"synchronous answer": {"inventory", change.BySync, change.AddedToInventory},
	} {
		t.Run(name, func(t *testing.T) {
			env := newDeviceEnv(t, sent(tc.op))
			countVersionMarkers(env)
			c := api.Confirmation{Source: tc.source, RequestID: "req-1", Success: true}

			env.ExecuteWorkflow(DeviceChange, protocol1(tc.op, api.KnownDeviceChange{RequestID: "req-1",
				Status: change.Sent, Confirmation: &c}))

			res := env.result(t)
			require.Equal(t, tc.outcome, res.Outcome)
			require.Equal(t, tc.source, env.completed[0].ConfirmedBy)
			require.Equal(t, "req-1", env.completed[0].RequestID)
			require.Zero(t, env.loads, "the device change is not read again")
			env.AssertWorkflowNumberOfCalls(t, upsertMethod, 0)
			require.Empty(t, env.polled)
		})
	}
}

// A child reads its device change when it starts unless its input holds
// the answer: one of protocol 1 without it (a callback stored between the
// parent's read and the child's start, whose signal found no workflow, is
// found there, not after the callback timeout), and one started without a
// protocol by a parent older than the field, which also still records its
// version marker so that its history replays as recorded.
func TestDeviceChangeReadsItsChangeWhenTheAnswerIsNotInItsInput(t *testing.T) {
	for name, tc := range map[string]struct {
		in             api.DeviceChangeInput
		versionMarkers int
	}{
		"protocol 1":  {protocol1("suspend", api.KnownDeviceChange{RequestID: "req-1", Status: change.Sent}), 0},
		"no protocol": {deviceInput("suspend"), 1},
	} {
		t.Run(name, func(t *testing.T) {
			st := sent("suspend")
			st.Stored = []api.Confirmation{{Source: change.ByCallback, RequestID: "req-1", Success: true}}
			env := newDeviceEnv(t, st)
			countVersionMarkers(env)

			env.ExecuteWorkflow(DeviceChange, tc.in)

			require.Equal(t, change.Suspended, env.result(t).Outcome)
			require.Equal(t, 1, env.loads)
			env.AssertWorkflowNumberOfCalls(t, upsertMethod, tc.versionMarkers)
			require.Empty(t, env.polled, "the stored callback was found at start")
		})
	}
}

// A change that had its outcome when the parent listed it (recorded by a
// lost task, say) and owes a Rev.io step runs it, without the version
// marker that guards that path for older children.
func TestDeviceChangeOfProtocol1EndedBeforeItsRunRunsTheOwedFollowUp(t *testing.T) {
	env := newDeviceEnv(t, sent("activate"))
	countVersionMarkers(env)
	env.stored = &activities.CompleteResult{Status: change.Processed, Outcome: change.Activated, MSISDN: "5551230009",
		BillingStatus: change.BillingPending}
	env.OnActivity(a.CreateBillingService, mock.Anything, activities.BillingInput{BulkChangeID: "b1", DeviceChangeID: 7}).
		Return(&activities.BillingResult{ServiceID: 100009, Created: true}, nil).
		Once()

	env.ExecuteWorkflow(DeviceChange, protocol1("activate", api.KnownDeviceChange{RequestID: "req-1",
		Status: change.Processed, Final: true, HasBilling: true}))

	res := env.result(t)
	require.Equal(t, change.Processed, res.Status)
	require.False(t, res.BillingError)
	require.Zero(t, env.loads)
	env.AssertWorkflowNumberOfCalls(t, upsertMethod, 0)
}
