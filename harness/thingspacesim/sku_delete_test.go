package thingspacesim

import (
	"net/http"
	"testing"
	"time"

	"github.com/iot-ops/tsbulk/luhn"
)

// TestActivateByICCIDNeedsSKU: CarrierActivateRequest's skuNumber is "the
// SKU of a 4G device type [that] can be used with ICCID device identifiers
// in lieu of an IMEI": an activation naming a device by its ICCID alone,
// without a skuNumber, is refused as a whole and changes nothing.
func TestActivateByICCIDNeedsSKU(t *testing.T) {
	h := newHarness(t, fastConfig())
	devs := h.seed(4, "preactive")
	snap, _ := h.sim.Device(devs[1])
	withIMEI := deviceRef{DeviceIDs: []deviceID{{ID: devs[1], Kind: "iccid"}, {ID: snap.IMEI, Kind: "imei"}}}
	activate := func(devices []deviceRef, sku any) (int, []byte) {
		body := map[string]any{"devices": devices, "servicePlan": "m2m_4G", "mdnZipCode": "98801"}
		if sku != nil {
			body["skuNumber"] = sku
		}
		return h.m2m(http.MethodPost, "/devices/actions/activate", body)
	}

	for name, sku := range map[string]any{"no skuNumber": nil, "empty skuNumber": "", "blank skuNumber": "  "} {
		status, body := activate(refs(devs[0]), sku)
		if status != http.StatusBadRequest || decodeAs[errorBody](t, body).ErrorCode != CodeUnexpectedError {
			t.Fatalf("%s, device by ICCID alone: got %d %s, want 400 %s", name, status, body, CodeUnexpectedError)
		}
	}
	// One device without an IMEI refuses the whole request.
	status, body := activate([]deviceRef{withIMEI, refs(devs[0])[0]}, nil)
	wantError(t, status, body, CodeUnexpectedError)
	for _, d := range devs[:2] {
		if s, _ := h.sim.Device(d); s.State != StatePreActive || s.ActionsLast24h != 0 {
			t.Fatalf("refused activation changed %s: %+v", d, s)
		}
	}
	if st := h.sim.Stats(0); len(st.AcceptedChanges) != 0 {
		t.Fatalf("refused activations counted as accepted: %v", st.AcceptedChanges)
	}

	// The SKU stands in for the IMEI; an IMEI needs no SKU.
	h.accepted(activate(refs(devs[0]), testSKU))
	h.accepted(activate([]deviceRef{withIMEI}, nil))
	h.waitState(devs[0], StateActive)
	h.waitState(devs[1], StateActive)
}

// TestIMEISVAccepted: a DeviceId IMEI is "up to 16 digits": the 16-digit
// IMEISV (no check digit) names a device as well as the 15-digit IMEI.
func TestIMEISVAccepted(t *testing.T) {
	h := newHarness(t, fastConfig())
	iccidBody := "891480999000000001"
	iccid := iccidBody + string(luhn.CheckDigit(iccidBody))
	imeisv := "3569380356438091" // 16 digits, no check digit
	if err := h.sim.Seed(DeviceSeed{ICCID: iccid, IMEI: imeisv, State: "preactive"}); err != nil {
		t.Fatal(err)
	}
	ref := deviceRef{DeviceIDs: []deviceID{{ID: iccid, Kind: "iccid"}, {ID: imeisv, Kind: "imei"}}}
	h.accepted(h.m2m(http.MethodPost, "/devices/actions/activate",
		map[string]any{"devices": []deviceRef{ref}, "servicePlan": "m2m_4G", "mdnZipCode": "98801"}))
	h.waitState(iccid, StateActive)
	if got := h.found(imeisv, "imei").DeviceIDs[0].ID; got != iccid {
		t.Fatalf("lookup by the 16-digit IMEI found %s", got)
	}
	// 17 digits is not an IMEI.
	status, body := h.lookup(imeisv+"1", "imei")
	wantError(t, status, body, CodeDeviceIDInvalid)
}

