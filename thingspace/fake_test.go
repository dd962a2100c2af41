package thingspace

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testClientID     = "app-key-1234"
	testClientSecret = "s3cr3t-client-value"
	testUsername     = "uws-user"
	testPassword     = "p4ssw0rd-value-xyz"
	testAccount      = "0000123456-00001"
)

// fakeTS is a minimal ThingSpace for unit tests: it issues tokens, checks
// them on every M2M call and dispatches to per-route handlers.
type fakeTS struct {
	t   *testing.T
	srv *httptest.Server

	mu            sync.Mutex
	tokenSeq      int
	sessionSeq    int
	validTokens   map[string]bool
	validSessions map[string]bool
	expiresIn     any // value of expires_in; nil omits it
	sameToken     bool
	hits          map[string]int
	bodies        map[string][]string
	headers       map[string][]http.Header
	routes        map[string]http.HandlerFunc

	oauthN atomic.Int64
	loginN atomic.Int64
	delay  time.Duration // added to oauth and login answers

	oauthHook func(w http.ResponseWriter, r *http.Request) bool
	loginHook func(w http.ResponseWriter, r *http.Request) bool
}

func newFake(t *testing.T) *fakeTS {
	f := &fakeTS{
		t:             t,
		validTokens:   map[string]bool{},
		validSessions: map[string]bool{},
		expiresIn:     3600,
		hits:          map[string]int{},
		bodies:        map[string][]string{},
		headers:       map[string][]http.Header{},
		routes:        map[string]http.HandlerFunc{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTS) route(method, path string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[method+" "+path] = h
}

func (f *fakeTS) hitCount(method, path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[method+" "+path]
}

func (f *fakeTS) lastBody(method, path string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bodies[method+" "+path]
	if len(b) == 0 {
		return ""
	}
	return b[len(b)-1]
}

func (f *fakeTS) lastHeader(method, path string) http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.headers[method+" "+path]
	if len(h) == 0 {
		return nil
	}
	return h[len(h)-1]
}

// forgetTokens makes the gateway refuse every Bearer issued so far.
func (f *fakeTS) forgetTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.validTokens = map[string]bool{}
}

// forgetSessions makes every session issued so far "expired".
func (f *fakeTS) forgetSessions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.validSessions = map[string]bool{}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func m2mError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errorCode": code, "errorMessage": msg})
}

func gatewayFault(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"fault": map[string]string{
		"code": code, "message": msg, "description": "Access failure for API: /m2m/v1, version: v1.",
	}})
}

func (f *fakeTS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Method + " " + r.URL.Path
	f.mu.Lock()
	f.hits[key]++
	f.bodies[key] = append(f.bodies[key], string(body))
	f.headers[key] = append(f.headers[key], r.Header.Clone())
	f.mu.Unlock()
	r.Body = io.NopCloser(strings.NewReader(string(body)))

	switch r.URL.Path {
	case pathOAuthToken:
		f.oauthN.Add(1)
		time.Sleep(f.delay)
		if f.oauthHook != nil && f.oauthHook(w, r) {
			return
		}
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(testClientID+":"+testClientSecret))
		if r.Header.Get("Authorization") != want {
			writeJSON(
				w,
				http.StatusUnauthorized,
				map[string]string{"error": "invalid_client", "error_description": "Client authentication failed"},
			)
			return
		}
		f.mu.Lock()
		if !f.sameToken || f.tokenSeq == 0 {
			f.tokenSeq++
		}
		tok := fmt.Sprintf("access-token-%04d", f.tokenSeq)
		f.validTokens[tok] = true
		exp := f.expiresIn
		f.mu.Unlock()
		ans := map[string]any{"access_token": tok, "token_type": "Bearer", "scope": "ts.m2m"}
		if exp != nil {
			ans["expires_in"] = exp
		}
		writeJSON(w, http.StatusOK, ans)
		return
	case pathLogin:
		f.loginN.Add(1)
		time.Sleep(f.delay)
		if !f.bearerOK(r) {
			gatewayFault(w, http.StatusUnauthorized, "900901", "Invalid Credentials")
			return
		}
		if f.loginHook != nil && f.loginHook(w, r) {
			return
		}
		var creds struct{ Username, Password string }
		_ = json.Unmarshal(body, &creds)
		if creds.Username != testUsername || creds.Password != testPassword {
			m2mError(
				w,
				http.StatusBadRequest,
				"UnifiedWebService.REQUEST_FAILED.InvalidCredentials",
				"Invalid username or password",
			)
			return
		}
		f.mu.Lock()
		f.sessionSeq++
		s := fmt.Sprintf("session-%04d-bcce3ea6-fe4f-4952", f.sessionSeq)
		f.validSessions[s] = true
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"sessionToken": s})
		return
	}

	if !f.bearerOK(r) {
		gatewayFault(w, http.StatusUnauthorized, "900901", "Invalid Credentials")
		return
	}
	f.mu.Lock()
	sessOK := f.validSessions[r.Header.Get("VZ-M2M-Token")]
	h := f.routes[key]
	f.mu.Unlock()
	if !sessOK {
		m2mError(
			w,
			http.StatusBadRequest,
			"UnifiedWebService.REQUEST_FAILED.SessionToken.Expired",
			"Session token expired",
		)
		return
	}
	if r.URL.Path == pathLogout {
		f.mu.Lock()
		delete(f.validSessions, r.Header.Get("VZ-M2M-Token"))
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"sessionToken": r.Header.Get("VZ-M2M-Token")})
		return
	}
	if h == nil {
		gatewayFault(w, http.StatusBadRequest, "900906", "No matching resource found for given API Request")
		return
	}
	h(w, r)
}

