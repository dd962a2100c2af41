package thingspacesim

import (
	"net/http"
	"testing"
	"time"
)

// suspendOneAnsweredBy suspends a new active device of the default account,
// whose callbacks go to a new listener answering the nth attempt with
// respond(n).
func (h *harness) suspendOneAnsweredBy(respond func(n int) int) (l *listener, dev, reqID string) {
	h.t.Helper()
	l = newListener(h.t)
	l.respond = respond
	h.register(l, DefaultAccount)
	dev = h.seed(1, "active")[0]
	return l, dev, h.accepted(h.action(ActionSuspend, nil, dev))
}

func TestCallbackRetriesUntilSuccess(t *testing.T) {
	h := newHarness(t, fastConfig())
	l, _, reqID := h.suspendOneAnsweredBy(func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	l.wait(t, 3)
	time.Sleep(50 * time.Millisecond) // several retry intervals: no 4th attempt
	msgs := l.messages()
	if len(msgs) != 3 {
		t.Fatalf("got %d attempts, want 3", len(msgs))
	}
	for i, m := range msgs {
		if m.CallbackCount != i+1 || m.MaxCallbackThreshold != 4 || m.RequestID != reqID {
			t.Fatalf("attempt %d: callbackCount %d, threshold %d", i+1, m.CallbackCount, m.MaxCallbackThreshold)
		}
	}
	st := h.sim.Stats(0)
	if st.CallbacksDelivered != 1 || st.CallbackAttemptsFailed != 2 {
		t.Fatalf("delivered %d, failed attempts %d", st.CallbacksDelivered, st.CallbackAttemptsFailed)
	}
	log := h.sim.DeliveryLog()
	if len(log) != 3 || log[0].Outcome != OutcomeFailed || log[0].HTTPStatus != 500 ||
		log[2].Outcome != OutcomeDelivered ||
		log[2].Attempt != 3 {
		t.Fatalf("delivery log %+v", log)
	}
}

func TestCallbackGivesUpAfterMaxAttempts(t *testing.T) {
	h := newHarness(t, fastConfig())
	l, dev, _ := h.suspendOneAnsweredBy(func(int) int { return http.StatusServiceUnavailable })
	l.wait(t, 4)
	time.Sleep(60 * time.Millisecond)
	if n := len(l.messages()); n != 4 {
		t.Fatalf("got %d attempts, want 4", n)
	}
	log := h.sim.DeliveryLog()
	if last := log[len(log)-1]; last.Outcome != OutcomeAbandoned || last.Attempt != 4 {
		t.Fatalf("last log entry %+v", last)
	}
	// The state change itself happened regardless of the listener.
	h.waitState(dev, StateSuspend)
}

func TestCallbackRetriesOnConnectionFailure(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := h.listen()
	l.srv.Close() // nothing listens any more
	dev := h.seed(1, "active")[0]
	h.accepted(h.action(ActionSuspend, nil, dev))
	waitFor(t, 3*time.Second, "4 failed attempts", func() bool { return h.sim.Stats(0).CallbackAttemptsFailed == 4 })
	for _, e := range h.sim.DeliveryLog() {
		if e.Error == "" || e.HTTPStatus != 0 {
			t.Fatalf("log entry %+v", e)
		}
	}
}

func TestCallbackWithoutListenerIsDropped(t *testing.T) {
	h := newHarness(t, fastConfig())
	dev := h.seed(1, "active")[0]
	h.accepted(h.action(ActionSuspend, nil, dev))
	waitFor(t, 3*time.Second, "drop", func() bool { return h.sim.Stats(0).CallbacksDropped == 1 })
	if log := h.sim.DeliveryLog(); len(log) != 1 || log[0].Outcome != OutcomeNoListener {
		t.Fatalf("log %+v", log)
	}
	h.waitState(dev, StateSuspend)
}

func TestCallbackGoesToDeviceAccount(t *testing.T) {
	cfg := fastConfig()
	cfg.Accounts = []string{DefaultAccount, "0000333333-00001"}
	h := newHarness(t, cfg)
	l1, l2 := newListener(t), newListener(t)
	h.register(l1, DefaultAccount)
	h.register(l2, "0000333333-00001")
	other := DeviceSeed{ICCID: "89148000000000000050", Account: "0000333333-00001", State: "active"}
	if err := h.sim.Seed(other); err != nil {
		t.Fatal(err)
	}
	h.accepted(h.action(ActionSuspend, nil, "89148000000000000050"))
	l2.wait(t, 1)
	if n := len(l1.messages()); n != 0 {
		t.Fatalf("default account's listener got %d callbacks", n)
	}
}

func TestCallbackRegistration(t *testing.T) {
	h := newHarness(t, fastConfig())
	path := "/callbacks/" + DefaultAccount
	status, body := h.m2m(
		http.MethodPost,
		path,
		callbackRegistration{Name: CarrierService, URL: "https://example.test:9001/cb", Username: "u", Password: "p"},
	)
	if status != http.StatusOK {
		t.Fatalf("register: %d %s", status, body)
	}
	if r := decodeAs[callbackRegistered](t, body); r.AccountName != DefaultAccount || r.ServiceName != CarrierService {
		t.Fatalf("register answer %+v", r)
	}
	// Registering again replaces; another service adds.
	h.m2m(http.MethodPost, path, callbackRegistration{Name: CarrierService, URL: "https://example.test:9002/cb"})
	h.m2m(http.MethodPost, path, callbackRegistration{Name: "DeviceService", URL: "https://example.test:9003/dev"})
	status, body = h.m2m(http.MethodGet, path, nil)
	got := decodeAs[[]callbackListenerInfo](t, body)
	if status != http.StatusOK || len(got) != 2 || got[0].ServiceName != CarrierService ||
		got[0].URL != "https://example.test:9002/cb" ||
		got[0].Username != "" ||
		got[1].ServiceName != "DeviceService" {
		t.Fatalf("list: %d %+v", status, got)
	}
	status, body = h.m2m(http.MethodDelete, path+"/name/DeviceService", nil)
	if status != http.StatusOK || decodeAs[callbackRegistered](t, body).ServiceName != "DeviceService" {
		t.Fatalf("delete: %d %s", status, body)
	}
	status, body = h.m2m(http.MethodDelete, path+"/name/DeviceService", nil)
	wantError(t, status, body, CodeCallbackNotFound)
	_, body = h.m2m(http.MethodGet, path, nil)
	if got := decodeAs[[]callbackListenerInfo](t, body); len(got) != 1 {
		t.Fatalf("after delete: %+v", got)
	}

	status, body = h.m2m(
		http.MethodPost,
		path,
		callbackRegistration{Name: "CarrierServices", URL: "https://example.test/cb"},
	)
	wantError(t, status, body, CodeUnexpectedError)
	status, body = h.m2m(http.MethodPost, path, callbackRegistration{Name: CarrierService, URL: "not a url"})
	wantError(t, status, body, CodeUnexpectedError)
	status, body = h.m2m(
		http.MethodPost,
		"/callbacks/0000000000-00000",
		callbackRegistration{Name: CarrierService, URL: "https://example.test/cb"},
	)
	wantError(t, status, body, CodeAccountNotFound)
	status, body = h.m2m(http.MethodGet, "/callbacks/0000000000-00000", nil)
	wantError(t, status, body, CodeAccountNotFound)
}

func TestCallbackListenerRemovedStopsRetries(t *testing.T) {
	cfg := fastConfig()
	cfg.CallbackRetryInterval = 400 * time.Millisecond
	h := newHarness(t, cfg)
	l, _, _ := h.suspendOneAnsweredBy(func(int) int { return http.StatusInternalServerError })
	l.wait(t, 1)
	h.m2m(http.MethodDelete, "/callbacks/"+DefaultAccount+"/name/"+CarrierService, nil)
	waitFor(t, 3*time.Second, "no-listener drop", func() bool { return h.sim.Stats(0).CallbacksDropped == 1 })
	if n := len(l.messages()); n != 1 {
		t.Fatalf("listener got %d attempts after removal", n)
	}
}
