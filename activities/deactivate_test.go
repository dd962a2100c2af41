package activities_test

// Deactivation with deleteAfterDeactivation: ThingSpace removes the device
// from the account's inventory once deactivated, so the device list no
// longer shows it. The change must still be confirmed (by its callback, by
// polling, after a lost answer), and recorded as a removal.

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/callbacks"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const epDeactivate = "POST /api/m2m/v1/devices/actions/deactivate"

// deactivations are changes deactivating the devices, with the file's
// delete_after_deactivation (nil: left to the worker's setting).
func deactivations(batch int, del *bool, seeds ...thingspacesim.DeviceSeed) []changeSpec {
	out := changes("deactivate", batch, seeds...)
	for i := range out {
		out[i].params = db.ChangeParams{ReasonCode: "FF", DeleteAfterDeactivation: del}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// quickCompletion makes ThingSpace complete changes fast.
func quickCompletion(s *setup) { s.sim.CompletionDelay = 50 * time.Millisecond }

// deactivated records a successful deactivation the way the device's
// workflow concludes one, from the confirmation it received.
func (h *harness) deactivated(id int64, c api.Confirmation) *db.DeviceChange {
	h.t.Helper()
	require.True(h.t, c.Success, "confirmation %+v", c)
	h.complete(activities.CompleteInput{DeviceChangeID: id, Operation: change.Deactivate, Status: change.Processed,
		Outcome: change.Deactivate.Outcome(), FinalState: change.Deactivate.Target(), ReleaseMSISDN: true,
		ConfirmedBy: c.Source, ConfirmedAt: c.At, RequestID: c.RequestID})
	return h.change(id)
}

// removedAt reads when our view of the device says a deactivation removed
// it from ThingSpace (nil: ThingSpace has it).
func (h *harness) removedAt(iccid string) *time.Time {
	h.t.Helper()
	var at *time.Time
	require.NoError(h.t, h.store.Pool.QueryRow(ctx(h.t),
		`SELECT removed_from_thingspace_at FROM devices WHERE iccid = $1`, iccid).Scan(&at))
	return at
}

// sentDelete is the deleteAfterDeactivation the audited deactivate request
// of the bulk change carried.
func (h *harness) sentDelete(bulk string) []bool {
	h.t.Helper()
	var out []bool
	for _, r := range h.audit(bulk) {
		if r.Operation != thingspace.OpDeactivate {
			continue
		}
		var body struct {
			DeleteAfterDeactivation *bool `json:"deleteAfterDeactivation"`
		}
		require.NoError(h.t, json.Unmarshal([]byte(r.RequestBody), &body), r.RequestBody)
		require.NotNil(h.t, body.DeleteAfterDeactivation, "always sent: %s", r.RequestBody)
		out = append(out, *body.DeleteAfterDeactivation)
	}
	return out
}

func (h *harness) waitSim(iccid string, what string, cond func(thingspacesim.DeviceSnapshot) bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, _ := h.sim.Device(iccid)
		if cond(d) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: %s never happened (%+v)", iccid, what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) waitRemoved(iccid string) {
	h.t.Helper()
	h.waitSim(iccid, "removal", func(d thingspacesim.DeviceSnapshot) bool { return d.Removed })
}

// The callback path. The worker's setting (default true) decides for a
// file that leaves delete_after_deactivation empty, the file's value
// otherwise; the value sent is the one resolved when the request is built.
// ThingSpace reports the deactivation by callback, and the outcome records
// the removal: on the device change, in our view of the device, and in
// the results.
func TestDeactivationRemovesDeviceConfirmedByCallback(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCompletion)
	rcv := &callbacks.Receiver{Store: h.store, Temporal: h.temporal, Username: "cb", Password: "cb-secret",
		Logger: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(rcv.Handler())
	t.Cleanup(srv.Close)
	require.NoError(t, h.acts.ThingSpace.RegisterCallback(ctx(t), "", thingspace.CallbackRegistration{
		Name: thingspace.CarrierServiceCallback, URL: srv.URL, Username: "cb", Password: "cb-secret"}))

	bySetting := devices(2, "8914800901", "active")
	keptByFile := devices(1, "8914800902", "active")[0]
	removedByFile := devices(1, "8914800903", "suspend")[0]
	keptBySetting := devices(1, "8914800904", "active")[0]
	h.seed(append(bySetting, keptByFile, removedByFile, keptBySetting)...)
	var cs []changeSpec
	cs = append(cs, deactivations(1, nil, bySetting...)...)
	cs = append(cs, deactivations(2, ptr(false), keptByFile)...)
	cs = append(cs, deactivations(3, ptr(true), removedByFile)...)
	cs = append(cs, deactivations(4, nil, keptBySetting)...)
	bulk, ids := h.newBulk(account, cs...)

	h.acts.DeleteAfterDeactivation = true
	for batch := 1; batch <= 3; batch++ {
		require.Equal(t, db.RequestAccepted, h.mustSendBatch(bulk, batch).State)
	}
	// The operator changed the worker's setting before the last batch went.
	h.acts.DeleteAfterDeactivation = false
	require.Equal(t, db.RequestAccepted, h.mustSendBatch(bulk, 4).State)
	require.Equal(t, []bool{true, false, true, false}, h.sentDelete(bulk), "the value resolved at send time")

	removed := append(append([]thingspacesim.DeviceSeed{}, bySetting...), removedByFile)
	kept := []thingspacesim.DeviceSeed{keptByFile, keptBySetting}
	for _, d := range removed {
		h.waitRemoved(d.ICCID)
	}
	for _, d := range kept {
		h.waitSim(d.ICCID, "deactivation", func(s thingspacesim.DeviceSnapshot) bool { return s.State == thingspacesim.StateDeactive })
		s, _ := h.sim.Device(d.ICCID)
		require.False(t, s.Removed)
	}

	// Every callback reports the deactivation; it is what confirms it.
	for _, d := range append(removed, kept...) {
		id := ids[d.ICCID]
		var confs []api.Confirmation
		require.Eventually(t, func() bool {
			confs = *mustResult[[]api.Confirmation](h, h.acts.StoredConfirmations, id)
			return len(confs) == 1
		}, 10*time.Second, 20*time.Millisecond, "callback of %s", d.ICCID)
		require.Equal(t, change.ByCallback, confs[0].Source)
		h.deactivated(id, confs[0])
	}
	for _, d := range removed {
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Processed, dc.Status)
		require.True(t, dc.RemovedFromThingSpace, "%s was removed from ThingSpace", d.ICCID)
		require.NotNil(t, h.removedAt(d.ICCID), "our view of %s says so too", d.ICCID)
		require.Equal(t, string(change.StateDeactive), h.device(d.ICCID).Status)
	}
	for _, d := range kept {
		require.False(t, h.change(ids[d.ICCID]).RemovedFromThingSpace, d.ICCID)
		require.Nil(t, h.removedAt(d.ICCID), d.ICCID)
	}
	rows, err := h.store.Results(ctx(t), bulk)
	require.NoError(t, err)
	for _, r := range rows {
		want := r.ICCID != keptByFile.ICCID && r.ICCID != keptBySetting.ICCID
		require.Equal(t, want, r.RemovedFromThingSpace, r.ICCID)
	}
	for _, d := range append(removed, kept...) {
		require.Equal(t, 1, h.accepted(d.ICCID, "deactivate"))
	}
}

// The poll path, callbacks lost: a device asked to be removed is listed
// while its deactivation is pending, and then no more. Its absence
// confirms the change (neither DeviceNotFound nor waiting forever), by
// single lookups and by the account's list alike. A device absent whose
// request did not ask for removal is still DeviceNotFound.
func TestDeactivationRemovalConfirmedByPolling(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		threshold int
	}{{"lookups", 20}, {"account list", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(s *setup) {
				s.sim.CompletionDelay = 600 * time.Millisecond
				s.sim.Faults.DropCallbackRate = 1
			})
			h.acts.DeleteAfterDeactivation = true
			h.acts.PollBatchThreshold = tc.threshold
			removed := devices(2, "8914800911", "active")
			kept := devices(1, "8914800912", "active")[0]
			vanished := devices(1, "8914800913", "active")[0] // deleted by someone else meanwhile
			h.seed(append(removed, kept, vanished)...)
			var cs []changeSpec
			cs = append(cs, deactivations(1, nil, removed...)...)
			cs = append(cs, deactivations(2, ptr(false), kept, vanished)...)
			bulk, ids := h.newBulk(account, cs...)
			h.mustSendBatch(bulk, 1)
			h.mustSendBatch(bulk, 2)
			all := append(append([]thingspacesim.DeviceSeed{}, removed...), kept, vanished)
			for _, d := range all {
				h.requestPoll(account, ids[d.ICCID], d.ICCID, "deactivate")
			}

			// Pending: listed, checked again later.
			res := h.pollAccount(account)
			require.Equal(t, activities.PollAccountResult{Waiting: 4, Checked: 4}, res)
			for _, d := range all {
				require.Equal(t, string(change.StatePendingDeactivation), h.pollRows()[ids[d.ICCID]].LastState)
			}

			for _, d := range removed {
				h.waitRemoved(d.ICCID)
			}
			h.waitSim(kept.ICCID, "deactivation", func(s thingspacesim.DeviceSnapshot) bool { return s.State == thingspacesim.StateDeactive })
			h.waitSim(vanished.ICCID, "deactivation", func(s thingspacesim.DeviceSnapshot) bool { return s.State == thingspacesim.StateDeactive })
			// Removed behind the product's back: not what its request asked.
			h.removeBehindOurBack(vanished.ICCID)
			h.exec(`UPDATE poll_requests SET next_poll_at = now()`)

			res = h.pollAccount(account)
			require.Equal(t, activities.PollAccountResult{Waiting: 0, Checked: 4, Resolved: 4}, res)
			got := map[string]api.Confirmation{}
			for _, sg := range h.temporal.signalled() {
				got[sg.WorkflowID] = sg.Arg.(api.Confirmation)
			}
			for _, d := range removed {
				c := got[workflowOf(ids[d.ICCID])]
				require.True(t, c.Success, "%s: absent after a removal asked for: confirmed, got %+v", d.ICCID, c)
				require.Equal(t, change.ByPoll, c.Source)
				dc := h.deactivated(ids[d.ICCID], c)
				require.True(t, dc.RemovedFromThingSpace)
				require.Equal(t, string(change.ByPoll), dc.ConfirmedBy)
				require.NotNil(t, h.removedAt(d.ICCID))
			}
			c := got[workflowOf(ids[kept.ICCID])]
			require.True(t, c.Success)
			require.Equal(t, change.StateDeactive, c.State)
			require.False(t, h.deactivated(ids[kept.ICCID], c).RemovedFromThingSpace)
			c = got[workflowOf(ids[vanished.ICCID])]
			require.False(t, c.Success, "absent without a removal asked for")
			require.Equal(t, change.Code(thingspace.CodeDeviceNotFound), c.FaultCode)
			require.Empty(t, h.pollRows())
		})
	}
}

