package reviosim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// faultsJSON is the admin form of Faults: rates as fractions, durations as
// Go duration strings ("250ms") so that shell scripts can set them.
type faultsJSON struct {
	ErrorRate             float64 `json:"error_rate"`
	RateLimitRate         float64 `json:"rate_limit_rate"`
	Latency               string  `json:"latency"`
	StallCreateService    string  `json:"stall_create_service"`
	FailCreateServiceRate float64 `json:"fail_create_service_rate"`
}

// MarshalJSON writes the admin form of f.
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		ErrorRate:             f.ErrorRate,
		RateLimitRate:         f.RateLimitRate,
		Latency:               f.Latency.String(),
		StallCreateService:    f.StallCreateService.String(),
		FailCreateServiceRate: f.FailCreateServiceRate,
	})
}

// UnmarshalJSON reads the admin form; missing fields are zero.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var w faultsJSON
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields() // a typo must not silently disable a fault
	if err := dec.Decode(&w); err != nil {
		return err
	}
	var out Faults
	var err error
	if out.Latency, err = optDuration("latency", w.Latency); err != nil {
		return err
	}
	if out.StallCreateService, err = optDuration("stall_create_service", w.StallCreateService); err != nil {
		return err
	}
	out.ErrorRate, out.RateLimitRate, out.FailCreateServiceRate = w.ErrorRate, w.RateLimitRate, w.FailCreateServiceRate
	if err := out.Validate(); err != nil {
		return err
	}
	*f = out
	return nil
}

// Validate checks rates are in [0,1] and durations are not negative.
func (f Faults) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"error_rate", f.ErrorRate},
		{"rate_limit_rate", f.RateLimitRate},
		{"fail_create_service_rate", f.FailCreateServiceRate},
	} {
		if r.v < 0 || r.v > 1 || math.IsNaN(r.v) {
			return fmt.Errorf("%s must be between 0 and 1", r.name)
		}
	}
	if f.Latency < 0 || f.StallCreateService < 0 {
		return fmt.Errorf("durations must not be negative")
	}
	return nil
}

func optDuration(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", name, err)
	}
	return d, nil
}

// serveAdmin answers the unauthenticated test-control endpoints. They are
// for tests and local runs only; the command listens on loopback by default.
func (s *Simulator) serveAdmin(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimRight(strings.ToLower(r.URL.Path), "/")
	allow := func(method string) bool {
		if r.Method == method {
			return true
		}
		w.Header().Set("Allow", method)
		writeJSON(w, http.StatusMethodNotAllowed, revError{Message: "method not allowed"})
		return false
	}
	switch p {
	case "/admin/services":
		if allow(http.MethodGet) {
			writeJSON(w, http.StatusOK, s.Services())
		}
	case "/admin/service-products":
		if allow(http.MethodGet) {
			writeJSON(w, http.StatusOK, s.ServiceProducts())
		}
	case "/admin/stats":
		if allow(http.MethodGet) {
			writeJSON(w, http.StatusOK, s.Stats())
		}
	case "/admin/faults":
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, s.CurrentFaults())
		case http.MethodPut:
			body, err := readBody(r)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, revError{Message: err.Error()})
				return
			}
			var f Faults
			if err := json.Unmarshal(body, &f); err != nil {
				writeJSON(w, http.StatusBadRequest, revError{Message: "faults: " + err.Error()})
				return
			}
			s.SetFaults(f)
			writeJSON(w, http.StatusOK, f)
		default:
			w.Header().Set("Allow", "GET, PUT")
			writeJSON(w, http.StatusMethodNotAllowed, revError{Message: "method not allowed"})
		}
	case "/admin/reset":
		if allow(http.MethodPost) {
			s.Reset()
			writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
		}
	default:
		writeJSON(w, http.StatusNotFound, revError{Message: "unknown admin endpoint"})
	}
}
