package thingspacesim

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iot-ops/tsbulk/luhn"
)

// cell is one entry of the state × action table.
type cell struct {
	from, action     string
	pending, final   string // allowed: states seen after acceptance and after completion
	refusal          string // disallowed: the fault code
	keepsMSISDN      bool
	wantsMSISDNAfter bool
}

var table = slices.Concat(
	offNetwork("preactive"),
	refused("active", CodeDeviceAlreadyActive, ActionActivate),
	[]cell{
		{
			from:             "active",
			action:           ActionSuspend,
			pending:          StatePendingSuspend,
			final:            StateSuspend,
			keepsMSISDN:      true,
			wantsMSISDNAfter: true,
		},
	},
	refused("active", CodeDeviceStateInvalid, ActionRestore),
	[]cell{
		{from: "active", action: ActionDeactivate, pending: StatePendingDeactivation, final: StateDeactive},
		{
			from:             "active",
			action:           ActionContactInfo,
			pending:          StateActive,
			final:            StateActive,
			keepsMSISDN:      true,
			wantsMSISDNAfter: true,
		},
	},
	refused("suspend", CodeDeviceStateInvalid, ActionActivate, ActionSuspend),
	[]cell{
		{
			from:             "suspend",
			action:           ActionRestore,
			pending:          StatePendingResume,
			final:            StateActive,
			keepsMSISDN:      true,
			wantsMSISDNAfter: true,
		},
		{from: "suspend", action: ActionDeactivate, pending: StatePendingDeactivation, final: StateDeactive},
	},
	refused("suspend", CodeDeviceStateInvalid, ActionContactInfo),
	offNetwork("deactive"),
)

// offNetwork gives the cells of a state without a line (never activated, or
// deactivated): activation is the only way out of it.
func offNetwork(from string) []cell {
	activate := cell{
		from:             from,
		action:           ActionActivate,
		pending:          StatePendingActivation,
		final:            StateActive,
		wantsMSISDNAfter: true,
	}
	return append(
		[]cell{activate},
		refused(from, CodeDeviceStateInvalid, ActionSuspend, ActionRestore, ActionDeactivate, ActionContactInfo)...,
	)
}

// refused gives the cells of actions that from refuses with code.
func refused(from, code string, actions ...string) []cell {
	out := make([]cell, 0, len(actions))
	for _, a := range actions {
		out = append(out, cell{
			from:    from,
			action:  a,
			refusal: code,
		})
	}
	return out
}

// TestTransitionTable runs every state × action, once with a single device
// (refusals answered synchronously) and once with two devices (refusals
// reported by callback).
func TestTransitionTable(t *testing.T) {
	for _, c := range table {
		t.Run(c.from+"/"+c.action, func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig()
			cfg.CompletionDelay = 150 * time.Millisecond // long enough to observe the pending state
			h := newHarness(t, cfg)
			l := h.listen()
			devs := h.seed(3, c.from)
			before, _ := h.sim.Device(devs[0])

			status, body := h.action(c.action, nil, devs[0])
			if c.refusal != "" {
				wantError(t, status, body, c.refusal)
				status, body = h.action(c.action, nil, devs[1], devs[2])
				reqID := h.accepted(status, body)
				msgs := l.wait(t, 2)
				for _, m := range msgs {
					if m.Status != "Failed" || m.FaultResponse == nil || m.FaultResponse.FaultCode != c.refusal ||
						m.DeviceResponse != nil {
						t.Fatalf("want Failed callback %s, got %+v", c.refusal, m)
					}
					if m.RequestID != reqID {
						t.Fatalf("callback requestId %s, want %s", m.RequestID, reqID)
					}
				}
				time.Sleep(20 * time.Millisecond)
				if n := len(l.messages()); n != 2 {
					t.Fatalf("want exactly 2 callbacks (none for the synchronous refusal), got %d", n)
				}
				for _, id := range devs {
					if d, _ := h.sim.Device(id); d.State != before.State || d.PendingRequestID != "" {
						t.Fatalf("refused device changed: %+v", d)
					}
				}
				return
			}

			reqID := h.accepted(status, body)
			if d, _ := h.sim.Device(devs[0]); d.State != c.pending {
				t.Fatalf("right after acceptance: state %q, want %q", d.State, c.pending)
			}
			msgs := l.wait(t, 1)
			m := msgs[0]
			if m.Status != "Success" || m.FaultResponse != nil || m.RequestID != reqID {
				t.Fatalf("want Success callback for %s, got %+v", reqID, m)
			}
			resp, ok := m.DeviceResponse[c.action+"Response"]
			if !ok || len(m.DeviceResponse) != 1 {
				t.Fatalf("deviceResponse keys %v, want only %sResponse", m.DeviceResponse, c.action)
			}
			after := h.waitState(devs[0], c.final)
			if after.PendingRequestID != "" {
				t.Fatalf("pending request id left after completion: %+v", after)
			}
			if c.wantsMSISDNAfter != (after.MSISDN != "") {
				t.Fatalf("MSISDN after %s: %q", c.action, after.MSISDN)
			}
			if c.keepsMSISDN && after.MSISDN != before.MSISDN {
				t.Fatalf("MSISDN changed from %q to %q", before.MSISDN, after.MSISDN)
			}
			switch c.action {
			case ActionActivate:
				if resp.ServicePlan != "m2m_4G" {
					t.Fatalf("activateResponse servicePlan %q", resp.ServicePlan)
				}
			case ActionSuspend:
				if _, ok := parseWireTime(resp.AutoResumeDate); !ok {
					t.Fatalf("suspendResponse autoResumeDate %q", resp.AutoResumeDate)
				}
			}
			// The two-device request succeeds for both.
			status, body = h.action(c.action, nil, devs[1], devs[2])
			h.accepted(status, body)
			msgs = l.wait(t, 3)
			for _, m := range msgs[1:] {
				if m.Status != "Success" {
					t.Fatalf("multi-device callback: %+v", m)
				}
			}
			h.waitState(devs[2], c.final)
		})
	}
}

