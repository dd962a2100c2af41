package thingspacesim

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
	h, l, devs := newFaulty(t, 1, Faults{TimeoutRate: 1, StallFor: 2 * time.Second})
	dev := devs[0]

	start := time.Now()
	if err := h.suspendGivingUp(150*time.Millisecond, dev); !errors.Is(err, context.DeadlineExceeded) {
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
	h, l, devs := newFaulty(t, 5, Faults{DropCallbackRate: 1})
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
	h, l, devs := newFaulty(t, 3, Faults{DuplicateCallbackRate: 1})
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
	h, l, devs := newFaulty(t, 1, Faults{LateCallbackRate: 1, LateCallbackDelay: 250 * time.Millisecond})
	dev := devs[0]
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
		l := h.listen()
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
	h.sim.SetFaults(Faults{ErrorRate: 7, DropCallbackRate: -1, Latency: -time.Second, GatewayAfterApplyRate: 3})
	f := h.sim.currentFaults()
	if f.ErrorRate != 1 || f.DropCallbackRate != 0 || f.Latency != 0 || f.GatewayAfterApplyRate != 1 {
		t.Fatalf("faults not clamped: %+v", f)
	}
}

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
	h, l, devs := newFaulty(t, 3, Faults{LateCallbackRate: 1, LateCallbackDelay: 20 * time.Millisecond})
	h.accepted(h.action(ActionSuspend, nil, devs[0], devs[1]))
	l.wait(t, 2)

	h.sim.SetFaults(Faults{TimeoutRate: 1, StallFor: time.Second})
	if err := h.suspendGivingUp(100*time.Millisecond, devs[2]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the client to give up, got %v", err)
	}
	h.waitState(devs[2], StateSuspend)

	st := h.sim.Stats(0)
	if st.CallbacksLate != 2 || st.AnswersStalled != 1 {
		t.Fatalf("late %d (want 2), stalled %d (want 1)", st.CallbacksLate, st.AnswersStalled)
	}
}

// newFaulty is a harness with a callback listener, n active devices and the
// given faults.
func newFaulty(t *testing.T, n int, f Faults) (*harness, *listener, []string) {
	h := newHarness(t, fastConfig())
	l := h.listen()
	devs := h.seed(n, "active")
	h.sim.SetFaults(f)
	return h, l, devs
}

// suspendGivingUp sends a suspend of iccid from a client that gives up
// after the given time, and returns the client's error.
func (h *harness) suspendGivingUp(after time.Duration, iccid string) error {
	ctx, cancel := context.WithTimeout(context.Background(), after)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+m2mBase+"/devices/actions/suspend",
		strings.NewReader(`{"devices":[{"deviceIds":[{"id":"`+iccid+`","kind":"iccid"}]}]}`))
	req.Header = h.m2mHeaders()
	req.Header.Set("Content-Type", "application/json")
	_, err := h.srv.Client().Do(req)
	return err
}

