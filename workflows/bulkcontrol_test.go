package workflows

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// update sends an operator's request at the given time and records the
// answer (or the validator's refusal).
type updateOutcome struct {
	result   api.OperatorResult
	rejected error
	done     bool
}

func sendUpdate(
	env *testsuite.TestWorkflowEnvironment,
	at time.Duration,
	name string,
	req api.OperatorRequest,
) *updateOutcome {
	out := &updateOutcome{}
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(name, name+at.String(), &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { out.rejected = err; out.done = true },
			OnComplete: func(v any, err error) {
				if err == nil {
					out.result = v.(api.OperatorResult)
				}
				out.done = true
			},
		}, req)
	}, at)
	return out
}

// controlMocks mocks the activities operators' requests use; cancelled
// counts the device changes CancelUnsent ended.
func controlMocks(env *testsuite.TestWorkflowEnvironment, f *fakeBulk, audit *[]activities.OperatorActionInput) {
	env.OnActivity(a.RecordOperatorAction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.OperatorActionInput) error {
			*audit = append(*audit, in)
			return nil
		}).Maybe()
	env.OnActivity(a.SetBulkStatus, mock.Anything, mock.Anything).Return(nil).Maybe()
	env.OnActivity(a.CancelUnsent, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.CancelUnsentInput) (int, error) {
			n := 0
			for _, b := range f.batches[len(f.sent):] {
				n += len(b)
			}
			return n, nil
		}).Maybe()
}

// Paused: nothing new is sent and no new child starts; resumed: the rest
// goes. Who asked and why is in the audit log.
func TestBulkChangePauseAndResume(t *testing.T) {
	f := newFakeBulk("c1", 2, 2, 2)
	env := newBulkEnv(t, f, bulkOptions(1, 100))
	var audit []activities.OperatorActionInput
	controlMocks(env, f, &audit)
	var atPause, atResume []int
	pause := sendUpdate(env, 90*time.Second, api.PauseUpdate, api.OperatorRequest{By: "alice", Reason: "wrong file?"})
	env.RegisterDelayedCallback(func() { atPause = append([]int(nil), f.sent...) }, 91*time.Second)
	twice := sendUpdate(env, 2*time.Hour, api.PauseUpdate, api.OperatorRequest{By: "bob"})
	env.RegisterDelayedCallback(func() { atResume = append([]int(nil), f.sent...) }, 3*time.Hour-time.Second)
	resume := sendUpdate(env, 3*time.Hour, api.ResumeUpdate, api.OperatorRequest{By: "alice", Reason: "file checked"})
	again := sendUpdate(env, 3*time.Hour+time.Second, api.ResumeUpdate, api.OperatorRequest{By: "alice"})

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "c1"})

	require.NoError(t, env.GetWorkflowError())
	require.True(t, pause.done)
	require.NoError(t, pause.rejected)
	require.Equal(t, change.BulkPaused, pause.result.Status)
	require.Equal(t, atPause, atResume, "nothing sent while paused")
	require.ErrorContains(t, twice.rejected, "already paused (by alice")
	require.NoError(t, resume.rejected)
	require.ErrorContains(t, again.rejected, "not paused")
	require.Equal(t, []int{1, 2, 3}, f.sent, "every batch sent once in the end")
	require.Len(t, f.started, 6)
	require.Len(t, audit, 2, "pause and resume, not the refused requests")
	require.Equal(t, "alice", audit[0].By)
	require.Equal(t, "wrong file?", audit[0].Reason)
	var res api.BulkChangeResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, change.BulkFinished, res.Status)
}