func TestCallbackEnvelope(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := h.listen()
	dev := h.seed(1, "preactive")[0]
	snap, _ := h.sim.Device(dev)
	// Name the device by IMEI only: the callback still carries the ICCID.
	status, body := h.m2m(http.MethodPost, "/devices/actions/activate", map[string]any{
		"devices":     []deviceRef{{DeviceIDs: []deviceID{{ID: snap.IMEI, Kind: "IMEI"}}}},
		"servicePlan": "m2m_4G", "mdnZipCode": "98801", "accountName": DefaultAccount,
	})
	reqID := h.accepted(status, body)
	m := l.wait(t, 1)[0]
	if m.Username != cbUser || m.Password != cbSecret {
		t.Fatalf("credentials not echoed: %q/%q", m.Username, m.Password)
	}
	if m.RequestID != reqID || m.CallbackCount != 1 || m.MaxCallbackThreshold != 4 || m.Status != "Success" {
		t.Fatalf("envelope: %+v", m)
	}
	if got := ids(m, "iccid"); len(got) != 1 || got[0] != dev {
		t.Fatalf("envelope iccid %v, want %s", got, dev)
	}
	if got := ids(m, "imei"); len(got) != 1 || got[0] != snap.IMEI {
		t.Fatalf("envelope imei %v", got)
	}
}

func TestMSISDNAssignedAndReleased(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := h.listen()
	dev := h.seed(1, "preactive")[0]

	h.accepted(h.action(ActionActivate, nil, dev))
	m := l.wait(t, 1)[0]
	d := h.waitState(dev, StateActive)
	if len(d.MSISDN) != 10 || !luhn.AllDigits(d.MSISDN) {
		t.Fatalf("MSISDN %q is not 10 digits", d.MSISDN)
	}
	resp := m.DeviceResponse["activateResponse"]
	kinds := map[string]string{}
	for _, id := range resp.DeviceIDs {
		kinds[id.Kind] = id.ID
	}
	for _, k := range []string{"mdn", "msisdn", "min"} {
		if kinds[k] != d.MSISDN {
			t.Fatalf("activateResponse %s = %q, want %q (%+v)", k, kinds[k], d.MSISDN, resp.DeviceIDs)
		}
	}
	if kinds["iccid"] != dev || kinds["imei"] == "" {
		t.Fatalf("activateResponse ids %+v", resp.DeviceIDs)
	}
	first := d.MSISDN

	// The number is visible in the device list and can name the device.
	if got := h.found(first, "msisdn").DeviceIDs[0].ID; got != dev {
		t.Fatalf("lookup by msisdn found %s", got)
	}

	h.accepted(h.action(ActionDeactivate, nil, dev))
	l.wait(t, 2)
	d = h.waitState(dev, StateDeactive)
	if d.MSISDN != "" {
		t.Fatalf("MSISDN kept after deactivation: %q", d.MSISDN)
	}
	for _, id := range h.found(dev, "iccid").DeviceIDs {
		if id.Kind != "iccid" && id.Kind != "imei" {
			t.Fatalf("deactive device still lists %s", id.Kind)
		}
	}
	status, body := h.lookup(first, "mdn")
	wantError(t, status, body, CodeDeviceNotFound)

	h.accepted(h.action(ActionActivate, nil, dev))
	l.wait(t, 3)
	d = h.waitState(dev, StateActive)
	if d.MSISDN == "" || d.MSISDN == first {
		t.Fatalf("re-activation MSISDN %q, want a new number (first was %q)", d.MSISDN, first)
	}
}