// removeBehindOurBack makes a deactive device vanish from the account as
// another application of the account would: it activates it again, then
// deactivates it with deleteAfterDeactivation.
func (h *harness) removeBehindOurBack(iccid string) {
	h.t.Helper()
	c := h.newThingSpaceClient(nil)
	ref := []thingspace.DeviceRef{thingspace.ICCIDRef(iccid, "")}
	_, err := c.Activate(ctx(h.t), thingspace.ActivateRequest{Devices: ref, ServicePlan: "m2m_4G", MdnZipCode: "98801",
		SkuNumber: "OTHER-APP-SKU"})
	require.NoError(h.t, err)
	h.waitSim(iccid, "re-activation", func(s thingspacesim.DeviceSnapshot) bool { return s.State == thingspacesim.StateActive })
	_, err = c.Deactivate(ctx(h.t), thingspace.DeactivateRequest{Devices: ref, DeleteAfterDeactivation: true})
	require.NoError(h.t, err)
	h.waitRemoved(iccid)
}

// The lost-answer path: ThingSpace applied the deactivation with removal
// but the answer never came. The retry reconciles: the devices are gone
// from the account, which means the request reached ThingSpace and was
// applied (they are recorded as sent, not sent again, not refused as
// unknown), and polling then confirms them.
func TestDeactivationRemovalReconciledAfterLostAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, stalled(100*time.Millisecond), func(s *setup) { s.sim.Faults.DropCallbackRate = 1 })
	const settle = 300 * time.Millisecond
	h.acts.ReconcileSettle = settle
	h.acts.DeleteAfterDeactivation = true
	devs := devices(3, "8914800921", "active")
	bulk, ids := h.seededBulk(account, "deactivate", devs...)

	_, err := h.sendBatch(bulk, 1)
	require.False(t, appError(t, err).NonRetryable(), "a lost answer is retried")
	require.Equal(t, db.RequestSending, h.request(bulk, 1).State)
	var recorded []bool
	var v bool
	h.eachRow([]any{&v}, func() { recorded = append(recorded, v) },
		`SELECT delete_after_deactivation FROM device_changes WHERE bulk_change_id = $1`, bulk)
	require.Equal(t, []bool{true, true, true}, recorded, "recorded before the request left")
	for _, d := range devs {
		h.waitRemoved(d.ICCID)
	}

	h.sim.SetFaults(thingspacesim.Faults{DropCallbackRate: 1})
	time.Sleep(settle) // an untouched device would be sent again now
	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, "RECONCILED", res.ErrorCode)
	require.Equal(t, 1, h.stats().Requests[epDeactivate], "nothing sent again")
	for _, d := range devs {
		require.Equal(t, 1, h.accepted(d.ICCID, "deactivate"))
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Sent, dc.Status, "%s reached ThingSpace", d.ICCID)
		require.Nil(t, dc.SyncResult, "no refusal recorded for %s", d.ICCID)
		h.requestPoll(account, dc.ID, d.ICCID, "deactivate")
	}
	require.Equal(t, activities.PollAccountResult{Checked: 3, Resolved: 3}, h.pollAccount(account))
	for _, sg := range h.temporal.signalled() {
		c := sg.Arg.(api.Confirmation)
		id := ids[devs[0].ICCID]
		for _, d := range devs {
			if workflowOf(ids[d.ICCID]) == sg.WorkflowID {
				id = ids[d.ICCID]
			}
		}
		require.True(t, h.deactivated(id, c).RemovedFromThingSpace)
	}
	rows, err := h.store.Results(ctx(t), bulk)
	require.NoError(t, err)
	for _, r := range rows {
		require.Equal(t, change.Processed, r.Status)
		require.True(t, r.RemovedFromThingSpace, r.ICCID)
		require.False(t, strings.Contains(r.ErrorMessage, "not found"), r.ErrorMessage)
	}
}
