package activities_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// stalled makes ThingSpace apply every state change but answer only after
// the client has given up.
func stalled(completion time.Duration) func(*setup) {
	return func(s *setup) {
		s.sim.CompletionDelay = completion
		s.sim.Faults = thingspacesim.Faults{TimeoutRate: 1, StallFor: 3 * time.Second}
		s.clientTimeout = 500 * time.Millisecond
	}
}

// The answer to a state change is lost (ThingSpace applied it, the client
// timed out): the retry checks the devices at ThingSpace instead of
// sending again, and records the devices it finds changed as sent.
func TestSendBatchReconcilesLostAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, stalled(time.Hour))
	h.acts.ReconcileSettle = 200 * time.Millisecond
	devs := devices(3, "8914800101", "active")
	bulk, ids := h.seededBulk(account, "suspend", devs...)

	_, err := h.sendBatch(bulk, 1)
	ae := appError(t, err)
	require.False(t, ae.NonRetryable(), "a lost answer is retried")
	req := h.request(bulk, 1)
	require.Equal(t, db.RequestSending, req.State, "the outcome is unknown: left SENDING")
	for _, d := range devs {
		require.Equal(t, change.Sending, h.change(ids[d.ICCID]).Status)
		sd, _ := h.sim.Device(d.ICCID)
		require.Equal(t, thingspacesim.StatePendingSuspend, sd.State, "ThingSpace applied the change")
	}
	// The timed-out exchange is audited without a status.
	var lost *auditRow
	for _, r := range h.audit(bulk) {
		if r.Operation == thingspace.OpSuspend {
			require.Nil(t, lost)
			lost = &r
		}
	}
	require.NotNil(t, lost)
	require.Zero(t, lost.HTTPStatus)
	require.Equal(t, "error", lost.Outcome)
	require.NotEmpty(t, lost.ErrorMessage)

	h.sim.SetFaults(thingspacesim.Faults{})
	listBefore := h.stats().Requests[epList]
	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, "RECONCILED", res.ErrorCode)
	require.Empty(t, res.RequestID, "the requestId was lost with the answer")
	require.Equal(t, 3, res.Devices)

	st := h.stats()
	require.Equal(t, 1, st.Requests[epSuspend], "nothing sent again")
	require.Equal(t, 3, st.Requests[epList]-listBefore, "one status check per device")
	for _, d := range devs {
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["suspend"])
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Sent, dc.Status)
		require.NotNil(t, dc.SentAt)
	}
	req = h.request(bulk, 1)
	require.Equal(t, db.RequestAccepted, req.State)
	require.Equal(t, "RECONCILED", req.ErrorCode)
	require.Equal(t, 1, req.Attempts)

	// And it stays that way.
	require.Equal(t, res, h.mustSendBatch(bulk, 1))
	require.Equal(t, 1, h.stats().Requests[epSuspend])
}

// Of a request whose answer was lost, a device ThingSpace moved, and a
// device with a stored callback, count as reached; a device showing no
// trace is sent again, but only once ReconcileSettle has passed since the
// lost attempt (a refusal's callback may still be on its way).
func TestSendBatchResendsUntouchedDeviceOnlyAfterSettle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, stalled(time.Hour))
	const settle = 2 * time.Second
	h.acts.ReconcileSettle = settle
	moved := devices(1, "8914800102", "active")[0]
	called := devices(1, "8914800103", "preactive")[0] // refused: cannot be suspended
	silent := devices(1, "8914800104", "preactive")[0] // refused too, its callback lost
	h.seed(moved, called, silent)
	bulk, ids := h.newBulk(account, changes("suspend", 1, moved, called, silent)...)

	_, err := h.sendBatch(bulk, 1)
	require.False(t, appError(t, err).NonRetryable())
	require.Equal(t, db.RequestSending, h.request(bulk, 1).State)

	// The refusal callback of one device was received and stored.
	_, first, err := h.store.StoreCallback(
		ctx(t),
		db.NewCallback{RequestID: "lost-request", ICCID: called.ICCID, Status: "Failed",
			FaultCode: thingspacesim.CodeDeviceStateInvalid, FaultString: "device state does not allow suspend", Payload: json.RawMessage(`{}`)},
	)
	require.NoError(t, err)
	require.True(t, first)

	h.sim.SetFaults(thingspacesim.Faults{})
	_, err = h.sendBatch(bulk, 1)
	ae := appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Positive(t, ae.NextRetryDelay())
	require.LessOrEqual(t, ae.NextRetryDelay(), settle)
	require.Equal(t, 1, h.stats().Requests[epSuspend], "too early: nothing sent")
	require.Equal(t, db.RequestSending, h.request(bulk, 1).State)

	time.Sleep(ae.NextRetryDelay() + 50*time.Millisecond)
	res := h.mustSendBatch(bulk, 1)
	st := h.stats()
	require.Equal(t, 2, st.Requests[epSuspend], "the silent device alone was sent again")
	for _, d := range []thingspacesim.DeviceSeed{moved, called, silent} {
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["suspend"], "device %s accepted once", d.ICCID)
	}
	require.Equal(t, change.Sent, h.change(ids[moved.ICCID]).Status)
	require.Equal(t, change.Sent, h.change(ids[called.ICCID]).Status)
	require.Nil(t, h.change(ids[called.ICCID]).SyncResult, "its outcome comes from the stored callback")
	// Sent alone, the silent device is refused synchronously this time.
	dc := h.change(ids[silent.ICCID])
	require.Equal(t, change.Sent, dc.Status)
	require.NotNil(t, dc.SyncResult)
	require.EqualValues(t, thingspace.CodeDeviceStateInvalid, dc.SyncResult.FaultCode)
	require.Equal(t, 2, h.request(bulk, 1).Attempts)
	require.Equal(t, 3, res.Devices)
}