// The gateway loses the backend's answer: every kind of state change is
// applied (the device moves, its callback comes, the stats count it
// accepted and applied), yet the client gets a 502 or 504 HTML page with
// no ThingSpace error body. Refusals and reads are not touched. Driven and
// read over HTTP, as the chaos suite does.
func TestGatewayAfterApplyAppliesThenAnswers5xx(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := h.listen()
	status, _, body := h.do(http.MethodPut, "/admin/faults", map[string]any{"gateway_after_apply_rate": 1}, nil)
	if status != http.StatusOK || !strings.Contains(string(body), `"gateway_after_apply_rate":1`) {
		t.Fatalf("admin faults: %d %s", status, body)
	}
	pre := h.seed(1, "preactive")[0]
	act := h.seed(12, "active")
	sus := h.seed(1, "suspend")[0]
	fresh := GenerateDevices(1, "8914877778", "")[0].ICCID

	statuses := map[int]int{}
	gateway := func(what string, status int, body []byte) {
		t.Helper()
		if status != http.StatusBadGateway && status != http.StatusGatewayTimeout {
			t.Fatalf("%s: want 502 or 504, got %d %s", what, status, body)
		}
		if !strings.HasPrefix(string(body), "<html>") || strings.Contains(string(body), "errorCode") ||
			strings.Contains(string(body), "fault") {
			t.Fatalf("%s: want the gateway's HTML page, got %s", what, body)
		}
		statuses[status]++
	}
	var hdr http.Header
	status, hdr, body = h.do(http.MethodPost, m2mBase+"/devices/actions/activate",
		map[string]any{"devices": refs(pre), "servicePlan": "m2m_4G", "mdnZipCode": "98801", "skuNumber": "SM-T387VZKAVZW"},
		h.m2mHeaders())
	gateway("activate", status, body)
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("activate: Content-Type %q", ct)
	}
	status, body = h.action(ActionRestore, nil, sus)
	gateway("restore", status, body)
	status, body = h.action(ActionDeactivate, nil, act[0])
	gateway("deactivate", status, body)
	status, body = h.action(ActionContactInfo, nil, act[1])
	gateway("contactInfo", status, body)
	status, body = h.m2m(http.MethodPost, "/devices/actions/add", map[string]any{"state": "preactive",
		"devicesToAdd": refs(fresh)})
	gateway("add", status, body)
	for _, d := range act[2:] {
		status, body = h.action(ActionSuspend, nil, d)
		gateway("suspend", status, body)
	}
	if statuses[http.StatusBadGateway] == 0 || statuses[http.StatusGatewayTimeout] == 0 {
		t.Fatalf("want both 502 and 504 among 15 answers, got %v", statuses)
	}

	// Applied all the same.
	h.waitState(pre, StateActive)
	h.waitState(sus, StateActive)
	h.waitState(act[0], StateDeactive)
	for _, d := range act[2:] {
		h.waitState(d, StateSuspend)
	}
	if d, ok := h.sim.Device(fresh); !ok || d.State != StatePreActive {
		t.Fatalf("added device %+v (found %v)", d, ok)
	}
	msgs := l.wait(t, 14) // every state change but the synchronous add
	for _, m := range msgs {
		if m.Status != "Success" {
			t.Fatalf("callback %+v", m)
		}
	}

	// Refusals are answered as such; reads are not faulted.
	status, body = h.action(ActionActivate, nil, act[1])
	wantError(t, status, body, CodeDeviceAlreadyActive)
	if status, _ := h.lookup(act[1], "iccid"); status != http.StatusOK {
		t.Fatalf("list: %d", status)
	}

	status, _, body = h.do(http.MethodGet, "/admin/stats", nil, nil)
	if status != http.StatusOK {
		t.Fatalf("admin stats: %d %s", status, body)
	}
	st := decodeAs[Stats](t, body)
	if st.GatewayAfterApply != 15 {
		t.Fatalf("gateway_after_apply %d, want 15 (%s)", st.GatewayAfterApply, body)
	}
	once := map[string]string{pre: ActionActivate, sus: ActionRestore, act[0]: ActionDeactivate,
		act[1]: ActionContactInfo, fresh: ActionAdd}
	for _, d := range act[2:] {
		once[d] = ActionSuspend
	}
	for iccid, action := range once {
		if st.AcceptedChanges[iccid][action] != 1 || st.AppliedChanges[iccid][action] != 1 {
			t.Fatalf("%s %s: accepted %v, applied %v", iccid, action, st.AcceptedChanges[iccid], st.AppliedChanges[iccid])
		}
	}
	if n := st.AcceptedChanges[act[1]][ActionActivate]; n != 0 {
		t.Fatalf("a refused activation counted accepted %d times", n)
	}
	n5xx := 0
	for key, byStatus := range st.Responses {
		if strings.Contains(key, "/devices/actions/") {
			n5xx += byStatus[http.StatusBadGateway] + byStatus[http.StatusGatewayTimeout]
		}
	}
	if n5xx != 15 {
		t.Fatalf("responses %v", st.Responses)
	}
}

// A device an accepted request carried but refused (by callback) counts as
// accepted, not applied: AppliedChanges is what ThingSpace did.
func TestAppliedChangesLeaveOutRefusedDevices(t *testing.T) {
	h, l, devs := newFaulty(t, 1, Faults{})
	pre := h.seed(1, "preactive")[0]
	h.accepted(h.action(ActionSuspend, nil, devs[0], pre))
	l.wait(t, 2)
	st := h.sim.Stats(0)
	if st.AcceptedChanges[pre][ActionSuspend] != 1 || st.AppliedChanges[pre][ActionSuspend] != 0 {
		t.Fatalf("refused device: accepted %v applied %v", st.AcceptedChanges[pre], st.AppliedChanges[pre])
	}
	if st.AppliedChanges[devs[0]][ActionSuspend] != 1 {
		t.Fatalf("applied %v", st.AppliedChanges)
	}
}
