package thingspacesim

import (
	"net/http"
	"runtime"
	"testing"
	"time"
)

// TestCloseStopsEverything checks that Close leaves no goroutine behind
// with a late callback, a callback retry and a stalled answer pending.
func TestCloseStopsEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		cfg := fastConfig()
		cfg.CallbackRetryInterval = time.Hour
		cfg.CallbackConcurrency = 4
		h := newHarness(t, cfg)
		l := newListener(t)
		l.respond = func(int) int { return http.StatusInternalServerError }
		h.register(l, DefaultAccount)
		devs := h.seed(3, "active")

		h.accepted(h.action(ActionSuspend, nil, devs[0])) // fails once; retry an hour away
		l.wait(t, 1)
		h.sim.SetFaults(Faults{LateCallbackRate: 1, LateCallbackDelay: time.Hour})
		h.accepted(h.action(ActionSuspend, nil, devs[1])) // callback held for an hour
		h.waitState(devs[1], StateSuspend)

		h.sim.SetFaults(Faults{TimeoutRate: 1, StallFor: time.Hour})
		answered := make(chan int, 1)
		go func() {
			status, _ := h.action(ActionSuspend, nil, devs[2]) // answer held for an hour
			answered <- status
		}()
		// Applied: pending for CompletionDelay (5 ms), then suspended; a
		// poll of a loaded machine can miss the pending moment.
		waitFor(t, 3*time.Second, devs[2]+" to be applied", func() bool {
			d, _ := h.sim.Device(devs[2])
			return d.State == StatePendingSuspend || d.State == StateSuspend
		})

		h.sim.Close()
		h.sim.Close() // safe twice
		select {
		case <-answered: // Close released the stalled answer
		case <-time.After(3 * time.Second):
			t.Fatal("Close did not release a stalled answer")
		}
		h.srv.Close()
		l.srv.Close()
		h.srv.Client().CloseIdleConnections()
		if n := len(l.messages()); n != 1 {
			t.Fatalf("listener got %d messages after Close", n)
		}
	}()
	waitFor(t, 3*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= base })
}

func TestHandlerAfterClose(t *testing.T) {
	h := newHarness(t, fastConfig())
	dev := h.seed(1, "active")[0]
	h.authenticate()
	h.sim.Close()
	h.accepted(h.action(ActionSuspend, nil, dev))
	time.Sleep(20 * time.Millisecond)
	if d, _ := h.sim.Device(dev); d.State != StatePendingSuspend {
		t.Fatalf("state %+v", d)
	}
}

func TestStatsMaxRequestsInWindow(t *testing.T) {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(secs ...int) []time.Time {
		var out []time.Time
		for _, s := range secs {
			out = append(out, base.Add(time.Duration(s)*time.Second))
		}
		return out
	}
	cases := []struct {
		times  []time.Time
		window time.Duration
		want   int
	}{
		{nil, time.Minute, 0},
		{at(0, 10, 20, 100, 110), time.Minute, 3},
		{at(0, 60, 120), time.Minute, 2},
		{at(0, 1, 2, 3600, 3601, 3602, 3603), time.Hour, 4},
		{at(5, 0, 1), time.Second, 2},
	}
	for i, c := range cases {
		if got := maxInWindow(c.times, c.window); got != c.want {
			t.Errorf("case %d: %d, want %d", i, got, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg := Config{}.withDefaults()
	if cfg.Accounts[0] != DefaultAccount || cfg.OAuthTokenTTL != time.Hour || cfg.SessionIdleTimeout != 20*time.Minute ||
		cfg.MaxFailedLogins != 5 || cfg.CompletionDelay != 2*time.Second || cfg.CallbackRetryInterval != 5*time.Minute ||
		cfg.CallbackMaxAttempts != 4 ||
		cfg.CallbackHTTPTimeout != 10*time.Second {
		t.Fatalf("defaults %+v", cfg)
	}
	want := Limits{
		ActivateRequestsPerMinute: 100,
		RequestsPerHour:           0,
		MaxDevicesPerRequest:      10000,
		MaxDevicesPerAdd:          200,
		ActionsPerLinePerDay:      5,
	}
	if cfg.Limits != want {
		t.Fatalf("limits %+v", cfg.Limits)
	}
	if c := (Config{CompletionDelay: -1}).withDefaults(); c.CompletionDelay != 0 {
		t.Fatalf("negative delay → %v", c.CompletionDelay)
	}
}

// TestConcurrentUse exercises every path at once for the race detector.
func TestConcurrentUse(t *testing.T) {
	cfg := fastConfig()
	cfg.CallbackConcurrency = 4
	cfg.CompletionJitter = 5 * time.Millisecond
	cfg.Faults = Faults{
		DuplicateCallbackRate: 0.2,
		DropCallbackRate:      0.1,
		LateCallbackRate:      0.2,
		LateCallbackDelay:     5 * time.Millisecond,
	}
	h := newHarness(t, cfg)
	h.listen()
	devs := h.seed(40, "active")
	hdr := h.m2mHeaders()
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			mine := devs[w*10 : (w+1)*10]
			for _, a := range []string{ActionSuspend, ActionRestore, ActionDeactivate} {
				body := map[string]any{"devices": refs(mine...), "accountName": DefaultAccount}
				if a == ActionDeactivate {
					body["reasonCode"] = "FF"
				}
				h.do(http.MethodPost, m2mBase+"/devices/actions/"+a, body, hdr)
				h.do(http.MethodPost, m2mBase+"/devices/actions/list", map[string]any{"maxNumberOfDevices": 5}, hdr)
				h.sim.Stats(time.Minute)
				h.sim.Devices()
				time.Sleep(30 * time.Millisecond)
			}
		}(w)
	}
	for range 4 {
		<-done
	}
}
