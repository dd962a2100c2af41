package thingspacesim

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func wantThrottled(t *testing.T, status int, hdr http.Header, body []byte, maxWait int) {
	t.Helper()
	wantGatewayFault(t, status, body, http.StatusTooManyRequests, GatewayThrottled)
	secs, err := strconv.Atoi(hdr.Get("Retry-After"))
	if err != nil || secs < 1 || secs > maxWait {
		t.Fatalf("Retry-After %q, want 1..%d seconds", hdr.Get("Retry-After"), maxWait)
	}
}

func TestRequestsPerHour(t *testing.T) {
	cfg := fastConfig()
	cfg.Limits.RequestsPerHour = 4 // token + login + 2 more
	h := newHarness(t, cfg)
	dev := h.seed(1, "preactive")[0]
	h.authenticate() // 2 requests
	if status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{}); status != http.StatusOK {
		t.Fatalf("3rd request: %d %s", status, body)
	}
	if status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{}); status != http.StatusOK {
		t.Fatalf("4th request: %d %s", status, body)
	}
	// The 5th is refused and changes nothing.
	status, hdr, body := h.do(http.MethodPost, m2mBase+"/devices/actions/activate",
		map[string]any{"devices": refs(dev), "servicePlan": "m2m_4G", "mdnZipCode": "98801"}, h.m2mHeaders())
	wantThrottled(t, status, hdr, body, 3600)
	if d, _ := h.sim.Device(dev); d.State != StatePreActive {
		t.Fatalf("throttled activate changed the device: %+v", d)
	}
	// Other accounts have their own window.
	status, _, body = h.do(
		http.MethodPost,
		m2mBase+"/devices/actions/list",
		map[string]any{"accountName": "0000000000-00009"},
		h.m2mHeaders(),
	)
	wantError(t, status, body, CodeAccountNotFound)

	st := h.sim.Stats(0)
	if st.RequestsPerAccount[DefaultAccount] != 5 || st.MaxRequestsInWindow[DefaultAccount] != 5 {
		t.Fatalf("stats per account %v, max in window %v", st.RequestsPerAccount, st.MaxRequestsInWindow)
	}
	if st.AcceptedChanges[dev] != nil {
		t.Fatalf("throttled request counted as accepted: %v", st.AcceptedChanges)
	}

	h.sim.SetLimits(Limits{}) // RequestsPerHour 0 = off
	if status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{}); status != http.StatusOK {
		t.Fatalf("after lifting the limit: %d %s", status, body)
	}
}

func TestActivateRequestsPerMinute(t *testing.T) {
	cfg := fastConfig()
	cfg.Limits.ActivateRequestsPerMinute = 2
	h := newHarness(t, cfg)
	devs := h.seed(3, "preactive")
	active := h.seed(1, "active")[0]
	h.accepted(h.action(ActionActivate, nil, devs[0]))
	h.accepted(h.action(ActionActivate, nil, devs[1]))
	status, hdr, body := h.do(http.MethodPost, m2mBase+"/devices/actions/activate",
		map[string]any{"devices": refs(devs[2]), "servicePlan": "m2m_4G", "mdnZipCode": "98801"}, h.m2mHeaders())
	wantThrottled(t, status, hdr, body, 60)
	if d, _ := h.sim.Device(devs[2]); d.State != StatePreActive {
		t.Fatalf("throttled activation applied: %+v", d)
	}
	// Other actions are not limited by it.
	h.accepted(h.action(ActionSuspend, nil, active))
	// Negative switches it off.
	h.sim.SetLimits(Limits{ActivateRequestsPerMinute: -1})
	h.accepted(h.action(ActionActivate, nil, devs[2]))
}

func TestMaxDevicesPerRequest(t *testing.T) {
	cfg := fastConfig()
	cfg.Limits.MaxDevicesPerRequest = 3
	h := newHarness(t, cfg)
	devs := h.seed(4, "active")
	status, body := h.action(ActionSuspend, nil, devs...)
	wantError(t, status, body, CodeMaxRequestsExceeded)
	for _, id := range devs {
		if d, _ := h.sim.Device(id); d.State != StateActive {
			t.Fatalf("refused request changed %s", id)
		}
	}
	h.accepted(h.action(ActionSuspend, nil, devs[:3]...))
}

func TestDefaultMaxDevicesPerRequest(t *testing.T) {
	h := newHarness(t, fastConfig())
	iccids := make([]string, 0, 10001)
	for _, sd := range GenerateDevices(10001, "8914899999", "") {
		iccids = append(iccids, sd.ICCID)
	}
	status, body := h.action(ActionSuspend, nil, iccids...)
	wantError(t, status, body, CodeMaxRequestsExceeded)
}

func TestActionsPerLinePerDay(t *testing.T) {
	h := newHarness(t, fastConfig()) // default limit 5
	l := h.listen()
	dev := h.seed(1, "active")[0]
	steps := []struct{ action, final string }{
		{ActionSuspend, StateSuspend}, {ActionRestore, StateActive},
		{ActionSuspend, StateSuspend}, {ActionRestore, StateActive},
		{ActionSuspend, StateSuspend},
	}
	for _, s := range steps {
		h.accepted(h.action(s.action, nil, dev))
		h.waitState(dev, s.final)
	}
	if d, _ := h.sim.Device(dev); d.ActionsLast24h != 5 {
		t.Fatalf("ActionsLast24h = %d, want 5", d.ActionsLast24h)
	}
	status, body := h.action(ActionRestore, nil, dev)
	wantError(t, status, body, CodeMaxActionsPerDay)
	if d, _ := h.sim.Device(dev); d.State != StateSuspend || d.ActionsLast24h != 5 {
		t.Fatalf("refused change altered the device: %+v", d)
	}
	// In a multi-device request the refusal comes by callback.
	other := h.seed(1, "active")[0]
	h.accepted(h.action(ActionRestore, nil, dev, other))
	waitFor(t, 3*time.Second, "limit callback", func() bool {
		for _, m := range l.messages() {
			if iccidOf(m) == dev && m.FaultResponse != nil && m.FaultResponse.FaultCode == CodeMaxActionsPerDay {
				return true
			}
		}
		return false
	})
	// Aged-out actions no longer count (rolling 24 h).
	h.sim.mu.Lock()
	d := h.sim.store.byICCID[dev]
	for i := range d.actions {
		d.actions[i] = d.actions[i].Add(-25 * time.Hour)
	}
	h.sim.mu.Unlock()
	h.accepted(h.action(ActionRestore, nil, dev))
	h.waitState(dev, StateActive)
}

func TestActionsPerLinePerDayOff(t *testing.T) {
	cfg := fastConfig()
	cfg.Limits.ActionsPerLinePerDay = -1
	h := newHarness(t, cfg)
	dev := h.seed(1, "active")[0]
	for i := 0; i < 4; i++ {
		h.accepted(h.action(ActionSuspend, nil, dev))
		h.waitState(dev, StateSuspend)
		h.accepted(h.action(ActionRestore, nil, dev))
		h.waitState(dev, StateActive)
	}
}
