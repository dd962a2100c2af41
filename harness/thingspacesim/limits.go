package thingspacesim

import (
	"sort"
	"time"
)

// Request-rate limits are rolling windows per account over admitted
// requests: a request refused with 429 does not use up quota, so a client
// that waits for Retry-After gets through.

// windowLog holds the admission times of one rolling window, oldest first.
type windowLog struct {
	times []time.Time
}

// room forgets admissions older than window and reports whether another
// request fits under limit; when not, it returns how long until one does.
func (w *windowLog) room(now time.Time, window time.Duration, limit int) (time.Duration, bool) {
	cut := now.Add(-window)
	i := sort.Search(len(w.times), func(i int) bool { return w.times[i].After(cut) })
	w.times = w.times[i:]
	if len(w.times) < limit {
		return 0, true
	}
	// A slot frees when the entry that keeps the count at the limit leaves
	// the window (the count may exceed a limit that was just lowered).
	return w.times[len(w.times)-limit].Add(window).Sub(now), false
}

func (w *windowLog) add(now time.Time) { w.times = append(w.times, now) }

type accountWindows struct {
	hour     windowLog // RequestsPerHour: every API request
	activate windowLog // ActivateRequestsPerMinute
}

// throttle applies RequestsPerHour to every API request and
// ActivateRequestsPerMinute to activate requests of the account. Quota is
// taken only when every applicable window has room.
func (s *Simulator) throttle(account string, activate bool, now time.Time) (reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.burst.remaining > 0 {
		s.burst.remaining--
		return throttledFault(s.burst.retryAfter), false
	}
	w := s.windows[account]
	if w == nil {
		w = &accountWindows{}
		s.windows[account] = w
	}
	perMinute := activate && s.limits.ActivateRequestsPerMinute > 0
	if perMinute {
		if wait, ok := w.activate.room(now, time.Minute, s.limits.ActivateRequestsPerMinute); !ok {
			return throttledFault(wait), false
		}
	}
	if s.limits.RequestsPerHour > 0 {
		if wait, ok := w.hour.room(now, time.Hour, s.limits.RequestsPerHour); !ok {
			return throttledFault(wait), false
		}
		w.hour.add(now)
	}
	if perMinute {
		w.activate.add(now)
	}
	return reply{}, true
}

// throttleBurst is the state of ThrottleBurst: requests still to refuse.
type throttleBurst struct {
	remaining  int
	retryAfter time.Duration
}

// ThrottleBurst makes the gateway answer the next n API requests that reach
// its throttling step (after the Bearer check) 429 with Retry-After, as the
// real gateway does when a spike of other traffic of the same application
// uses up its quota: the refused requests change nothing and use no quota.
// It replaces a burst still under way; n <= 0 ends it. retryAfter is
// rounded up to whole seconds, at least 1.
func (s *Simulator) ThrottleBurst(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.burst = throttleBurst{remaining: max(n, 0), retryAfter: retryAfter}
}

// ThrottleBurstRemaining is how many requests the burst will still refuse.
func (s *Simulator) ThrottleBurstRemaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.burst.remaining
}
