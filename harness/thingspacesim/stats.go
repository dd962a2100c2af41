package thingspacesim

import (
	"sort"
	"time"
)

// Stats are counters since New or the last ResetStats.
type Stats struct {
	// Requests counts API requests by endpoint key: the route pattern, e.g.
	// "POST /api/m2m/v1/devices/actions/activate" or
	// "GET /api/m2m/v1/accounts/{account}/requests/{requestId}/status";
	// "unmatched" for unknown paths. Throttled and faulted requests count.
	Requests map[string]int `json:"requests"`
	// Responses counts answers by endpoint key and HTTP status.
	Responses map[string]map[int]int `json:"responses"`
	// AcceptedChanges: ICCID → action → number of requests ThingSpace
	// accepted that included the device (whatever the device's own
	// outcome), so that repeated submissions of the same change show up.
	// A request is accepted when it is answered 2xx, or would have been:
	// an answer held by the stall fault or replaced by the gateway's
	// 502/504 counts too, since the backend took the request.
	AcceptedChanges map[string]map[string]int `json:"accepted_changes"`
	// AppliedChanges: ICCID → action → number of times ThingSpace took the
	// change for the device (a state change under way or done, a place of
	// use written, a device added), whatever answer the client got. A
	// device an accepted request carried but refused (by callback) is not
	// counted.
	AppliedChanges map[string]map[string]int `json:"applied_changes"`
	// RequestsPerAccount counts API requests by attributed account (path
	// {account}, else body accountName, else the default account).
	RequestsPerAccount map[string]int `json:"requests_per_account"`
	// MaxRequestsInWindow: account → the highest number of requests seen in
	// any rolling window of the length given to Stats.
	MaxRequestsInWindow map[string]int `json:"max_requests_in_window"`
	// OAuthTokensIssued counts successful token answers (the same token
	// may be returned many times).
	OAuthTokensIssued      int `json:"oauth_tokens_issued"`
	Logins                 int `json:"logins"`
	FailedLogins           int `json:"failed_logins"`
	CallbacksDelivered     int `json:"callbacks_delivered"`      // attempts answered 2xx
	CallbackAttemptsFailed int `json:"callback_attempts_failed"` // attempts answered non-2xx or not answered
	CallbacksDropped       int `json:"callbacks_dropped"`        // never sent: drop fault or no listener
	CallbacksDuplicated    int `json:"callbacks_duplicated"`     // extra copies created by the duplicate fault
	CallbacksLate          int `json:"callbacks_late"`           // device callbacks delayed by the late fault
	// AnswersStalled counts applied state changes answered only after
	// StallFor.
	AnswersStalled int `json:"answers_stalled"`
	// GatewayAfterApply counts accepted state changes answered 502 or 504
	// by the gateway fault (Faults.GatewayAfterApplyRate).
	GatewayAfterApply int `json:"gateway_after_apply"`
}

type statsState struct {
	requests               map[string]int
	responses              map[string]map[int]int
	accepted               map[string]map[string]int
	applied                map[string]map[string]int
	perAccount             map[string]int
	times                  map[string][]time.Time // per account, in arrival order
	oauthTokens            int
	logins, failedLogins   int
	callbacksDelivered     int
	callbackAttemptsFailed int
	callbacksDropped       int
	callbacksDuplicated    int
	callbacksLate          int
	answersStalled         int
	gatewayAfterApply      int
}

func newStatsState() statsState {
	return statsState{
		requests:   map[string]int{},
		responses:  map[string]map[int]int{},
		accepted:   map[string]map[string]int{},
		applied:    map[string]map[string]int{},
		perAccount: map[string]int{},
		times:      map[string][]time.Time{},
	}
}

func (s *Simulator) recordRequest(key, account string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.requests[key]++
	s.stats.perAccount[account]++
	s.stats.times[account] = append(s.stats.times[account], now)
}

func (s *Simulator) recordResponse(key string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.stats.responses[key]
	if m == nil {
		m = map[int]int{}
		s.stats.responses[key] = m
	}
	m[status]++
}

func (st *statsState) acceptLocked(iccid, action string) { countChange(st.accepted, iccid, action) }

func (st *statsState) appliedLocked(iccid, action string) { countChange(st.applied, iccid, action) }

func countChange(counts map[string]map[string]int, iccid, action string) {
	m := counts[iccid]
	if m == nil {
		m = map[string]int{}
		counts[iccid] = m
	}
	m[action]++
}

// Stats returns a copy of the counters. window is the rolling window of
// MaxRequestsInWindow (0 → 1h).
func (s *Simulator) Stats(window time.Duration) Stats {
	if window <= 0 {
		window = time.Hour
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.stats
	out := Stats{
		Requests:               copyMap(st.requests),
		Responses:              map[string]map[int]int{},
		AcceptedChanges:        map[string]map[string]int{},
		AppliedChanges:         map[string]map[string]int{},
		RequestsPerAccount:     copyMap(st.perAccount),
		MaxRequestsInWindow:    map[string]int{},
		OAuthTokensIssued:      st.oauthTokens,
		Logins:                 st.logins,
		FailedLogins:           st.failedLogins,
		CallbacksDelivered:     st.callbacksDelivered,
		CallbackAttemptsFailed: st.callbackAttemptsFailed,
		CallbacksDropped:       st.callbacksDropped,
		CallbacksDuplicated:    st.callbacksDuplicated,
		CallbacksLate:          st.callbacksLate,
		AnswersStalled:         st.answersStalled,
		GatewayAfterApply:      st.gatewayAfterApply,
	}
	for k, m := range st.responses {
		out.Responses[k] = copyMap(m)
	}
	for k, m := range st.accepted {
		out.AcceptedChanges[k] = copyMap(m)
	}
	for k, m := range st.applied {
		out.AppliedChanges[k] = copyMap(m)
	}
	for account, times := range st.times {
		out.MaxRequestsInWindow[account] = maxInWindow(times, window)
	}
	return out
}

// maxInWindow is the largest number of times within any span of length
// window (both ends inclusive), by a two-pointer sweep.
func maxInWindow(times []time.Time, window time.Duration) int {
	if !sort.SliceIsSorted(times, func(i, j int) bool { return times[i].Before(times[j]) }) {
		times = append([]time.Time(nil), times...)
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	}
	best, lo := 0, 0
	for hi := range times {
		for times[hi].Sub(times[lo]) > window {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// ResetStats zeroes every counter and the callback delivery log. Limits'
// windows are not statistics and are kept.
func (s *Simulator) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = newStatsState()
	s.cbLog = nil
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
