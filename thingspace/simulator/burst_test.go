package simulator

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestThrottleBurst refuses exactly the next N requests with 429 and the
// burst's Retry-After, changes nothing for them, and lets the request after
// the burst through: clients must wait out a 429 they could not foresee
// from the documented limits.
func TestThrottleBurst(t *testing.T) {
	h := newHarness(t, fastConfig())
	dev := h.seed(1, "active")[0]
	h.authenticate()

	status, _, body := h.do(
		http.MethodPost,
		"/admin/throttle-burst",
		map[string]any{"requests": 2, "retry_after": "1500ms"},
		nil,
	)
	if status != http.StatusOK || !strings.Contains(string(body), `"remaining":2`) {
		t.Fatalf("admin throttle-burst: %d %s", status, body)
	}
	for i := range 2 {
		status, hdr, body := h.do(http.MethodPost, m2mBase+"/devices/actions/suspend",
			map[string]any{"devices": refs(dev)}, h.m2mHeaders())
		wantThrottled(t, status, hdr, body, 2)
		if got := hdr.Get("Retry-After"); got != "2" {
			t.Fatalf("request %d: Retry-After %q, want the burst's 1.5 s rounded up to 2", i+1, got)
		}
	}
	if d, _ := h.sim.Device(dev); d.State != StateActive {
		t.Fatalf("a throttled suspend changed the device: %+v", d)
	}
	if st := h.sim.Stats(0); st.AcceptedChanges[dev] != nil {
		t.Fatalf("throttled requests counted as accepted: %v", st.AcceptedChanges)
	}
	if n := h.sim.ThrottleBurstRemaining(); n != 0 {
		t.Fatalf("burst remaining %d after 2 requests", n)
	}
	h.accepted(h.action(ActionSuspend, nil, dev))

	// n <= 0 ends a burst under way.
	h.sim.ThrottleBurst(5, time.Second)
	h.sim.ThrottleBurst(0, 0)
	if status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{}); status != http.StatusOK {
		t.Fatalf("after ending the burst: %d %s", status, body)
	}
}

// TestFaultCounters: the late-callback and lost-answer faults are counted,
// so that a chaos run can report how many it injected.
func TestFaultCounters(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := newListener(t)
	h.register(l, DefaultAccount)
	devs := h.seed(3, "active")
	h.sim.SetFaults(Faults{LateCallbackRate: 1, LateCallbackDelay: 20 * time.Millisecond})
	h.accepted(h.action(ActionSuspend, nil, devs[0], devs[1]))
	l.wait(t, 2)

	h.sim.SetFaults(Faults{TimeoutRate: 1, StallFor: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+m2mBase+"/devices/actions/suspend",
		strings.NewReader(`{"devices":[{"deviceIds":[{"id":"`+devs[2]+`","kind":"iccid"}]}]}`))
	req.Header = h.m2mHeaders()
	req.Header.Set("Content-Type", "application/json")
	if _, err := h.srv.Client().Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the client to give up, got %v", err)
	}
	h.waitState(devs[2], StateSuspend)

	st := h.sim.Stats(0)
	if st.CallbacksLate != 2 || st.AnswersStalled != 1 {
		t.Fatalf("late %d (want 2), stalled %d (want 1)", st.CallbacksLate, st.AnswersStalled)
	}
}
