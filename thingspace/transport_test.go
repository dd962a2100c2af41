package thingspace

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestErrorShapesAreClassifiedByCode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		body      string
		wantKind  ErrorKind
		wantCode  string
		wantShort string
		wantMsg   string
	}{
		{"device not found, prefixed", 400, `{"errorCode":"UnifiedWebService.REQUEST_FAILED.DeviceNotFound","errorMessage":"Device not found"}`,
			KindDeviceNotFound, "UnifiedWebService.REQUEST_FAILED.DeviceNotFound", CodeDeviceNotFound, "Device not found"},
		{"device not found, bare", 400, `{"errorCode":"REQUEST_FAILED.DeviceNotFound","errorMessage":"x"}`,
			KindDeviceNotFound, "REQUEST_FAILED.DeviceNotFound", CodeDeviceNotFound, "x"},
		{"already active", 400, `{"errorCode":"UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive","errorMessage":"Device is already active"}`,
			KindDeviceAlreadyActive, "UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive", CodeDeviceAlreadyActive, "already active"},
		{"invalid state", 400, `{"errorCode":"UnifiedWebService.INPUT_INVALID.DeviceState.Invalid","errorMessage":"state"}`,
			KindInvalidState, "UnifiedWebService.INPUT_INVALID.DeviceState.Invalid", CodeDeviceStateInvalid, "state"},
		{"too many devices", 400, `{"errorCode":"UnifiedWebService.INPUT_INVALID.MaxRequestsExceeded","errorMessage":"too many"}`,
			KindInvalidInput, "UnifiedWebService.INPUT_INVALID.MaxRequestsExceeded", CodeMaxRequestsExceeded, "too many"},
		{"bad identifier", 400, `{"errorCode":"INPUT_INVALID.Device.Identifier.Invalid","errorMessage":"id"}`,
			KindInvalidInput, "INPUT_INVALID.Device.Identifier.Invalid", CodeDeviceIDInvalid, "id"},
		{"device of another account", 400, `{"errorCode":"UnifiedWebService.INPUT_INVALID.Device.Account.Invalid","errorMessage":"The device was not a part of the account specified"}`,
			KindDeviceAccountInvalid, "UnifiedWebService.INPUT_INVALID.Device.Account.Invalid", CodeDeviceAccountInvalid, "not a part of the account"},
		{"account not found", 400, `{"errorCode":"UnifiedWebService.REQUEST_FAILED.AccountNotFound","errorMessage":"no account"}`,
			KindNotFound, "UnifiedWebService.REQUEST_FAILED.AccountNotFound", CodeAccountNotFound, "no account"},
		{"message text is not used", 400, `{"errorCode":"REQUEST_FAILED.Other","errorMessage":"Device not found"}`,
			KindPermanent, "REQUEST_FAILED.Other", "REQUEST_FAILED.Other", "Device not found"},
		{"gateway unknown path", 400, `{"fault":{"code":900906,"message":"No matching resource","description":"bad path"}}`,
			KindPermanent, "900906", "900906", "No matching resource: bad path"},
		{"gateway throttled", 429, `{"fault":{"code":"900800","message":"Message throttled out"}}`,
			KindRateLimited, "900800", "900800", "Message throttled out"},
		{"gateway throttled with 503", 503, `{"fault":{"code":"900800","message":"Message throttled out"}}`,
			KindRateLimited, "900800", "900800", "throttled"},
		{"oauth shape", 400, `{"error":"invalid_request","error_description":"bad"}`,
			KindPermanent, "invalid_request", "invalid_request", "bad"},
		{"server error json", 500, `{"errorCode":"SYSTEM_ERROR.Internal","errorMessage":"boom"}`,
			KindTemporary, "SYSTEM_ERROR.Internal", "SYSTEM_ERROR.Internal", "boom"},
		{"bad gateway html", 502, "<html><body>\n Bad   Gateway </body></html>",
			KindTemporary, "", "", "<html><body> Bad Gateway </body></html>"},
		{"empty 404", 404, "", KindPermanent, "", "", ""},
		{"plain text 400", 400, "invalid request", KindPermanent, "", "", "invalid request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.route(http.MethodPost, pathSuspend, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			rec := &recorder{}
			c := newTestClient(t, f, rec)
			_, err := c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
			e, ok := AsError(err)
			require.True(t, ok, "%v", err)
			assert.Equal(t, OpSuspend, e.Op)
			assert.Equal(t, tc.status, e.HTTPStatus)
			assert.Equal(t, tc.wantKind, e.Kind, e.Kind.String())
			assert.Equal(t, tc.wantCode, e.Code)
			assert.Equal(t, tc.wantShort, e.ShortCode())
			assert.Contains(t, e.Message, tc.wantMsg)
			assert.True(t, e.Sent)
			// A refusal (4xx, a throttling fault) proves nothing was
			// applied; a 5xx other than the gateway's throttling does not.
			mayHave := tc.name == "server error json" || tc.name == "bad gateway html"
			assert.Equal(t, mayHave, e.MayHaveApplied())
			assert.Equal(t, 1, f.hitCount(http.MethodPost, pathSuspend), "a state change is never resent")
			xs := rec.all()
			last := xs[len(xs)-1]
			assert.Equal(t, tc.wantCode, last.Code)
			assert.Equal(t, tc.status, last.StatusCode)
		})
	}
}

