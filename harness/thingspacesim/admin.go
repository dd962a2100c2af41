package thingspacesim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The /admin/ endpoints let tests, the demo and the benchmark inspect and
// steer the simulator over HTTP. They need no authentication and are not
// subject to faults, limits or statistics.

func (s *Simulator) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/devices", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.Devices())
	})
	mux.HandleFunc("GET /admin/devices/{iccid}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := s.Device(r.PathValue("iccid"))
		if !ok {
			adminError(w, http.StatusNotFound, "device not found")
			return
		}
		adminJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("POST /admin/devices", func(w http.ResponseWriter, r *http.Request) {
		var seeds []DeviceSeed
		if !adminDecode(w, r, &seeds) {
			return
		}
		if err := s.Seed(seeds...); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		adminJSON(w, http.StatusOK, map[string]int{"seeded": len(seeds)})
	})
	mux.HandleFunc("GET /admin/stats", func(w http.ResponseWriter, r *http.Request) {
		window := time.Hour
		if v := r.URL.Query().Get("window"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				adminError(w, http.StatusBadRequest, "window must be a positive Go duration such as 1h or 90s")
				return
			}
			window = d
		}
		adminJSON(w, http.StatusOK, struct {
			Window string `json:"window"`
			Stats
		}{window.String(), s.Stats(window)})
	})
	mux.HandleFunc("POST /admin/reset-stats", func(w http.ResponseWriter, r *http.Request) {
		s.ResetStats()
		adminJSON(w, http.StatusOK, map[string]bool{"reset": true})
	})
	adminSetting(mux, "/admin/faults", s.currentFaults, s.SetFaults)
	adminSetting(mux, "/admin/limits", s.currentLimits, s.SetLimits)
	mux.HandleFunc("GET /admin/callbacks", func(w http.ResponseWriter, r *http.Request) {
		reqID, iccid := r.URL.Query().Get("request_id"), r.URL.Query().Get("iccid")
		out := []DeliveryLogEntry{}
		for _, e := range s.DeliveryLog() {
			if (reqID == "" || e.RequestID == reqID) && (iccid == "" || e.ICCID == iccid) {
				out = append(out, e)
			}
		}
		adminJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /admin/oauth/expire", func(w http.ResponseWriter, r *http.Request) {
		s.ExpireOAuthToken()
		adminJSON(w, http.StatusOK, map[string]bool{"expired": true})
	})
	mux.HandleFunc("POST /admin/sessions/expire", func(w http.ResponseWriter, r *http.Request) {
		s.ExpireSessions()
		adminJSON(w, http.StatusOK, map[string]bool{"expired": true})
	})
	mux.HandleFunc("POST /admin/throttle-burst", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Requests   int          `json:"requests"`
			RetryAfter jsonDuration `json:"retry_after"`
		}
		if !adminDecode(w, r, &b) {
			return
		}
		s.ThrottleBurst(b.Requests, time.Duration(b.RetryAfter))
		adminJSON(w, http.StatusOK, map[string]int{"remaining": s.ThrottleBurstRemaining()})
	})
	mux.HandleFunc("GET /admin/throttle-burst", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, map[string]int{"remaining": s.ThrottleBurstRemaining()})
	})
	mux.HandleFunc("POST /admin/unlock", func(w http.ResponseWriter, r *http.Request) {
		s.UnlockLogins()
		adminJSON(w, http.StatusOK, map[string]bool{"unlocked": true})
	})
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		adminError(w, http.StatusNotFound, "no such admin endpoint")
	})
}

// adminSetting serves GET and PUT of one setting at path. A PUT replaces
// the setting whole (fields left out are zero) and answers what is now in
// force, so a script sees at once what it turned on.
func adminSetting[T any](mux *http.ServeMux, path string, get func() T, set func(T)) {
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, get())
	})
	mux.HandleFunc("PUT "+path, func(w http.ResponseWriter, r *http.Request) {
		var v T
		if !adminDecode(w, r, &v) {
			return
		}
		set(v)
		adminJSON(w, http.StatusOK, get())
	})
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func adminError(w http.ResponseWriter, status int, msg string) {
	adminJSON(w, status, map[string]string{"error": msg})
}

func adminDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return false
	}
	return true
}

// faultsJSON is Faults on the admin wire: snake_case keys, durations as Go
// duration strings ("250ms"; a bare number is nanoseconds).
type faultsJSON struct {
	ErrorRate             float64      `json:"error_rate"`
	Latency               jsonDuration `json:"latency"`
	LatencyJitter         jsonDuration `json:"latency_jitter"`
	TimeoutRate           float64      `json:"timeout_rate"`
	StallFor              jsonDuration `json:"stall_for"`
	DropCallbackRate      float64      `json:"drop_callback_rate"`
	DuplicateCallbackRate float64      `json:"duplicate_callback_rate"`
	LateCallbackRate      float64      `json:"late_callback_rate"`
	LateCallbackDelay     jsonDuration `json:"late_callback_delay"`
	ReorderCallbacks      bool         `json:"reorder_callbacks"`
	GatewayAfterApplyRate float64      `json:"gateway_after_apply_rate"`
}

func faultsToJSON(f Faults) faultsJSON {
	return faultsJSON{
		ErrorRate: f.ErrorRate, Latency: jsonDuration(f.Latency), LatencyJitter: jsonDuration(f.LatencyJitter),
		TimeoutRate: f.TimeoutRate, StallFor: jsonDuration(f.StallFor), DropCallbackRate: f.DropCallbackRate,
		DuplicateCallbackRate: f.DuplicateCallbackRate, LateCallbackRate: f.LateCallbackRate,
		LateCallbackDelay: jsonDuration(f.LateCallbackDelay), ReorderCallbacks: f.ReorderCallbacks,
		GatewayAfterApplyRate: f.GatewayAfterApplyRate,
	}
}

func (fj faultsJSON) faults() Faults {
	return Faults{
		ErrorRate: fj.ErrorRate, Latency: time.Duration(fj.Latency), LatencyJitter: time.Duration(fj.LatencyJitter),
		TimeoutRate: fj.TimeoutRate, StallFor: time.Duration(fj.StallFor), DropCallbackRate: fj.DropCallbackRate,
		DuplicateCallbackRate: fj.DuplicateCallbackRate, LateCallbackRate: fj.LateCallbackRate,
		LateCallbackDelay: time.Duration(fj.LateCallbackDelay), ReorderCallbacks: fj.ReorderCallbacks,
		GatewayAfterApplyRate: fj.GatewayAfterApplyRate,
	}
}

// MarshalJSON writes the admin form of f, so that a Go client of the admin
// endpoints (the chaos harness) can send a Faults instead of restating the
// wire keys.
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsToJSON(f))
}

// UnmarshalJSON reads the admin form; missing fields are zero. Unknown keys
// are refused here rather than by the caller's decoder, whose
// DisallowUnknownFields does not reach into an Unmarshaler: a typo must not
// silently turn a fault off.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var fj faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fj); err != nil {
		return err
	}
	*f = fj.faults()
	return nil
}

type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string:
		p, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return fmt.Errorf("duration %q: %w", x, err)
		}
		*d = jsonDuration(p)
	case float64:
		*d = jsonDuration(time.Duration(x))
	case nil:
		*d = 0
	default:
		return errors.New("duration must be a string such as \"250ms\" or a number of nanoseconds")
	}
	return nil
}
