package activities_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	pollInterval    = time.Minute
	pollMaxInterval = 3 * time.Minute
)

func workflowOf(id int64) string { return "device-change/" + itoa(id) }

// requestPoll registers a device change for polling as its workflow does
// when its callback is late.
func (h *harness) requestPoll(acct string, id int64, iccid, op string) {
	h.t.Helper()
	require.NoError(
		h.t,
		h.run(nil, h.acts.RequestPoll, activities.RequestPollInput{DeviceChangeID: id, AccountName: acct,
			ICCID: iccid, Operation: change.Awaited(op), RequestID: "req-" + itoa(id), WorkflowID: workflowOf(id),
			Interval: pollInterval, MaxInterval: pollMaxInterval}),
	)
}

func (h *harness) pollAccount(acct string) activities.PollAccountResult {
	h.t.Helper()
	return *mustResult[activities.PollAccountResult](h, h.acts.PollAccount, activities.PollAccountInput{AccountName: acct})
}

// pollRow is a poll_requests row.
type pollRow struct {
	Attempts  int
	LastState string
	Due       time.Duration // next_poll_at - now
}

func (h *harness) pollRows() map[int64]pollRow {
	h.t.Helper()
	out := map[int64]pollRow{}
	var id int64
	var r pollRow
	var secs float64
	h.eachRow([]any{&id, &r.Attempts, &r.LastState, &secs}, func() {
		r.Due = time.Duration(secs * float64(time.Second))
		out[id] = r
	}, `SELECT device_change_id, attempts, coalesce(last_state, ''),
		extract(epoch FROM next_poll_at - now())::float8 FROM poll_requests`)
	return out
}

// markSent records a device change as accepted by ThingSpace at the
// given time.
func (h *harness) markSent(id int64, at string) {
	h.t.Helper()
	h.exec(
		`UPDATE device_changes SET status = 'SUBMITTED', request_id = 'req-' || id, submitted_at = `+at+` WHERE id = $1`,
		id,
	)
}

// Polling resolves what ThingSpace's device list settles, through the same
// signal as a callback, and checks pending devices again later with a
// doubling wait.
func TestPollAccountSignalsConfirmedAndDefersPending(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	activated := devices(1, "8914800401", "active")[0] // activated after our request
	already := devices(1, "8914800402", "active")[0]   // active before our request
	stuck := devices(1, "8914800403", "preactive")[0]  // suspend had no effect
	pending := devices(1, "8914800404", "active")[0]   // suspension under way
	finished := devices(1, "8914800405", "suspend")[0] // suspended; its workflow is gone
	unknown := devices(1, "8914800406", "")[0]         // not at ThingSpace
	h.seed(activated, already, stuck, pending, finished)

	cs := []changeSpec{
		{seed: activated, op: "activate", batch: 1}, {seed: already, op: "activate", batch: 2},
		{seed: stuck, op: "suspend", batch: 3}, {seed: pending, op: "suspend", batch: 4},
		{seed: finished, op: "suspend", batch: 5}, {seed: unknown, op: "suspend", batch: 6},
	}
	bulk, ids := h.newBulk(account, cs...)
	h.markSent(ids[activated.ICCID], "now() - interval '1 hour'")
	h.markSent(ids[already.ICCID], "now()")
	h.markSent(ids[stuck.ICCID], "now()")
	h.markSent(ids[finished.ICCID], "now()")
	h.markSent(ids[unknown.ICCID], "now()")
	require.Equal(t, db.RequestAccepted, h.mustSendBatch(bulk, 4).State) // a real suspension: pending at ThingSpace
	h.temporal.finish(workflowOf(ids[finished.ICCID]))

	for _, c := range cs {
		h.requestPoll(account, ids[c.seed.ICCID], c.seed.ICCID, string(c.op))
	}
	h.requestPoll(account, ids[pending.ICCID], pending.ICCID, "suspend") // registered twice: once
	require.Len(t, h.pollRows(), 6)

	// Each registration wakes the account's poller, starting it if needed.
	starts := h.temporal.started()
	require.Len(t, starts, 7)
	s := starts[0]
	require.Equal(t, api.AccountPollerWorkflowID(account), s.WorkflowID)
	require.Equal(t, api.PollRequestedSignal, s.Signal)
	require.Equal(t, api.AccountPollerWorkflowID(account), s.Options.ID)
	require.Equal(t, api.TaskQueue, s.Options.TaskQueue)
	require.Equal(t, enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, s.Options.WorkflowIDConflictPolicy)
	require.Equal(t, api.AccountPollerWorkflowType, s.Workflow)
	require.Equal(t, []any{api.AccountPollerInput{AccountName: account, Interval: pollInterval}}, s.Args)

	lists := h.stats().Requests[epList]
	res := h.pollAccount(account)
	require.Equal(t, activities.PollAccountResult{Waiting: 1, Checked: 6, Resolved: 5}, res)
	require.Equal(t, 6, h.stats().Requests[epList]-lists, "few devices: one lookup each")

	got := map[string]api.Confirmation{}
	for _, sg := range h.temporal.signalled() {
		require.Equal(t, api.ConfirmationSignal, sg.Signal)
		got[sg.WorkflowID] = sg.Arg.(api.Confirmation)
	}
	require.Len(t, got, 5)
	for wf, c := range got {
		require.Equal(t, change.ByPoll, c.Source, wf)
		require.Equal(t, "req-"+wf[len("device-change/"):], c.RequestID, wf)
		require.False(t, c.At.IsZero())
	}
	simDev := func(iccid string) thingspacesim.DeviceSnapshot {
		d, ok := h.sim.Device(iccid)
		require.True(t, ok)
		return d
	}

	c := got[workflowOf(ids[activated.ICCID])]
	require.True(t, c.Success)
	require.Empty(t, c.FaultCode)
	require.Equal(t, simDev(activated.ICCID).MSISDN, c.MSISDN)
	require.NotEmpty(t, c.MSISDN)

	c = got[workflowOf(ids[already.ICCID])]
	require.False(t, c.Success)
	require.Equal(t, change.FaultAlreadyActive, c.FaultCode)
	require.Equal(t, simDev(already.ICCID).MSISDN, c.MSISDN)

	c = got[workflowOf(ids[stuck.ICCID])]
	require.False(t, c.Success)
	require.Equal(t, change.PollStateMismatch, c.FaultCode)
	require.Equal(t, change.StatePreActive, c.State)

	c = got[workflowOf(ids[finished.ICCID])]
	require.True(t, c.Success, "signalled although its workflow had finished")

	c = got[workflowOf(ids[unknown.ICCID])]
	require.False(t, c.Success)
	require.Equal(t, change.Code(thingspace.CodeDeviceNotFound), c.FaultCode)

	// Only the pending device is still registered, checked again after the
	// interval.
	rows := h.pollRows()
	require.Len(t, rows, 1)
	p := rows[ids[pending.ICCID]]
	require.Equal(t, 1, p.Attempts)
	require.Equal(t, string(change.StatePendingSuspend), p.LastState)
	require.InDelta(t, pollInterval.Seconds(), p.Due.Seconds(), 5)

	// Not due yet: nothing checked, nothing asked of ThingSpace.
	lists = h.stats().Requests[epList]
	require.Equal(t, activities.PollAccountResult{Waiting: 1}, h.pollAccount(account))
	require.Equal(t, lists, h.stats().Requests[epList])

	// Each further check of a still pending device waits twice as long, up
	// to the maximum.
	for i, want := range []time.Duration{2 * pollInterval, pollMaxInterval, pollMaxInterval} {
		h.exec(`UPDATE poll_requests SET next_poll_at = now()`)
		require.Equal(t, activities.PollAccountResult{Waiting: 1, Checked: 1}, h.pollAccount(account))
		p := h.pollRows()[ids[pending.ICCID]]
		require.Equal(t, i+2, p.Attempts)
		require.InDelta(t, want.Seconds(), p.Due.Seconds(), 5, "check %d", i+2)
	}
	require.Len(t, h.temporal.signalled(), 5, "no signal for a pending device")

	// Cancelled (its callback came): no longer polled.
	require.NoError(t, h.run(nil, h.acts.CancelPoll, ids[pending.ICCID]))
	require.Empty(t, h.pollRows())
}

