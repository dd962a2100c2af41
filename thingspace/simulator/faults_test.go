package simulator

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestErrorRateAppliesNothing(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.authenticate()
	dev := h.seed(1, "preactive")[0]
	h.sim.SetFaults(Faults{ErrorRate: 1})
	statuses := map[int]bool{}
	for range 30 {
		status, _, body := h.do(http.MethodPost, m2mBase+"/devices/actions/activate",
			map[string]any{"devices": refs(dev), "servicePlan": "m2m_4G", "mdnZipCode": "98801"}, h.m2mHeaders())
		if status != 500 && status != 502 && status != 503 {
			t.Fatalf("status %d %s", status, body)
		}
		statuses[status] = true
	}
	if len(statuses) != 3 {
		t.Fatalf("want 500, 502 and 503 all to occur, got %v", statuses)
	}
	if d, _ := h.sim.Device(dev); d.State != StatePreActive || d.ActionsLast24h != 0 {
		t.Fatalf("5xx fault applied a change: %+v", d)
	}
	if st := h.sim.Stats(0); len(st.AcceptedChanges) != 0 {
		t.Fatalf("accepted changes %v", st.AcceptedChanges)
	}
	// Auth endpoints fail too; admin endpoints never do.
	if status, _ := h.tokenRequest(DefaultClientID, DefaultClientSecret, "client_credentials"); status < 500 {
		t.Fatalf("token endpoint escaped the fault: %d", status)
	}
	if status, _, _ := h.do(http.MethodGet, "/admin/devices", nil, nil); status != http.StatusOK {
		t.Fatalf("admin affected by faults: %d", status)
	}
}

func TestTimeoutFaultAppliesButStalls(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := newListener(t)
	h.register(l, DefaultAccount)
	dev := h.seed(1, "active")[0]
	h.sim.SetFaults(Faults{TimeoutRate: 1, StallFor: 2 * time.Second})

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+m2mBase+"/devices/actions/suspend",
		strings.NewReader(`{"devices":[{"deviceIds":[{"id":"`+dev+`","kind":"iccid"}]}]}`))
	req.Header = h.m2mHeaders()
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	_, err := h.srv.Client().Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a client timeout, got %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("client did not time out")
	}
	// Applied anyway: the device changes and the callback comes.
	h.waitState(dev, StateSuspend)
	if m := l.wait(t, 1)[0]; m.Status != "Success" {
		t.Fatalf("callback %+v", m)
	}
	if st := h.sim.Stats(0); st.AcceptedChanges[dev][ActionSuspend] != 1 {
		t.Fatalf("accepted changes %v", st.AcceptedChanges)
	}
	// Reads are not stalled.
	h.sim.SetFaults(Faults{TimeoutRate: 1, StallFor: 2 * time.Second})
	start = time.Now()
	h.list(nil)
	if time.Since(start) > time.Second {
		t.Fatal("list was stalled")
	}
}

func TestDropCallbacks(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := newListener(t)
	h.register(l, DefaultAccount)
	devs := h.seed(5, "active")
	h.sim.SetFaults(Faults{DropCallbackRate: 1})
	h.accepted(h.action(ActionSuspend, nil, devs...))
	for _, d := range devs {
		h.waitState(d, StateSuspend)
	}
	time.Sleep(30 * time.Millisecond)
	if n := len(l.messages()); n != 0 {
		t.Fatalf("dropped callbacks were delivered: %d", n)
	}
	if st := h.sim.Stats(0); st.CallbacksDropped != 5 || st.CallbacksDelivered != 0 {
		t.Fatalf("stats: dropped %d delivered %d", st.CallbacksDropped, st.CallbacksDelivered)
	}
}

func TestDuplicateCallbacks(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := newListener(t)
	h.register(l, DefaultAccount)
	devs := h.seed(3, "active")
	h.sim.SetFaults(Faults{DuplicateCallbackRate: 1})
	h.accepted(h.action(ActionSuspend, nil, devs...))
	msgs := l.wait(t, 6)
	time.Sleep(30 * time.Millisecond)
	per := map[string]int{}
	for _, m := range l.messages() {
		per[iccidOf(m)]++
	}
	for _, d := range devs {
		if per[d] != 2 {
			t.Fatalf("device %s got %d callbacks, want 2 (%d total)", d, per[d], len(msgs))
		}
	}
	if st := h.sim.Stats(0); st.CallbacksDuplicated != 3 || st.CallbacksDelivered != 6 {
		t.Fatalf("stats: duplicated %d delivered %d", st.CallbacksDuplicated, st.CallbacksDelivered)
	}
}

func TestLateCallbacks(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := newListener(t)
	h.register(l, DefaultAccount)
	dev := h.seed(1, "active")[0]
	h.sim.SetFaults(Faults{LateCallbackRate: 1, LateCallbackDelay: 250 * time.Millisecond})
	start := time.Now()
	h.accepted(h.action(ActionSuspend, nil, dev))
	h.waitState(dev, StateSuspend) // the state changes on time...
	if len(l.messages()) != 0 {
		t.Fatal("late callback arrived early")
	}
	l.wait(t, 1) // ...the callback comes later
	l.mu.Lock()
	at := l.got[0].at
	l.mu.Unlock()
	if at.Sub(start) < 250*time.Millisecond {
		t.Fatalf("callback after %v, want at least 250ms", at.Sub(start))
	}
}

func TestReorderCallbacks(t *testing.T) {
	order := func(reorder bool) (sent, got []string) {
		h := newHarness(t, fastConfig()) // one delivery worker: arrival order = dispatch order
		l := newListener(t)
		h.register(l, DefaultAccount)
		devs := h.seed(30, "active")
		h.sim.SetFaults(Faults{ReorderCallbacks: reorder})
		h.accepted(h.action(ActionSuspend, nil, devs...))
		for _, m := range l.wait(t, 30) {
			got = append(got, iccidOf(m))
		}
		return devs, got
	}
	sent, got := order(false)
	if strings.Join(sent, ",") != strings.Join(got, ",") {
		t.Fatal("without ReorderCallbacks callbacks arrived out of request order")
	}
	sent, got = order(true)
	if strings.Join(sent, ",") == strings.Join(got, ",") {
		t.Fatal("ReorderCallbacks delivered callbacks in request order")
	}
	seen := map[string]bool{}
	for _, id := range got {
		seen[id] = true
	}
	for _, id := range sent {
		if !seen[id] {
			t.Fatalf("reordered delivery lost %s", id)
		}
	}
}

func TestLatency(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.authenticate()
	h.sim.SetFaults(Faults{Latency: 120 * time.Millisecond, LatencyJitter: 30 * time.Millisecond})
	start := time.Now()
	h.list(nil)
	if d := time.Since(start); d < 120*time.Millisecond || d > time.Second {
		t.Fatalf("request took %v, want 120–150ms", d)
	}
}

func TestFaultSanitizing(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.sim.SetFaults(Faults{ErrorRate: 7, DropCallbackRate: -1, Latency: -time.Second})
	f := h.sim.currentFaults()
	if f.ErrorRate != 1 || f.DropCallbackRate != 0 || f.Latency != 0 {
		t.Fatalf("faults not clamped: %+v", f)
	}
}