func TestChangesWhilePendingFail(t *testing.T) {
	cfg := fastConfig()
	cfg.CompletionDelay = 600 * time.Millisecond
	h := newHarness(t, cfg)
	l := h.listen()
	devs := h.seed(2, "active")
	h.accepted(h.action(ActionSuspend, nil, devs[0]))

	for _, a := range []string{ActionActivate, ActionSuspend, ActionRestore, ActionDeactivate, ActionContactInfo} {
		status, body := h.action(a, nil, devs[0])
		wantError(t, status, body, CodeDeviceStateInvalid)
	}
	// In a multi-device request the pending device fails by callback; a
	// device named twice fails the second time.
	h.accepted(h.action(ActionDeactivate, nil, devs[0], devs[1], devs[1]))
	msgs := l.wait(t, 4) // 3 from this request + the suspend
	var failed, ok int
	for _, m := range msgs {
		switch {
		case m.Status == "Success":
			ok++
		case m.FaultResponse != nil && m.FaultResponse.FaultCode == CodeDeviceStateInvalid:
			failed++
		}
	}
	if ok != 2 || failed != 2 {
		t.Fatalf("want 2 successes and 2 DeviceState.Invalid failures, got %d/%d: %+v", ok, failed, msgs)
	}
	h.waitState(devs[0], StateSuspend)
	h.waitState(devs[1], StateDeactive)
}

func TestDisallowSuspendToDeactivate(t *testing.T) {
	cfg := fastConfig()
	cfg.DisallowSuspendToDeactivate = true
	h := newHarness(t, cfg)
	dev := h.seed(1, "suspend")[0]
	status, body := h.action(ActionDeactivate, nil, dev)
	wantError(t, status, body, CodeDeviceStateInvalid)
}

func TestUnknownDeviceAndFailWith(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := h.listen()
	unknown := GenerateDevices(1, "8901999999", "")[0].ICCID
	status, body := h.action(ActionSuspend, nil, unknown)
	wantError(t, status, body, CodeDeviceNotFound)

	outage := DeviceSeed{ICCID: "89148000000000000019", State: "active", FailWith: "REQUEST_FAILED.SimulatedOutage"}
	if err := h.sim.Seed(outage); err != nil {
		t.Fatal(err)
	}
	status, body = h.action(ActionSuspend, nil, "89148000000000000019")
	wantError(t, status, body, "UnifiedWebService.REQUEST_FAILED.SimulatedOutage")

	good := h.seed(1, "active")[0]
	h.accepted(h.action(ActionSuspend, nil, unknown, good))
	msgs := l.wait(t, 2)
	for _, m := range msgs {
		switch iccidOf(m) {
		case unknown:
			if m.FaultResponse == nil || m.FaultResponse.FaultCode != CodeDeviceNotFound {
				t.Fatalf("unknown device callback: %+v", m)
			}
		case good:
			if m.Status != "Success" {
				t.Fatalf("good device callback: %+v", m)
			}
		default:
			t.Fatalf("unexpected callback %+v", m)
		}
	}
}

