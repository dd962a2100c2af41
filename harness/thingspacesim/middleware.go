package thingspacesim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// maxBodyBytes bounds request bodies: 10,000 devices with a few identifiers
// each stay well under it.
const maxBodyBytes = 32 << 20

// unmatchedKey is the Stats endpoint key of requests that match no route.
const unmatchedKey = "unmatched"

type authLevel int

const (
	authNone    authLevel = iota // OAuth endpoints check Basic auth themselves
	authBearer                   // login: OAuth Bearer only
	authSession                  // every other M2M call: Bearer + VZ-M2M-Token
)

// call is one API request as seen by a handler.
type call struct {
	r       *http.Request
	body    []byte
	account string // account the request is attributed to (limits, stats)
	now     time.Time
}

type apiHandler func(*call) reply

// wrap applies, in order: request accounting, latency, the 5xx fault,
// gateway authentication, throttling, session check, the handler, the
// stall fault. Throttling sits after the Bearer check because the WSO2
// gateway throttles per authenticated application; the session is checked
// by the backend after that.
func (s *Simulator) wrap(pattern string, auth authLevel, h apiHandler) http.Handler {
	key := pattern
	if pattern == "/" {
		key = unmatchedKey
	}
	activate := pattern == "POST /api/m2m/v1/devices/actions/activate"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil { // too large, or the client went away
			s.recordRequest(key, s.defaultAccount())
			s.finish(w, key, uwsError(CodeUnexpectedError, "REQUEST_FAILED. Request body could not be read"))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body)) // for ParseForm on the OAuth endpoints
		c := &call{r: r, body: body, account: s.attribute(r, body)}
		s.recordRequest(key, c.account)

		faults := s.currentFaults()
		if !s.sleep(r, faults.Latency+s.jitter(faults.LatencyJitter)) {
			// Client gone or simulator closed: nothing processed. A client
			// that is still there must not see net/http's implicit 200.
			if r.Context().Err() == nil {
				s.finish(w, key, serverErrorReply(http.StatusServiceUnavailable))
			}
			return
		}
		if status, ok := s.errorFault(); ok {
			s.finish(w, key, serverErrorReply(status))
			return
		}
		c.now = time.Now()
		if auth >= authBearer {
			if rep, ok := s.checkBearer(r, c.now); !ok {
				s.finish(w, key, rep)
				return
			}
		}
		if rep, ok := s.throttle(c.account, activate, c.now); !ok {
			s.finish(w, key, rep)
			return
		}
		if auth == authSession {
			if rep, ok := s.checkSession(r, c.now); !ok {
				s.finish(w, key, rep)
				return
			}
		}
		rep := h(c)
		if rep.stall {
			s.sleep(r, s.currentFaults().StallFor)
		}
		s.finish(w, key, rep)
	})
}

// finish writes rep and counts its status.
func (s *Simulator) finish(w http.ResponseWriter, key string, rep reply) {
	s.recordResponse(key, rep.status)
	rep.write(w)
}

// attribute names the account a request counts against: the {account}
// path value, else the body's accountName, else the default account (OAuth
// and login requests carry no account; the configured credentials belong
// to the default account).
func (s *Simulator) attribute(r *http.Request, body []byte) string {
	if a := r.PathValue("account"); a != "" {
		return a
	}
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var probe struct {
			AccountName string `json:"accountName"`
		}
		if json.Unmarshal(t, &probe) == nil && probe.AccountName != "" {
			return probe.AccountName
		}
	}
	return s.defaultAccount()
}

// sleep waits d unless the client goes away or the simulator closes; it
// reports whether the full delay elapsed.
func (s *Simulator) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}
