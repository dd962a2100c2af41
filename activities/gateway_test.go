package activities_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
)

// sendUntilDone runs SendBatch as Temporal would retry it, waiting
// each failure's retry delay, until it succeeds; it returns the result and
// how many attempts failed.
func (h *harness) sendUntilDone(bulk string, batch int) (*activities.SendBatchResult, int) {
	h.t.Helper()
	for failed := 0; ; failed++ {
		require.Less(h.t, failed, 10, "the batch gets through")
		res, err := h.sendBatch(bulk, batch)
		if err == nil {
			return res, failed
		}
		ae := appError(h.t, err)
		require.False(h.t, ae.NonRetryable(), "attempt %d: %v", failed+1, err)
		time.Sleep(max(ae.NextRetryDelay(), 20*time.Millisecond))
	}
}

// The gateway in front of ThingSpace answers 502 or 504 after the backend
// applied the change. That answer proves nothing, so the request is not
// sent again blindly: the next attempt reconciles it, and each device ends
// with its change accepted exactly once by ThingSpace, SUBMITTED with no
// refusal (re-sending found the device already changed and recorded a
// refusal, ending the device change in ERROR, or had ThingSpace accept the
// change a second time).
func TestSendBatchGatewayErrorAfterApplyIsReconciled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		op     change.Operation
		action string
		state  string // the devices' state at ThingSpace before the change
		n      int
	}{
		{"suspend of three", "suspend", thingspacesim.ActionSuspend, "active", 3},
		{"deactivate of one", "deactivate", thingspacesim.ActionDeactivate, "active", 1},
		{"activate of two", "activate", thingspacesim.ActionActivate, "preactive", 2},
		{"restore of one", "restore", thingspacesim.ActionRestore, "suspend", 1},
		{"inventory add of two", "inventory", thingspacesim.ActionAdd, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(s *setup) { s.sim.CompletionDelay = 50 * time.Millisecond })
			h.acts.ReconcileSettle = 300 * time.Millisecond
			devs := devices(tc.n, "89148007"+map[string]string{"suspend": "01", "deactivate": "02", "activate": "03",
				"restore": "04", "inventory": "05"}[string(tc.op)], tc.state)
			var cs []changeSpec
			switch tc.op {
			case "activate":
				cs = activations("30301", 1, devs...)
			case "deactivate":
				cs = changes(tc.op, 1, devs...)
				for i := range cs {
					cs[i].params = db.ChangeParams{ReasonCode: thingspace.DeactivateReasonGeneral}
				}
			default:
				cs = changes(tc.op, 1, devs...)
			}
			if tc.state != "" {
				h.seed(devs...)
			}
			bulk, ids := h.newBulk(account, cs...)
			// Tokens first, so that the fault meets the state change.
			require.NoError(t, h.run(nil, h.acts.CheckThingSpaceAuth, ""))

			h.sim.SetFaults(thingspacesim.Faults{GatewayAfterApplyRate: 1})
			_, err := h.sendBatch(bulk, 1)
			require.False(t, appError(t, err).NonRetryable(), "a gateway error is retried")
			require.Equal(t, 1, h.stats().GatewayAfterApply, "ThingSpace applied the change and answered 502/504")
			h.sim.SetFaults(thingspacesim.Faults{})

			res, _ := h.sendUntilDone(bulk, 1)
			st := h.stats()
			for _, d := range devs {
				require.Equal(t, 1, st.AcceptedChanges[d.ICCID][tc.action], "device %s: ThingSpace accepted its change once", d.ICCID)
				require.Equal(t, 1, st.AppliedChanges[d.ICCID][tc.action], "device %s applied once", d.ICCID)
				dc := h.change(ids[d.ICCID])
				require.Equal(t, change.Sent, dc.Status, "device %s", d.ICCID)
				if dc.SyncResult != nil {
					require.True(t, dc.SyncResult.Success, "device %s: no refusal recorded for a change ThingSpace applied: %+v",
						d.ICCID, *dc.SyncResult)
				}
				st := h.load(ids[d.ICCID])
				require.True(t, st.Sync == nil || st.Sync.FaultCode == "", "device %s: its workflow sees no refusal: %+v",
					d.ICCID, st.Sync)
			}
			require.Equal(t, db.RequestAccepted, res.State)
			require.Equal(t, "RECONCILED", h.request(bulk, 1).ErrorCode, "reconciled, not sent again")
		})
	}
}

// A PPU update is at least once by design: after a gateway error it is
// sent again. But the request is not recorded as a failure that changed
// nothing (RETRY), and the device sees no refusal.
func TestUpdatePlaceOfUseAfterGatewayErrorIsNotRecordedUnchanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(s *setup) { s.sim.CompletionDelay = 20 * time.Millisecond })
	dev := devices(1, "8914800706", "active")[0]
	h.seed(dev)
	cs := activations("30301", 1, dev)
	cs[0].ppu = &thingspace.PlaceOfUse{
		CustomerName: thingspace.CustomerName{FirstName: "Ottoline", LastName: "Vanderquist"},
		Address: thingspace.Address{AddressLine1: "77 Juniper Crossing", City: "Fallowmere", State: "OR", Zip: "97035",
			Country: "USA"},
	}
	bulk, ids := h.newBulk(account, cs...)
	in := activities.PPUUpdateInput{BulkChangeID: bulk, DeviceChangeID: ids[dev.ICCID]}
	require.NoError(t, h.run(nil, h.acts.CheckThingSpaceAuth, ""))

	h.sim.SetFaults(thingspacesim.Faults{GatewayAfterApplyRate: 1})
	_, err := result[activities.PPUUpdateResult](h, h.acts.UpdatePlaceOfUse, in)
	require.False(t, appError(t, err).NonRetryable())
	require.Equal(t, 1, h.stats().AppliedChanges[dev.ICCID][thingspacesim.ActionContactInfo])
	var state string
	var attempts int
	require.NoError(t, h.store.Pool.QueryRow(ctx(t), `SELECT state, attempts FROM thingspace_requests
		WHERE bulk_change_id = $1 AND request_key = $2`, bulk, db.PPUKey(ids[dev.ICCID])).Scan(&state, &attempts))
	require.Equal(t, db.RequestSending, state, "the outcome is unknown, not a failure that changed nothing")
	h.sim.SetFaults(thingspacesim.Faults{})

	res := mustResult[activities.PPUUpdateResult](h, h.acts.UpdatePlaceOfUse, in)
	require.Nil(t, res.Refusal)
	require.NotEmpty(t, res.RequestID)
	require.NoError(t, h.store.Pool.QueryRow(ctx(t), `SELECT state, attempts FROM thingspace_requests
		WHERE bulk_change_id = $1 AND request_key = $2`, bulk, db.PPUKey(ids[dev.ICCID])).Scan(&state, &attempts))
	require.Equal(t, db.RequestAccepted, state)
	require.Equal(t, 2, attempts, "sent again, each send recorded before it went out")
	require.Equal(t, attempts, h.accepted(dev.ICCID, thingspacesim.ActionContactInfo))
}