// Cancelled mid-way: what was not sent ends CANCELLED, what was sent
// finishes, the bulk change ends CANCELLED; a second cancel is refused.
func TestBulkChangeCancel(t *testing.T) {
	f := newFakeBulk("c2", 2, 2, 2)
	env := newBulkEnv(t, f, bulkOptions(1, 100))
	var audit []activities.OperatorActionInput
	controlMocks(env, f, &audit)
	cancel := sendUpdate(
		env,
		90*time.Second,
		api.CancelUpdate,
		api.OperatorRequest{By: "alice", Reason: "wrong customer"},
	)
	twice := sendUpdate(env, 100*time.Second, api.CancelUpdate, api.OperatorRequest{By: "bob"})

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "c2"})

	require.NoError(t, env.GetWorkflowError())
	require.NoError(t, cancel.rejected)
	require.Contains(t, cancel.result.Message, "4 device changes not yet sent end CANCELLED")
	require.ErrorContains(t, twice.rejected, "already cancelled (by alice")
	require.Equal(t, []int{1}, f.sent, "nothing sent after the cancellation")
	require.Len(t, f.started, 2, "the devices already sent finished")
	require.True(t, f.finishedWith.Cancelled)
	var res api.BulkChangeResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, change.BulkCancelled, res.Status)
	require.Equal(t, 4, res.Progress.Cancelled)
	require.Equal(t, 6, res.Progress.Done())
}

// newApprovalEnv is the environment of the bulk change f that alice
// submitted and that awaits another operator's approval (reason).
func newApprovalEnv(t *testing.T, f *fakeBulk, reason string) *testsuite.TestWorkflowEnvironment {
	opts := bulkOptions(10, 100)
	opts.Approval = &api.Approval{Reason: reason, ExpiresAfter: 72 * time.Hour}
	plan := f.plan(opts)
	plan.SubmittedBy = "alice"
	env := newActivityEnv()
	env.OnActivity(a.StartBulkChange, mock.Anything, f.id).Return(plan, nil)
	env.OnActivity(a.CheckThingSpaceAuth, mock.Anything, mock.Anything).Return(nil)
	return withBulkMocks(t, env, f, opts)
}

// Four eyes: nothing is sent before another operator approves; the
// submitter's own approval is refused.
func TestBulkChangeAwaitsApproval(t *testing.T) {
	f := newFakeBulk("c3", 2)
	env := newApprovalEnv(t, f, "deactivates 2 lines")
	var audit []activities.OperatorActionInput
	controlMocks(env, f, &audit)
	var sentBeforeApproval []int
	env.RegisterDelayedCallback(
		func() { sentBeforeApproval = append([]int{}, f.sent...) },
		10*time.Hour-time.Second,
	)
	self := sendUpdate(env, time.Hour, api.ApproveUpdate, api.OperatorRequest{By: "alice"})
	pause := sendUpdate(env, 2*time.Hour, api.PauseUpdate, api.OperatorRequest{By: "bob"})
	approve := sendUpdate(env, 10*time.Hour, api.ApproveUpdate, api.OperatorRequest{By: "bob", Reason: "checked"})

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "c3"})

	require.NoError(t, env.GetWorkflowError())
	require.ErrorContains(t, self.rejected, "alice submitted this bulk change: another operator must approve it")
	require.ErrorContains(t, pause.rejected, "has not started (AWAITING_APPROVAL)")
	require.NoError(t, approve.rejected)
	require.Empty(t, sentBeforeApproval, "nothing sent before the approval")
	require.Equal(t, []int{1}, f.sent)
	require.Equal(t, "approve", audit[0].Action)
	// People were told it waited for them, then that it finished.
	require.Len(t, f.told, 2)
	require.Equal(t, notify.ApprovalNeeded, f.told[0].Kind)
	require.Contains(t, f.told[0].Reason, "approval by an operator other than alice (deactivates 2 lines)")
	require.Equal(t, notify.Finished, f.told[1].Kind)
}