func TestRateLimitedRetryAfter(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name       string
		retryAfter string
		min, max   time.Duration
	}{
		{"seconds", "7", 7 * time.Second, 7 * time.Second},
		{"http date", date, 85 * time.Second, 91 * time.Second},
		{"absent", "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.route(http.MethodPost, pathList, func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(http.StatusTooManyRequests)
			})
			rec := &recorder{}
			c := newTestClient(t, f, rec)
			_, err := c.ListDevices(context.Background(), ListRequest{})
			e, ok := AsError(err)
			require.True(t, ok)
			assert.Equal(t, KindRateLimited, e.Kind)
			assert.True(t, e.Retryable())
			assert.GreaterOrEqual(t, e.RetryAfter, tc.min)
			assert.LessOrEqual(t, e.RetryAfter, tc.max)
			assert.Equal(
				t,
				1,
				f.hitCount(http.MethodPost, pathList),
				"429 is not retried by the transport, even for a safe call",
			)
			require.Len(t, rec.throttled, 1)
			assert.Equal(t, e.RetryAfter, rec.throttled[0])
		})
	}
}

func TestServerErrorsRetriedForSafeCallsOnly(t *testing.T) {
	t.Run("list retried until success", func(t *testing.T) {
		f := newFake(t)
		var n atomic.Int32
		f.route(http.MethodPost, pathList, func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) < 3 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"hasMoreData": false, "devices": []any{}})
		})
		rec := &recorder{}
		c := newTestClient(t, f, rec)
		_, err := c.ListDevices(context.Background(), ListRequest{})
		require.NoError(t, err)
		assert.Equal(t, 3, f.hitCount(http.MethodPost, pathList))
		assert.Equal(t, 3, rec.waitCount(OpList), "the limiter is asked before every attempt")
		var attempts []int
		for _, x := range rec.all() {
			if x.Op == OpList {
				attempts = append(attempts, x.Attempt)
			}
		}
		assert.Equal(t, []int{1, 2, 3}, attempts)
	})
	t.Run("list gives up after MaxRetries", func(t *testing.T) {
		f := newFake(t)
		f.route(http.MethodPost, pathList, func(w http.ResponseWriter, r *http.Request) {
			m2mError(w, http.StatusBadGateway, "SYSTEM_ERROR.Gateway", "down")
		})
		c := newTestClient(t, f, nil)
		_, err := c.ListDevices(context.Background(), ListRequest{})
		e, _ := AsError(err)
		require.NotNil(t, e)
		assert.Equal(t, KindTemporary, e.Kind)
		assert.Equal(t, http.StatusBadGateway, e.HTTPStatus)
		assert.Equal(t, 3, f.hitCount(http.MethodPost, pathList))
	})
	t.Run("activate not retried", func(t *testing.T) {
		f := newFake(t)
		f.route(http.MethodPost, pathActivate, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		c := newTestClient(t, f, nil)
		_, err := c.Activate(context.Background(), ActivateRequest{Devices: oneDevice()})
		e, _ := AsError(err)
		require.NotNil(t, e)
		assert.Equal(t, KindTemporary, e.Kind)
		assert.Equal(t, http.StatusServiceUnavailable, e.HTTPStatus)
		assert.True(t, e.Sent)
		assert.True(t, e.MayHaveApplied(), "a 5xx does not say whether the backend applied it")
		assert.Equal(t, 1, f.hitCount(http.MethodPost, pathActivate))
	})
}