// A device of another account than the request's is refused with
// INPUT_INVALID.Device.Account.Invalid (S-cberr), per device: synchronously
// when it is the request's only device or under RefuseWholeRequest, else by
// a "Failed" callback to the request's account. A device of no account
// stays DeviceNotFound.
func TestDeviceOfAnotherAccountIsRefused(t *testing.T) {
	const otherAccount = "0000999999-00001"
	for _, whole := range []bool{false, true} {
		t.Run(map[bool]string{false: "per device", true: "whole request"}[whole], func(t *testing.T) {
			cfg := fastConfig()
			cfg.Accounts = []string{DefaultAccount, otherAccount}
			cfg.RefuseWholeRequest = whole
			h := newHarness(t, cfg)
			mine, theirs := h.listen(), newListener(t)
			h.register(theirs, otherAccount)
			foreign := GenerateDevices(1, "8914899901", "active")[0]
			foreign.Account = otherAccount
			if err := h.sim.Seed(foreign); err != nil {
				t.Fatal(err)
			}
			good := h.seed(1, "active")[0]
			unknown := GenerateDevices(1, "8914899902", "")[0].ICCID
			inMine := map[string]any{"accountName": DefaultAccount}

			status, body := h.action(ActionSuspend, inMine, foreign.ICCID)
			wantError(t, status, body, CodeDeviceAccountInvalid)
			if msg := decodeAs[errorBody](t, body).ErrorMessage; !strings.Contains(msg, "not a part of the account") {
				t.Fatalf("errorMessage %q", msg)
			}
			status, body = h.action(ActionSuspend, inMine, unknown)
			wantError(t, status, body, CodeDeviceNotFound)

			status, body = h.action(ActionSuspend, inMine, good, foreign.ICCID)
			if whole {
				wantError(t, status, body, CodeDeviceAccountInvalid)
				if d, _ := h.sim.Device(good); d.State != StateActive {
					t.Fatalf("a refused request changed %s: %s", good, d.State)
				}
			} else {
				reqID := h.accepted(status, body)
				msgs := mine.wait(t, 2)
				for _, m := range msgs {
					if m.RequestID != reqID {
						t.Fatalf("callback of another request: %+v", m)
					}
					switch iccidOf(m) {
					case good:
						if m.Status != "Success" {
							t.Fatalf("good device callback: %+v", m)
						}
					case foreign.ICCID:
						if m.Status != "Failed" || m.FaultResponse == nil ||
							m.FaultResponse.FaultCode != CodeDeviceAccountInvalid {
							t.Fatalf("foreign device callback: %+v", m)
						}
						if len(m.DeviceIDs) != 1 {
							t.Fatalf("the refusal names more than the request did: %+v", m.DeviceIDs)
						}
					default:
						t.Fatalf("unexpected callback %+v", m)
					}
				}
				h.waitState(good, StateSuspend)
			}
			if d, _ := h.sim.Device(foreign.ICCID); d.State != StateActive || d.ActionsLast24h != 0 {
				t.Fatalf("the other account's device was touched: %+v", d)
			}
			if n := len(theirs.messages()); n != 0 {
				t.Fatalf("the device's own account heard of the request: %d callbacks", n)
			}

			// Without accountName any of the user's accounts matches.
			h.accepted(h.action(ActionSuspend, nil, foreign.ICCID))
		})
	}
}

func TestContactInfoStoresPPU(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := h.listen()
	dev := h.seed(1, "active")[0]
	h.accepted(h.action(ActionContactInfo, map[string]any{"accountName": DefaultAccount}, dev))
	m := l.wait(t, 1)[0]
	if _, ok := m.DeviceResponse["contactInfoResponse"]; !ok || m.Status != "Success" {
		t.Fatalf("contactInfo callback %+v", m)
	}
	attrs := map[string]string{}
	for _, kv := range h.found(dev, "iccid").ExtendedAttributes {
		attrs[kv.Key] = kv.Value
	}
	if attrs["PrimaryPlaceOfUseLastName"] != "Lovelace" || attrs["PrimaryPlaceOfUseZip"] != "98801" {
		t.Fatalf("extendedAttributes %v", attrs)
	}
	if d, _ := h.sim.Device(dev); d.ActionsLast24h != 0 {
		t.Fatalf("contactInfo counted toward the daily limit: %+v", d)
	}
}

func TestRequestStatus(t *testing.T) {
	cfg := fastConfig()
	cfg.CompletionDelay = 300 * time.Millisecond
	cfg.Accounts = []string{DefaultAccount, "0000444444-00001"}
	h := newHarness(t, cfg)
	devs := h.seed(3, "active")
	status := func(account, id string) (int, []byte) {
		return h.m2m(http.MethodGet, "/accounts/"+account+"/requests/"+id+"/status", nil)
	}

	id := h.accepted(h.action(ActionSuspend, nil, devs[0]))
	code, body := status(DefaultAccount, id)
	if r := decodeAs[requestStatusResponse](t, body); code != http.StatusOK || r.RequestID != id ||
		r.Status != "Pending" {
		t.Fatalf("pending: %d %s", code, body)
	}
	h.waitState(devs[0], StateSuspend)
	code, body = status(DefaultAccount, id)
	if r := decodeAs[requestStatusResponse](t, body); code != http.StatusOK || r.Status != "Success" {
		t.Fatalf("done: %d %s", code, body)
	}

	multi := h.accepted(h.action(ActionSuspend, nil, devs[1], devs[2]))
	code, body = status(DefaultAccount, multi)
	wantError(t, code, body, CodeStatusNotSupported)

	ppu := h.accepted(h.action(ActionContactInfo, nil, h.seed(1, "active")[0]))
	code, body = status(DefaultAccount, ppu)
	wantError(t, code, body, CodeStatusNotSupported)

	code, body = status(DefaultAccount, newUUID())
	wantError(t, code, body, CodeRequestNotFound)
	code, body = status("0000444444-00001", id) // another account's request
	wantError(t, code, body, CodeRequestNotFound)
	code, body = status("0000000000-00000", id)
	wantError(t, code, body, CodeAccountNotFound)
}