// Above the threshold, polling reads the account's device list page by
// page instead of looking each device up.
func TestPollAccountUsesAccountListForManyDevices(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.acts.PollBatchThreshold = 10
	devs := devices(50, "8914800407", "active")
	h.seed(devs...)
	// Unrelated devices of the account are listed too, and ignored.
	h.seed(devices(30, "8914800408", "preactive")...)
	bulk, ids := h.newBulk(account, changes("activate", 1, devs...)...)
	h.exec(
		`UPDATE device_changes SET status = 'SUBMITTED', request_id = 'req-' || id, submitted_at = now() - interval '1 hour'
		WHERE bulk_change_id = $1`,
		bulk,
	)
	for _, d := range devs {
		h.requestPoll(account, ids[d.ICCID], d.ICCID, "activate")
	}

	lists := h.stats().Requests[epList]
	res := h.pollAccount(account)
	require.Equal(t, activities.PollAccountResult{Waiting: 0, Checked: 50, Resolved: 50}, res)
	require.LessOrEqual(t, h.stats().Requests[epList]-lists, 2, "the account list, not 50 lookups")

	sigs := h.temporal.signalled()
	require.Len(t, sigs, 50)
	byWF := map[string]api.Confirmation{}
	for _, s := range sigs {
		byWF[s.WorkflowID] = s.Arg.(api.Confirmation)
	}
	for _, d := range devs {
		c, ok := byWF[workflowOf(ids[d.ICCID])]
		require.True(t, ok, d.ICCID)
		require.True(t, c.Success)
		sd, _ := h.sim.Device(d.ICCID)
		require.Equal(t, sd.MSISDN, c.MSISDN)
	}
	require.Empty(t, h.pollRows())
}

// Polling a bulk change of another account than the client's default one
// looks in that account, with few devices (one lookup each) as with many.
func TestPollAccountOfAnotherAccount(t *testing.T) {
	t.Parallel()
	const other = "0000654321-00001"
	h := newHarness(t, func(s *setup) { s.sim.Accounts = []string{account, other} })
	devs := devices(3, "8914800409", "active")
	for i := range devs {
		devs[i].Account = other
	}
	bulk, ids := h.seededBulk(other, "activate", devs...)
	h.exec(
		`UPDATE device_changes SET status = 'SUBMITTED', submitted_at = now() - interval '1 hour' WHERE bulk_change_id = $1`,
		bulk,
	)

	for _, threshold := range []int{20, 1} {
		h.acts.PollBatchThreshold = threshold
		for _, d := range devs {
			h.requestPoll(other, ids[d.ICCID], d.ICCID, "activate")
		}
		before := len(h.temporal.signalled())
		require.Equal(
			t,
			activities.PollAccountResult{Checked: 3, Resolved: 3},
			h.pollAccount(other),
			"threshold %d",
			threshold,
		)
		for _, s := range h.temporal.signalled()[before:] {
			require.True(t, s.Arg.(api.Confirmation).Success, "threshold %d: %+v", threshold, s.Arg)
		}
	}
	require.Equal(t, api.AccountPollerWorkflowID(other), h.temporal.started()[0].WorkflowID)
}