// A worker dies after recording the request and before sending it: the
// next attempt finds no trace of it at ThingSpace, waits for the settle
// time, then sends the batch once.
func TestSendBatchSendsNeverSentRequestAfterSettle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	const settle = 1500 * time.Millisecond
	h.acts.ReconcileSettle = settle
	devs := devices(2, "8914800105", "active")
	bulk, ids := h.seededBulk(account, "suspend", devs...)

	_, claimed, fresh, err := h.store.ClaimBatch(ctx(t), bulk, 1, db.ClaimLimits{})
	require.NoError(t, err)
	require.True(t, fresh)
	require.Len(t, claimed, 2)

	_, err = h.sendBatch(bulk, 1)
	ae := appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Positive(t, ae.NextRetryDelay())
	require.LessOrEqual(t, ae.NextRetryDelay(), settle)
	require.Zero(t, h.stats().Requests[epSuspend])

	time.Sleep(ae.NextRetryDelay() + 50*time.Millisecond)
	h.requireSuspended(h.mustSendBatch(bulk, 1), 1, ids, devs)
	require.Equal(t, 2, h.request(bulk, 1).Attempts)
}

// A bulk change of an account other than the client's default account:
// checking its devices at ThingSpace must look in that account, or devices
// the lost request activated look untouched and are activated again.
func TestSendBatchReconcilesInTheBulkChangesAccount(t *testing.T) {
	t.Parallel()
	const other = "0000654321-00001"
	h := newHarness(t, stalled(-1), func(s *setup) { s.sim.Accounts = []string{account, other} })
	const settle = 100 * time.Millisecond
	h.acts.ReconcileSettle = settle
	devs := devices(2, "8914800106", "preactive")
	for i := range devs {
		devs[i].Account = other
	}
	h.seed(devs...)
	cs := activations("30301", 1, devs...)
	bulk, ids := h.newBulk(other, cs...)

	_, err := h.sendBatch(bulk, 1)
	require.False(t, appError(t, err).NonRetryable())
	for _, d := range devs {
		require.Eventually(t, func() bool {
			sd, _ := h.sim.Device(d.ICCID)
			return sd.State == thingspacesim.StateActive
		}, 5*time.Second, 10*time.Millisecond)
	}

	h.sim.SetFaults(thingspacesim.Faults{})
	time.Sleep(settle + 50*time.Millisecond) // whatever looks untouched may be sent now
	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, "RECONCILED", res.ErrorCode)
	st := h.stats()
	require.Equal(t, 1, st.Requests[epActivate], "nothing activated twice")
	for _, d := range devs {
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["activate"])
		require.Equal(t, change.Sent, h.change(ids[d.ICCID]).Status)
	}

	// The device lookup of a device change of that account finds it too.
	var got activities.DeviceLookup
	require.NoError(t, h.run(&got, h.acts.LookupDevice, activities.LookupInput{BulkChangeID: bulk,
		DeviceChangeID: ids[devs[0].ICCID], ICCID: devs[0].ICCID}))
	sd, _ := h.sim.Device(devs[0].ICCID)
	require.Equal(t, activities.DeviceLookup{Found: true, State: change.StateActive, MSISDN: sd.MSISDN}, got)
	// So does one naming the account itself.
	got = activities.DeviceLookup{}
	require.NoError(
		t,
		h.run(
			&got,
			h.acts.LookupDevice,
			activities.LookupInput{BulkChangeID: bulk, ICCID: devs[1].ICCID, AccountName: other},
		),
	)
	sd, _ = h.sim.Device(devs[1].ICCID)
	require.Equal(t, activities.DeviceLookup{Found: true, State: change.StateActive, MSISDN: sd.MSISDN}, got)
}

// An activation whose answer was lost completes at ThingSpace before the
// retry reconciles it. If its callback never comes, polling must still see
// it as our activation, not as a device that was active before our
// request.
func TestPollAfterReconcileSeesOurActivation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, stalled(-1))
	dev := devices(1, "8914800107", "preactive")[0]
	h.seed(dev)
	c := changeSpec{
		seed:   dev,
		op:     "activate",
		batch:  1,
		params: db.ChangeParams{ServicePlan: "M2M_FLEX_5GB", MdnZipCode: "30301"},
	}
	bulk, ids := h.newBulk(account, c)
	id := ids[dev.ICCID]

	_, err := h.sendBatch(bulk, 1)
	require.False(t, appError(t, err).NonRetryable())
	require.Eventually(t, func() bool {
		sd, _ := h.sim.Device(dev.ICCID)
		return sd.State == thingspacesim.StateActive
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(20 * time.Millisecond) // the retry comes some time after the activation

	h.sim.SetFaults(thingspacesim.Faults{})
	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, "RECONCILED", res.ErrorCode)
	require.Equal(t, 1, h.accepted(dev.ICCID, "activate"))

	h.requestPoll(account, id, dev.ICCID, "activate")
	require.Equal(t, activities.PollAccountResult{Checked: 1, Resolved: 1}, h.pollAccount(account))
	sigs := h.temporal.signalled()
	require.Len(t, sigs, 1)
	conf := sigs[0].Arg.(api.Confirmation)
	sd, _ := h.sim.Device(dev.ICCID)
	require.True(t, conf.Success, "activated by our request: %+v", conf)
	require.Empty(t, conf.FaultCode)
	require.Equal(t, sd.MSISDN, conf.MSISDN)
}