func TestTimeoutAfterWrite(t *testing.T) {
	t.Run("activate: sent, ambiguous, not resent", func(t *testing.T) {
		f := newFake(t)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		f.route(http.MethodPost, pathActivate, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-time.After(2 * time.Second):
			}
		})
		rec := &recorder{}
		c := newTestClient(t, f, rec, func(cfg *Config) { cfg.HTTPTimeout = 150 * time.Millisecond })
		require.NoError(t, c.CheckAuth(context.Background()))
		_, err := c.Activate(context.Background(), ActivateRequest{Devices: oneDevice()})
		e, ok := AsError(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, KindTemporary, e.Kind)
		assert.True(t, e.Sent)
		assert.True(t, e.MayHaveApplied())
		assert.Equal(t, 0, e.HTTPStatus)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "timed out")
		assert.Equal(t, 1, f.hitCount(http.MethodPost, pathActivate))
		xs := rec.all()
		assert.NotEmpty(t, xs[len(xs)-1].Err)
	})
	t.Run("list: retried", func(t *testing.T) {
		f := newFake(t)
		f.route(http.MethodPost, pathList, func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(300 * time.Millisecond)
		})
		c := newTestClient(t, f, nil, func(cfg *Config) { cfg.HTTPTimeout = 100 * time.Millisecond })
		require.NoError(t, c.CheckAuth(context.Background()))
		_, err := c.ListDevices(context.Background(), ListRequest{})
		assert.Equal(t, KindTemporary, KindOf(err))
		assert.Equal(t, 3, f.hitCount(http.MethodPost, pathList))
	})
}

// flakyDial fails the first n attempts of one path before any connection is
// obtained, like a refused dial; later attempts go through.
type flakyDial struct {
	next http.RoundTripper
	path string
	mu   sync.Mutex
	n    int
}

func (t *flakyDial) RoundTrip(r *http.Request) (*http.Response, error) {
	t.mu.Lock()
	fail := r.URL.Path == t.path && t.n > 0
	if fail {
		t.n--
	}
	t.mu.Unlock()
	if fail {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return t.next.RoundTrip(r)
}

// resetAfterConnect reports a connection, then fails as if reset after
// writing.
type resetAfterConnect struct {
	next http.RoundTripper
	path string
}

func (t *resetAfterConnect) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path != t.path {
		return t.next.RoundTrip(r)
	}
	if tr := httptrace.ContextClientTrace(r.Context()); tr != nil && tr.GotConn != nil {
		tr.GotConn(httptrace.GotConnInfo{})
	}
	if r.Body != nil {
		r.Body.Close()
	}
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

func TestStateChangeRetriedOnlyWhenCertainlyNotSent(t *testing.T) {
	t.Run("refused dial is retried", func(t *testing.T) {
		f := newFake(t)
		f.route(http.MethodPost, pathActivate, okRequestID("req-9"))
		rt := &flakyDial{next: http.DefaultTransport, path: pathActivate, n: 2}
		rec := &recorder{}
		c := newTestClient(t, f, rec, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: rt} })
		id, err := c.Activate(context.Background(), ActivateRequest{Devices: oneDevice()})
		require.NoError(t, err)
		assert.Equal(t, "req-9", id)
		assert.Equal(t, 1, f.hitCount(http.MethodPost, pathActivate))
		assert.Equal(t, 3, rec.waitCount(OpActivate))
	})
	t.Run("refused dial exhausts retries: not sent", func(t *testing.T) {
		f := newFake(t)
		rt := &flakyDial{next: http.DefaultTransport, path: pathActivate, n: 10}
		c := newTestClient(t, f, nil, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: rt} })
		_, err := c.Activate(context.Background(), ActivateRequest{Devices: oneDevice()})
		e, _ := AsError(err)
		require.NotNil(t, e)
		assert.False(t, e.Sent)
		assert.False(t, e.MayHaveApplied())
		assert.True(t, errors.Is(err, syscall.ECONNREFUSED))
		assert.Equal(t, 7, rt.n, "three attempts")
	})
	t.Run("reset after connect is not retried", func(t *testing.T) {
		f := newFake(t)
		rt := &resetAfterConnect{next: http.DefaultTransport, path: pathDeactivate}
		rec := &recorder{}
		c := newTestClient(t, f, rec, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: rt} })
		_, err := c.Deactivate(context.Background(), DeactivateRequest{Devices: oneDevice()})
		e, _ := AsError(err)
		require.NotNil(t, e)
		assert.True(t, e.Sent)
		assert.True(t, e.MayHaveApplied())
		assert.Equal(t, 1, rec.waitCount(OpDeactivate))
	})
	t.Run("reset after connect is retried for list", func(t *testing.T) {
		f := newFake(t)
		rt := &resetAfterConnect{next: http.DefaultTransport, path: pathList}
		rec := &recorder{}
		c := newTestClient(t, f, rec, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: rt} })
		_, err := c.ListDevices(context.Background(), ListRequest{})
		require.Error(t, err)
		assert.Equal(t, 3, rec.waitCount(OpList))
	})
}