// TestDeleteAfterDeactivation: deactivate with deleteAfterDeactivation
// true removes each device from the account once its deactivation
// completes: the account's list no longer shows it, a lookup answers as
// for an unknown device, and its callback still reports the deactivation.
// false, or no member, leaves the device in the account, deactive.
func TestDeleteAfterDeactivation(t *testing.T) {
	cfg := fastConfig()
	cfg.CompletionDelay = 300 * time.Millisecond
	h := newHarness(t, cfg)
	l := h.listen()
	devs := h.seed(3, "active")
	gone, kept, plain := devs[0], devs[1], devs[2]
	goneSnap, _ := h.sim.Device(gone)

	removeID := h.accepted(h.action(ActionDeactivate, map[string]any{"deleteAfterDeactivation": true}, gone))
	h.accepted(h.action(ActionDeactivate, map[string]any{"deleteAfterDeactivation": false}, kept))
	h.accepted(h.action(ActionDeactivate, nil, plain))

	// While pending, the device is still there.
	if d := h.found(gone, "iccid"); d.CarrierInformations[0].State != StatePendingDeactivation {
		t.Fatalf("pending device shows %+v", d.CarrierInformations)
	}

	msgs := l.wait(t, 3)
	var report *callbackMessage
	for i, m := range msgs {
		if iccidOf(m) == gone {
			report = &msgs[i]
		}
	}
	if report == nil || report.Status != "Success" || report.RequestID != removeID || report.FaultResponse != nil {
		t.Fatalf("callback of the removed device: %+v", report)
	}
	if _, ok := report.DeviceResponse["deactivateResponse"]; !ok {
		t.Fatalf("callback does not report the deactivation: %+v", report.DeviceResponse)
	}
	if got := ids(*report, "imei"); len(got) != 1 || got[0] != goneSnap.IMEI {
		t.Fatalf("callback imei %v, want %s", got, goneSnap.IMEI)
	}

	_, all := h.list(map[string]any{"accountName": DefaultAccount})
	listed := map[string]string{}
	for _, d := range all.Devices {
		listed[entryICCID(d)] = d.CarrierInformations[0].State
	}
	if _, ok := listed[gone]; ok {
		t.Fatalf("the account's list still shows the removed device")
	}
	if listed[kept] != StateDeactive || listed[plain] != StateDeactive {
		t.Fatalf("kept devices listed as %q and %q, want deactive", listed[kept], listed[plain])
	}
	_, deactive := h.list(map[string]any{"accountName": DefaultAccount, "currentState": "deactive"})
	for _, d := range deactive.Devices {
		if entryICCID(d) == gone {
			t.Fatalf("a state filter still finds the removed device")
		}
	}
	for kind, id := range map[string]string{"iccid": gone, "imei": goneSnap.IMEI} {
		status, body := h.lookup(id, kind)
		wantError(t, status, body, CodeDeviceNotFound)
	}
	// Any later request names an unknown device.
	status, body := h.action(ActionActivate, nil, gone)
	wantError(t, status, body, CodeDeviceNotFound)

	// The admin view keeps it, marked removed, in its last state.
	snap, ok := h.sim.Device(gone)
	if !ok || !snap.Removed || snap.State != StateDeactive || snap.MSISDN != "" {
		t.Fatalf("admin snapshot of the removed device: %+v (found %v)", snap, ok)
	}
	if k, _ := h.sim.Device(kept); k.Removed {
		t.Fatalf("deleteAfterDeactivation false removed the device: %+v", k)
	}

	// It may be added to the inventory again, as a new device.
	status, body = h.m2m(http.MethodPost, "/devices/actions/add",
		map[string]any{"devicesToAdd": refs(gone), "state": "preactive"})
	if status != http.StatusOK || decodeAs[[]addResult](t, body)[0].Response != "Success" {
		t.Fatalf("re-add of the removed device: %d %s", status, body)
	}
	if snap, _ := h.sim.Device(gone); snap.Removed || snap.State != StatePreActive {
		t.Fatalf("re-added device: %+v", snap)
	}
}
