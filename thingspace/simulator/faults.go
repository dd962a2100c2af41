package simulator

import (
	"net/http"
	"time"
)

// Fault decisions draw from the seeded generator under s.mu, so a fixed
// Config.Seed gives repeatable fault sequences for a given request order.

// jitter is rng.Jitter for a caller not holding s.mu.
func (s *Simulator) jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Jitter(max)
}

// errorFault decides whether this request fails with a 5xx before any
// processing, and with which status.
func (s *Simulator) errorFault() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.rng.Chance(s.faults.ErrorRate) {
		return 0, false
	}
	statuses := [...]int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}
	return statuses[s.rng.IntN(len(statuses))], true
}

// stallLocked decides whether an applied state change is answered late.
func (s *Simulator) stallLocked() bool {
	stall := s.faults.StallFor > 0 && s.rng.Chance(s.faults.TimeoutRate)
	if stall {
		s.stats.answersStalled++
	}
	return stall
}

// serverErrorReply imitates what sits in front of ThingSpace: the backend's
// JSON error for 500, the load balancer's HTML page for 502 and the
// gateway's fault for 503, so that clients are tested against non-JSON
// bodies too.
func serverErrorReply(status int) reply {
	switch status {
	case http.StatusBadGateway:
		return reply{status: status, ctype: "text/html",
			raw: []byte(
				"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n",
			)}
	case http.StatusServiceUnavailable:
		return gatewayError(status, GatewayBackendError, "Runtime Error", "Error connecting to the back end")
	}
	return reply{status: http.StatusInternalServerError,
		body: errorBody{ErrorCode: CodeUnexpectedError, ErrorMessage: "REQUEST_FAILED. Internal server error"}}
}