func TestLimiter(t *testing.T) {
	t.Run("asked before auth calls too", func(t *testing.T) {
		f := newFake(t)
		f.route(http.MethodGet, "/api/m2m/v1/callbacks/"+testAccount, answerJSON(http.StatusOK, []any{}))
		rec := &recorder{}
		c := newTestClient(t, f, rec)
		_, err := c.ListCallbacks(context.Background(), "")
		require.NoError(t, err)
		assert.Equal(t, 1, rec.waitCount(OpOAuth))
		assert.Equal(t, 1, rec.waitCount(OpLogin))
		assert.Equal(t, 1, rec.waitCount(OpCallbacks))
	})
	t.Run("refusal is returned without a request", func(t *testing.T) {
		f := newFake(t)
		f.route(http.MethodPost, pathActivate, okRequestID("r"))
		rec := &recorder{}
		c := newTestClient(t, f, rec)
		require.NoError(t, c.CheckAuth(context.Background()))
		rec.waitErr = &Error{Kind: KindRateLimited, RetryAfter: 40 * time.Second, Message: "pacing"}
		_, err := c.Activate(context.Background(), ActivateRequest{Devices: oneDevice()})
		e, _ := AsError(err)
		require.NotNil(t, e)
		assert.Equal(t, KindRateLimited, e.Kind)
		assert.Equal(t, 40*time.Second, e.RetryAfter)
		assert.Equal(t, OpActivate, e.Op)
		assert.False(t, e.Sent)
		assert.Equal(t, 0, f.hitCount(http.MethodPost, pathActivate))
		assert.Equal(t, 1, rec.waitCount(OpActivate), "not retried")
	})
	t.Run("context error from limiter", func(t *testing.T) {
		f := newFake(t)
		rec := &recorder{waitErr: context.Canceled}
		c := newTestClient(t, f, rec)
		err := c.CheckAuth(context.Background())
		require.ErrorIs(t, err, context.Canceled)
		assert.EqualValues(t, 0, f.oauthN.Load())
		assert.False(t, IsInvalidCredentials(err))
	})
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	f := newFake(t)
	var other atomic.Int32
	elsewhere := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { other.Add(1) })
	srv2 := newPlainServer(t, elsewhere)
	f.route(http.MethodPost, pathSuspend, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv2+"/steal", http.StatusTemporaryRedirect)
	})
	c := newTestClient(t, f, nil)
	_, err := c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
	assert.Equal(t, KindPermanent, KindOf(err))
	assert.EqualValues(t, 0, other.Load(), "VZ-M2M-Token must not travel to another host")
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	assert.Equal(t, 3*time.Second, parseRetryAfter("3", now))
	assert.Equal(t, 1500*time.Millisecond, parseRetryAfter(" 1.5 ", now))
	assert.Equal(t, 30*time.Second, parseRetryAfter(now.Add(30*time.Second).Format(http.TimeFormat), now))
	assert.Equal(t, time.Duration(0), parseRetryAfter(now.Add(-time.Minute).Format(http.TimeFormat), now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("soon", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("-4", now))
}

func TestBackoffIsBounded(t *testing.T) {
	c, err := New(testConfig("http://127.0.0.1:1", nil))
	require.NoError(t, err)
	for n := range 20 {
		d := c.backoff(retryWaitMin, retryWaitMax, n, nil)
		assert.GreaterOrEqual(t, d, retryWaitMin)
		assert.LessOrEqual(t, d, retryWaitMax)
	}
	resp := &http.Response{Header: http.Header{"Retry-After": {"3600"}}}
	assert.Equal(
		t,
		retryWaitMax,
		c.backoff(retryWaitMin, retryWaitMax, 0, resp),
		"a long Retry-After is Temporal's business",
	)
}

// Whether a failed call may have changed something at ThingSpace, answer
// by answer: only a refusal proves that nothing was applied; any 5xx (the
// gateway's 502/504 after the backend applied the change, a 500 after part
// of it) and an unreadable 2xx may have, as may a state change answered
// by no one (TestTimeoutAfterWrite).
func TestMayHaveApplied(t *testing.T) {
	html := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			_, _ = fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", status, http.StatusText(status))
		}
	}
	for _, tc := range []struct {
		name    string
		answer  http.HandlerFunc
		mayHave bool
	}{
		{"refusal with ThingSpace's error body", func(w http.ResponseWriter, r *http.Request) {
			m2mError(w, 400, "UnifiedWebService.REQUEST_FAILED.DeviceNotFound", "Device not found")
		}, false},
		{"429", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			gatewayFault(w, 429, CodeGatewayThrottled, "Message throttled out")
		}, false},
		{"gateway throttling fault with 503", func(w http.ResponseWriter, r *http.Request) {
			gatewayFault(w, 503, CodeGatewayThrottled, "Message throttled out")
		}, false},
		{"bearer token refused twice", func(w http.ResponseWriter, r *http.Request) {
			gatewayFault(w, 401, CodeGatewayInvalidCreds, "Invalid Credentials")
		}, false},
		{"session refused twice", func(w http.ResponseWriter, r *http.Request) {
			m2mError(w, 400, "UnifiedWebService."+CodeSessionExpired, "session expired")
		}, false},
		{"bare 404", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }, false},
		{"500 with ThingSpace's error body", func(w http.ResponseWriter, r *http.Request) {
			m2mError(w, 500, "UnifiedWebService.REQUEST_FAILED.UnexpectedError", "Internal server error")
		}, true},
		{"502 HTML page", html(502), true},
		{"504 HTML page", html(504), true},
		{"503 backend fault", func(w http.ResponseWriter, r *http.Request) {
			gatewayFault(w, 503, "101503", "Runtime Error")
		}, true},
		{"unreadable 200", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"requestId":`))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.route(http.MethodPost, pathSuspend, tc.answer)
			c := newTestClient(t, f, nil)
			_, err := c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
			e, ok := AsError(err)
			require.True(t, ok, "%v", err)
			assert.Equal(t, tc.mayHave, e.MayHaveApplied(), "%v", e)
		})
	}

	t.Run("a call that changes nothing never has", func(t *testing.T) {
		f := newFake(t)
		f.route(http.MethodPost, pathList, html(502))
		c := newTestClient(t, f, nil)
		_, err := c.ListDevices(context.Background(), ListRequest{})
		e, ok := AsError(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, 502, e.HTTPStatus)
		assert.False(t, e.MayHaveApplied())
	})
	t.Run("new login failing after a refused session", func(t *testing.T) {
		f := newFake(t)
		f.route(http.MethodPost, pathSuspend, func(w http.ResponseWriter, r *http.Request) {
			m2mError(w, 400, CodeSessionExpired, "session expired")
		})
		var logins atomic.Int64
		f.loginHook = func(w http.ResponseWriter, _ *http.Request) bool {
			if logins.Add(1) == 1 {
				return false
			}
			html(502)(w, nil)
			return true
		}
		c := newTestClient(t, f, nil)
		_, err := c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
		e, ok := AsError(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, OpLogin, e.Op)
		assert.Equal(t, 502, e.HTTPStatus)
		assert.False(t, e.MayHaveApplied(), "the suspend itself was refused")
		assert.Equal(t, 1, f.hitCount(http.MethodPost, pathSuspend))
	})
}
