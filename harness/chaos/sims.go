package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// admin talks to a simulator's /admin/ endpoints: the run steers the
// simulators and reads what they saw only through them, as it would a
// remote simulator.
type admin struct {
	base string
	hc   *http.Client
}

func (a admin) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	var last error
	// A few quick tries: the machine is busy, and a fault that failed to
	// turn on or off would change the schedule.
	for attempt := range 5 {
		if attempt > 0 {
			sleepCtx(ctx, time.Duration(attempt)*200*time.Millisecond)
			if in != nil {
				b, _ := json.Marshal(in)
				body = bytes.NewReader(b)
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
		if err != nil {
			return err
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := a.hc.Do(req)
		if err != nil {
			last = err
			continue
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			last = err
			continue
		}
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
		}
		if out != nil {
			return json.Unmarshal(data, out)
		}
		return nil
	}
	return fmt.Errorf("%s %s%s: %w", method, a.base, path, last)
}

// Fault strengths. A window's share is high enough that every window
// shows, low enough that the run goes on through it.
const (
	tsErrorRate       = 0.25
	tsLostAnswerRate  = 0.35
	tsGatewayRate     = 0.35
	revioErrorRate    = 0.3
	revioThrottleRate = 0.3
	// revioLateCreate holds a created service's answer past the Rev.io
	// client's 30 s timeout, so the client gives up on a create that
	// happened.
	revioLateCreate = 35 * time.Second
)

// faultControl turns the simulators' faults on and off: the callback
// faults for the whole run, windows on top of them.
type faultControl struct {
	ts, revio admin
	base      tssim.Faults
	stallFor  time.Duration // answer hold of a lost answer: past the product's HTTP timeout

	mu   sync.Mutex
	open map[Kind]int
	errs []error
	stop chan struct{}
	wg   sync.WaitGroup
}

// maxWindow bounds a window that the product's traffic has not yet met.
const maxWindow = time.Minute

func (f *faultControl) apply(ctx context.Context) error {
	f.mu.Lock()
	t := f.base
	if f.open[TS5xx] > 0 {
		t.ErrorRate = tsErrorRate
	}
	if f.open[TSLostAnswers] > 0 {
		t.TimeoutRate, t.StallFor = tsLostAnswerRate, f.stallFor
	}
	if f.open[TSGatewayAfterApply] > 0 {
		t.GatewayAfterApplyRate = tsGatewayRate
	}
	var r revsim.Faults
	if f.open[Revio5xx] > 0 {
		r.ErrorRate = revioErrorRate
	}
	if f.open[Revio429] > 0 {
		r.RateLimitRate = revioThrottleRate
	}
	if f.open[RevioLateCreates] > 0 {
		r.StallCreateService = revioLateCreate
	}
	f.mu.Unlock()
	if err := f.ts.do(ctx, http.MethodPut, "/admin/faults", t, nil); err != nil {
		return err
	}
	return f.revio.do(ctx, http.MethodPut, "/admin/faults", r, nil)
}

// seen counts what a window's fault did so far, as its simulator saw it.
func (f *faultControl) seen(ctx context.Context, k Kind) (int, error) {
	switch k {
	case TS5xx, TSLostAnswers, TSGatewayAfterApply:
		st, err := f.ts.tsStats(ctx)
		if err != nil {
			return 0, err
		}
		switch k {
		case TSLostAnswers:
			return st.AnswersStalled, nil
		case TSGatewayAfterApply:
			return st.GatewayAfterApply, nil
		}
		// The 5xx answered before any processing: those after applying
		// belong to the other window.
		n := -st.GatewayAfterApply
		for _, byStatus := range st.Responses {
			for code, c := range byStatus {
				if code >= 500 {
					n += c
				}
			}
		}
		return n, nil
	default:
		st, err := f.revio.revioStats(ctx)
		if err != nil {
			return 0, err
		}
		switch k {
		case Revio5xx:
			return st.Statuses[500] + st.Statuses[503], nil
		case Revio429:
			return st.RateLimited, nil
		}
		return st.StalledCreates, nil
	}
}

// window turns a fault on for d, and longer if the product's traffic has
// not met it yet (up to maxWindow): ThingSpace sees a request every few
// seconds, and a window nothing went through would be a fault in name
// only. It goes off by itself.
func (f *faultControl) window(ctx context.Context, k Kind, d time.Duration) error {
	before, err := f.seen(ctx, k)
	if err != nil {
		return err
	}
	f.mu.Lock()
	if f.open == nil {
		f.open = map[Kind]int{}
	}
	if f.stop == nil {
		f.stop = make(chan struct{})
	}
	stop := f.stop
	f.open[k]++
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		opened := time.Now()
		wait := d
		for {
			select {
			case <-stop:
				return
			case <-time.After(wait):
			}
			n, err := f.seen(context.Background(), k)
			if (err == nil && n > before) || time.Since(opened) >= maxWindow {
				break
			}
			wait = 500 * time.Millisecond
		}
		f.mu.Lock()
		f.open[k]--
		f.mu.Unlock()
		if err := f.apply(context.Background()); err != nil {
			f.mu.Lock()
			f.errs = append(f.errs, err)
			f.mu.Unlock()
		}
	}()
	return f.apply(ctx)
}

// clear ends every window and burst and turns every fault off, the
// whole-run ones included, so that the checks read settled simulators.
func (f *faultControl) clear(ctx context.Context) error {
	f.mu.Lock()
	if f.stop != nil {
		close(f.stop)
		f.stop = nil
	}
	f.mu.Unlock()
	f.wg.Wait()
	f.mu.Lock()
	f.open = map[Kind]int{}
	f.base = tssim.Faults{}
	errs := f.errs
	f.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("a fault window did not close: %v", errs[0])
	}
	if err := f.ts.do(ctx, http.MethodPost, "/admin/throttle-burst", map[string]any{"requests": 0}, nil); err != nil {
		return err
	}
	return f.apply(ctx)
}

// adminGet reads one admin resource of a simulator.
func adminGet[T any](ctx context.Context, a admin, path string) (T, error) {
	var out T
	err := a.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// tsStats reads GET /admin/stats (its "window" member is not needed).
func (a admin) tsStats(ctx context.Context) (tssim.Stats, error) {
	return adminGet[tssim.Stats](ctx, a, "/admin/stats?window=1h")
}

func (a admin) tsDevices(ctx context.Context) ([]tssim.DeviceSnapshot, error) {
	return adminGet[[]tssim.DeviceSnapshot](ctx, a, "/admin/devices")
}

func (a admin) tsCallbacks(ctx context.Context) ([]tssim.DeliveryLogEntry, error) {
	return adminGet[[]tssim.DeliveryLogEntry](ctx, a, "/admin/callbacks")
}

func (a admin) revioServices(ctx context.Context) ([]revsim.ServiceRecord, error) {
	return adminGet[[]revsim.ServiceRecord](ctx, a, "/admin/services")
}

func (a admin) revioProducts(ctx context.Context) ([]revsim.ServiceProductRecord, error) {
	return adminGet[[]revsim.ServiceProductRecord](ctx, a, "/admin/service-products")
}

func (a admin) revioStats(ctx context.Context) (revsim.Stats, error) {
	return adminGet[revsim.Stats](ctx, a, "/admin/stats")
}