// The submitter's name in another case, spacing or width is still the
// submitter; text that could not be recorded as typed is refused before it
// changes anything.
func TestBulkChangeApprovalNamesNormalisedAndTextChecked(t *testing.T) {
	f := newFakeBulk("c6", 2)
	env := newApprovalEnv(t, f, "2 deactivate")
	var audit []activities.OperatorActionInput
	controlMocks(env, f, &audit)
	var refused []*updateOutcome
	for i, by := range []string{"Alice", " ALICE  ", "ａｌｉｃｅ"} {
		refused = append(refused,
			sendUpdate(env, time.Duration(i+1)*time.Minute, api.ApproveUpdate, api.OperatorRequest{By: by}))
	}
	bidi := sendUpdate(env, 10*time.Minute, api.ApproveUpdate,
		api.OperatorRequest{By: "bob", Reason: "ok \u202edevorppa ton"})
	long := sendUpdate(env, 11*time.Minute, api.RejectUpdate,
		api.OperatorRequest{By: strings.Repeat("b", 201)})
	blank := sendUpdate(env, 12*time.Minute, api.ApproveUpdate, api.OperatorRequest{By: "   "})
	approve := sendUpdate(env, time.Hour, api.ApproveUpdate, api.OperatorRequest{By: "bob", Reason: "checked"})

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "c6"})

	require.NoError(t, env.GetWorkflowError())
	for _, r := range refused {
		require.ErrorContains(t, r.rejected, "alice submitted this bulk change: another operator must approve it")
		require.ErrorContains(t, r.rejected, "names the same operator")
	}
	require.ErrorContains(t, bidi.rejected, `"reason" has a character that is not printable (U+202E)`)
	require.ErrorContains(t, long.rejected, `"by" is 201 characters long: at most 200`)
	require.ErrorContains(t, blank.rejected, `"by" is required`)
	require.NoError(t, approve.rejected)
	require.Len(t, audit, 1, "only the accepted approval is recorded")
	require.Equal(t, "bob", audit[0].By)
	require.Equal(t, []int{1}, f.sent)
}

// An approval that does not come in time cancels the bulk change; nothing
// was sent.
func TestBulkChangeApprovalExpires(t *testing.T) {
	f := newFakeBulk("c4", 3)
	opts := bulkOptions(10, 100)
	opts.Approval = &api.Approval{Reason: "deactivates 3 lines", ExpiresAfter: 72 * time.Hour}
	env := newBulkEnv(t, f, opts)
	var audit []activities.OperatorActionInput
	controlMocks(env, f, &audit)
	start := env.Now()

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "c4"})

	require.NoError(t, env.GetWorkflowError())
	var res api.BulkChangeResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, change.BulkCancelled, res.Status)
	require.Equal(t, 3, res.Progress.Cancelled)
	require.Empty(t, f.sent)
	require.GreaterOrEqual(t, env.Now().Sub(start), 72*time.Hour)
	require.Equal(t, "approval-expired", audit[0].Action)
}

// Scheduled: nothing is sent before its start time; cancelled while it
// waits, nothing is ever sent.
func TestBulkChangeScheduled(t *testing.T) {
	for _, cancel := range []bool{false, true} {
		f := newFakeBulk("c5", 2)
		opts := bulkOptions(10, 100)
		env := newActivityEnv()
		opts.NotBefore = env.Now().Add(6 * time.Hour)
		env.OnActivity(a.CheckThingSpaceAuth, mock.Anything, mock.Anything).Return(nil).Maybe()
		env = withBulkMocks(t, env, f, opts)
		var audit []activities.OperatorActionInput
		controlMocks(env, f, &audit)
		var early []int
		env.RegisterDelayedCallback(func() { early = append([]int{}, f.sent...) }, 6*time.Hour-time.Minute)
		if cancel {
			sendUpdate(env, time.Hour, api.CancelUpdate, api.OperatorRequest{By: "alice", Reason: "not tonight"})
		}

		env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "c5"})

		require.NoError(t, env.GetWorkflowError())
		require.Empty(t, early, "nothing before the start time")
		var res api.BulkChangeResult
		require.NoError(t, env.GetWorkflowResult(&res))
		if cancel {
			require.Empty(t, f.sent)
			require.Equal(t, change.BulkCancelled, res.Status)
			require.Equal(t, 2, res.Progress.Cancelled)
		} else {
			require.Equal(t, []int{1}, f.sent)
			require.Equal(t, change.BulkFinished, res.Status)
		}
	}
}