func (f *fakeTS) bearerOK(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	defer f.mu.Unlock()
	return ok && f.validTokens[tok]
}

// recorder collects Observer exchanges and Limiter calls.
type recorder struct {
	mu        sync.Mutex
	exchanges []Exchange
	waits     map[string]int
	throttled []time.Duration
	waitErr   error
}

func (r *recorder) observe(_ context.Context, x Exchange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exchanges = append(r.exchanges, x)
}

func (r *recorder) Wait(_ context.Context, op string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waits == nil {
		r.waits = map[string]int{}
	}
	r.waits[op]++
	return r.waitErr
}

func (r *recorder) Throttled(_ context.Context, _ string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.throttled = append(r.throttled, d)
}

func (r *recorder) all() []Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Exchange(nil), r.exchanges...)
}

func (r *recorder) waitCount(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waits[op]
}

func testConfig(baseURL string, rec *recorder) Config {
	cfg := Config{
		BaseURL:      baseURL,
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		Username:     testUsername,
		Password:     testPassword,
		AccountName:  testAccount,
		HTTPTimeout:  2 * time.Second,
	}
	if rec != nil {
		cfg.Observer = rec.observe
		cfg.Limiter = rec
	}
	return cfg
}

// fastRetries shrinks transport back-off so tests stay quick.
func fastRetries(c *Client) {
	c.retryWaitMin, c.retryWaitMax = time.Millisecond, 5*time.Millisecond
	c.rc.RetryWaitMin, c.rc.RetryWaitMax = c.retryWaitMin, c.retryWaitMax
}

func newTestClient(t *testing.T, f *fakeTS, rec *recorder, mods ...func(*Config)) *Client {
	t.Helper()
	cfg := testConfig(f.srv.URL, rec)
	for _, m := range mods {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	fastRetries(c)
	return c
}

// settableRoute answers method path with status and body until the
// returned func sets another answer.
func (f *fakeTS) settableRoute(method, path string, status int, body string) func(status int, body string) {
	var mu sync.Mutex
	f.route(method, path, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
	return func(s int, b string) {
		mu.Lock()
		defer mu.Unlock()
		status, body = s, b
	}
}

// failFirstLogins answers the first n logins with fail; later ones get
// the fake's normal login.
func (f *fakeTS) failFirstLogins(n int, fail func(http.ResponseWriter)) {
	var left atomic.Int64
	left.Store(int64(n))
	f.loginHook = func(w http.ResponseWriter, _ *http.Request) bool {
		if left.Add(-1) < 0 {
			return false
		}
		fail(w)
		return true
	}
}

func okRequestID(id string) http.HandlerFunc {
	return answerJSON(http.StatusOK, map[string]string{"requestId": id})
}

// answerJSON answers every request with status and v as JSON.
func answerJSON(status int, v any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, status, v) }
}

func oneDevice() []DeviceRef {
	return []DeviceRef{ICCIDRef("89148000000000000001", "990000000000001")}
}

// fakeClock is a settable clock for token-expiry tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
