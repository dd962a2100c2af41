package thingspacesim

import (
	"net/http"
	"testing"
)

func TestAdd(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := h.listen()
	existing := h.seed(1, "active")[0]
	fresh := GenerateDevices(2, "8914877777", "")
	body := map[string]any{
		"accountName": DefaultAccount,
		"state":       "preactive",
		"devicesToAdd": []deviceRef{
			{DeviceIDs: []deviceID{{ID: fresh[0].ICCID, Kind: "iccid"}, {ID: fresh[0].IMEI, Kind: "imei"}}},
			{DeviceIDs: []deviceID{{ID: existing, Kind: "iccid"}}},
			{DeviceIDs: []deviceID{{ID: fresh[1].IMEI, Kind: "imei"}}},
		},
	}
	status, data := h.m2m(http.MethodPost, "/devices/actions/add", body)
	if status != http.StatusOK {
		t.Fatalf("add: %d %s", status, data)
	}
	res := decodeAs[[]addResult](t, data)
	if len(res) != 3 || res[0].Response != "Success" || res[1].Response == "Success" || res[2].Response == "Success" {
		t.Fatalf("results %+v", res)
	}
	if res[0].DeviceIDs[0].ID != fresh[0].ICCID {
		t.Fatalf("result ids %+v", res[0].DeviceIDs)
	}
	d, ok := h.sim.Device(fresh[0].ICCID)
	if !ok || d.State != StatePreActive || d.IMEI != fresh[0].IMEI || d.Account != DefaultAccount {
		t.Fatalf("added device %+v", d)
	}
	_, list := h.list(map[string]any{"deviceId": deviceID{ID: fresh[0].ICCID, Kind: "iccid"}})
	if list.Devices[0].CarrierInformations[0].State != StatePreActive {
		t.Fatalf("listed state %q", list.Devices[0].CarrierInformations[0].State)
	}
	// Adding again is a per-device error, not a request error.
	status, data = h.m2m(http.MethodPost, "/devices/actions/add", map[string]any{
		"state": "preactive", "devicesToAdd": []deviceRef{{DeviceIDs: []deviceID{{ID: fresh[0].ICCID, Kind: "iccid"}}}}})
	if res := decodeAs[[]addResult](t, data); status != http.StatusOK ||
		res[0].Response != "Device already exists in the account" {
		t.Fatalf("re-add: %d %s", status, data)
	}
	if st := h.sim.Stats(0); st.AcceptedChanges[fresh[0].ICCID][ActionAdd] != 2 {
		t.Fatalf("accepted %v", st.AcceptedChanges)
	}
	if n := len(l.messages()); n != 0 {
		t.Fatalf("add sent %d callbacks", n)
	}
	// The added device can be activated.
	h.accepted(h.action(ActionActivate, nil, fresh[0].ICCID))
	h.waitState(fresh[0].ICCID, StateActive)
}

func TestAddValidation(t *testing.T) {
	cfg := fastConfig()
	cfg.Limits.MaxDevicesPerAdd = 2
	h := newHarness(t, cfg)
	devs := GenerateDevices(3, "8914866666", "")
	refsOf := func(n int) []deviceRef {
		out := []deviceRef{}
		for _, d := range devs[:n] {
			out = append(out, deviceRef{DeviceIDs: []deviceID{{ID: d.ICCID, Kind: "iccid"}}})
		}
		return out
	}
	status, data := h.m2m(
		http.MethodPost,
		"/devices/actions/add",
		map[string]any{"state": "preactive", "devicesToAdd": refsOf(3)},
	)
	wantError(t, status, data, CodeNumberOfDevices)
	for _, st := range []string{"active", "", "Pre-Active"} {
		status, data = h.m2m(
			http.MethodPost,
			"/devices/actions/add",
			map[string]any{"state": st, "devicesToAdd": refsOf(1)},
		)
		wantError(t, status, data, CodeUnexpectedError)
	}
	status, data = h.m2m(
		http.MethodPost,
		"/devices/actions/add",
		map[string]any{"state": "preactive", "devicesToAdd": []deviceRef{}},
	)
	wantError(t, status, data, CodeUnexpectedError)
	status, data = h.m2m(
		http.MethodPost,
		"/devices/actions/add",
		map[string]any{"state": "preactive", "accountName": "nope", "devicesToAdd": refsOf(1)},
	)
	wantError(t, status, data, CodeAccountNotFound)
	if len(h.sim.Devices()) != 0 {
		t.Fatal("a refused add created devices")
	}
}
