package thingspacesim

import (
	"fmt"
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

// appliedAnswerLocked is what the client gets for a state change the
// backend accepted, whose answer is rep: rep itself, rep held for StallFor
// (TimeoutRate), or, on its way back through the gateway, a 502 or 504
// page instead (GatewayAfterApplyRate). Either way the change stands.
func (s *Simulator) appliedAnswerLocked(rep reply) reply {
	if s.stallLocked() {
		rep.stall = true
		return rep
	}
	if !s.rng.Chance(s.faults.GatewayAfterApplyRate) {
		return rep
	}
	s.stats.gatewayAfterApply++
	statuses := [...]int{http.StatusBadGateway, http.StatusGatewayTimeout}
	return gatewayPage(statuses[s.rng.IntN(len(statuses))])
}

// serverErrorReply imitates what sits in front of ThingSpace: the backend's
// JSON error for 500, the load balancer's HTML page for 502 and the
// gateway's fault for 503, so that clients are tested against non-JSON
// bodies too.
func serverErrorReply(status int) reply {
	switch status {
	case http.StatusBadGateway:
		return gatewayPage(status)
	case http.StatusServiceUnavailable:
		return gatewayError(status, GatewayBackendError, "Runtime Error", "Error connecting to the back end")
	}
	return reply{status: http.StatusInternalServerError,
		body: errorBody{ErrorCode: CodeUnexpectedError, ErrorMessage: "REQUEST_FAILED. Internal server error"}}
}

// gatewayPage is the HTML error page a gateway or load balancer answers
// with (502, 504): no ThingSpace error body, nothing a client can tell a
// refusal by.
func gatewayPage(status int) reply {
	title := fmt.Sprintf("%d %s", status, http.StatusText(status))
	return reply{status: status, ctype: "text/html",
		raw: []byte("<html><head><title>" + title + "</title></head><body><h1>" + title + "</h1></body></html>\n")}
}
