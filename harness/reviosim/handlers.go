package reviosim

// The API's front door: routing, then the checks every call meets in
// Rev.io's order (gateway key, rate window, path and method, injected
// faults, Basic authentication) before the resource's handler answers.
// Each resource has its file: services.go, serviceproducts.go.

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// route identifies an API operation.
type route struct {
	key     string // stats key, e.g. "GET /v1/Services/{id}"
	id      int64  // path id, when the route has one
	badID   bool   // path id present but not a positive integer
	known   bool   // the path exists
	allowed string // methods of the path, for 405
}

// match resolves a path case-insensitively.
func match(method, p string) route {
	lp := strings.TrimRight(strings.ToLower(p), "/")
	segs := strings.Split(strings.TrimPrefix(lp, "/"), "/")
	r := route{key: method + " " + lp}
	pathID := func(s string) {
		n, err := strconv.ParseInt(s, 10, 64)
		r.id, r.badID = n, err != nil || n <= 0
	}
	switch {
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "systemstatus":
		r.key, r.known, r.allowed = method+" /v1/SystemStatus", true, "GET"
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "services":
		r.key, r.known, r.allowed = method+" /v1/Services", true, "GET, POST"
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "services":
		r.key, r.known, r.allowed = method+" /v1/Services/{id}", true, "GET, PATCH"
		pathID(segs[2])
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "serviceproduct":
		r.key, r.known, r.allowed = method+" /v1/ServiceProduct", true, "GET, POST, DELETE"
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "serviceproduct":
		r.key, r.known, r.allowed = method+" /v1/ServiceProduct/{id}", true, "GET"
		pathID(segs[2])
	}
	return r
}

// Handler serves the API and the /admin endpoints.
func (s *Simulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/", s.serveAdmin)
	mux.HandleFunc("/", s.serveAPI)
	return mux
}

// statusRecorder remembers the status for the statistics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (s *Simulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	rt := match(r.Method, r.URL.Path)
	rec := &statusRecorder{ResponseWriter: w}
	defer s.countAnswer(rec)
	faults := s.countCall(rt)

	if faults.Latency > 0 && !s.sleep(r.Context(), faults.Latency) {
		return
	}
	// Gateway (APIM) checks first: subscription key, then the rate window.
	if !s.subscriptionOK(rec, r) {
		return
	}
	failed, admitted := s.admit(rec, rt, faults)
	if !admitted || !routeOK(rec, r, rt) {
		return
	}
	if failed {
		writeFailure(rec, s.flip())
		return
	}
	if !s.basicOK(r.Header.Get("Authorization")) {
		rec.Header().Set("WWW-Authenticate", `Basic realm="Rev.io"`)
		writeJSON(rec, http.StatusUnauthorized, revError{Message: "Authorization has been denied for this request."})
		return
	}
	if rt.badID {
		badRequest(rec, "id", "the id in the path must be a positive integer")
		return
	}
	s.dispatch(rec, r, rt, faults)
}

// countCall counts a call to the route and returns the faults it meets.
func (s *Simulator) countCall(rt route) Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Calls[rt.key]++
	s.stats.Total++
	return s.faults
}

// countAnswer counts the status the call was answered with.
func (s *Simulator) countAnswer(rec *statusRecorder) {
	if rec.status == 0 {
		return // the caller went away during a stall; nothing was answered
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Statuses[rec.status]++
	switch rec.status {
	case http.StatusTooManyRequests:
		s.stats.RateLimited++
	case http.StatusUnauthorized:
		s.stats.AuthFailures++
	}
}

// admit takes the call into the rate window, or answers 429 and reports
// it not admitted (a full window, or an injected rate limit). An admitted
// call on a known path may be picked to fail (failed).
func (s *Simulator) admit(w http.ResponseWriter, rt route, faults Faults) (failed, admitted bool) {
	s.mu.Lock()
	wait := s.admitLocked(s.now())
	limited := wait == 0 && s.rng.Chance(faults.RateLimitRate)
	if limited && s.cfg.CallsPerMinute >= 0 {
		// Answered 429, so it does not use up a slot of the window.
		s.window = s.window[:len(s.window)-1]
	}
	failed = wait == 0 && !limited && rt.known && s.rng.Chance(faults.ErrorRate)
	s.mu.Unlock()
	if wait == 0 && !limited {
		return failed, true
	}
	secs := 1
	if wait > 0 {
		secs = int(math.Ceil(wait.Seconds()))
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeJSON(
		w,
		http.StatusTooManyRequests,
		apimError{StatusCode: 429, Message: fmt.Sprintf("Rate limit is exceeded. Try again in %d seconds.", secs)},
	)
	return false, false
}

// routeOK answers 404 for an unknown path and 405 for a method the path
// does not have.
func routeOK(w http.ResponseWriter, r *http.Request, rt route) bool {
	if !rt.known {
		writeJSON(w, http.StatusNotFound, apimError{StatusCode: 404, Message: "Resource not found"})
		return false
	}
	if !strings.Contains(", "+rt.allowed+",", ", "+r.Method+",") {
		w.Header().Set("Allow", rt.allowed)
		writeJSON(
			w,
			http.StatusMethodNotAllowed,
			revError{Message: "The requested resource does not support http method '" + r.Method + "'."},
		)
		return false
	}
	return true
}

// writeFailure answers an injected server error, in one of two shapes so
// that clients meet both a JSON and a text 5xx.
func writeFailure(w http.ResponseWriter, asJSON bool) {
	if asJSON {
		writeJSON(w, http.StatusInternalServerError, revError{Message: "An error has occurred."})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte("Service Unavailable"))
}

// dispatch hands a call that passed every check to its resource.
func (s *Simulator) dispatch(w http.ResponseWriter, r *http.Request, rt route, faults Faults) {
	switch rt.key {
	case "GET /v1/SystemStatus":
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "status": "Online"})
	case "POST /v1/Services":
		s.createService(w, r, faults)
	case "GET /v1/Services":
		s.listServices(w, r)
	case "GET /v1/Services/{id}":
		s.getService(w, rt.id)
	case "PATCH /v1/Services/{id}":
		s.patchService(w, r, rt.id)
	case "POST /v1/ServiceProduct":
		s.createServiceProduct(w, r)
	case "GET /v1/ServiceProduct":
		s.listServiceProducts(w, r)
	case "GET /v1/ServiceProduct/{id}":
		s.getServiceProduct(w, rt.id)
	case "DELETE /v1/ServiceProduct":
		s.disconnectServiceProduct(w, r)
	}
}

func (s *Simulator) flip() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.IntN(2) == 0
}

// sleep waits d unless the caller leaves or the simulator closes; it
// reports whether to carry on answering.
func (s *Simulator) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closed:
		return true
	case <-ctx.Done():
		return false
	}
}
