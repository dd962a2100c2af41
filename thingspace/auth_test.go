package thingspace

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAuthStagesAndHeaders(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathActivate, okRequestID("req-1"))
	c := newTestClient(t, f, nil)

	id, err := c.Activate(
		context.Background(),
		ActivateRequest{Devices: oneDevice(), ServicePlan: "m2m_4G", MdnZipCode: "98801"},
	)
	require.NoError(t, err)
	assert.Equal(t, "req-1", id)

	h := f.lastHeader(http.MethodPost, pathOAuthToken)
	assert.Equal(
		t,
		"Basic "+base64.StdEncoding.EncodeToString([]byte(testClientID+":"+testClientSecret)),
		h.Get("Authorization"),
	)
	assert.Equal(t, "application/x-www-form-urlencoded", h.Get("Content-Type"))
	assert.Equal(t, "grant_type=client_credentials", f.lastBody(http.MethodPost, pathOAuthToken))

	h = f.lastHeader(http.MethodPost, pathLogin)
	assert.Equal(t, "Bearer access-token-0001", h.Get("Authorization"))
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	var creds map[string]string
	require.NoError(t, json.Unmarshal([]byte(f.lastBody(http.MethodPost, pathLogin)), &creds))
	assert.Equal(t, map[string]string{"username": testUsername, "password": testPassword}, creds)

	h = f.lastHeader(http.MethodPost, pathActivate)
	assert.Equal(t, "Bearer access-token-0001", h.Get("Authorization"))
	assert.True(t, strings.HasPrefix(h.Get("VZ-M2M-Token"), "session-0001"))
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	assert.Equal(t, "application/json", h.Get("Accept"))
	var body map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.lastBody(http.MethodPost, pathActivate)), &body))
	assert.Equal(t, testAccount, body["accountName"], "empty AccountName is filled from Config")
	assert.Equal(t, "m2m_4G", body["servicePlan"])
}

func TestTokensReusedAcrossCalls(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathSuspend, okRequestID("r"))
	c := newTestClient(t, f, nil)
	for range 5 {
		suspendOne(t, c)
	}
	assertAuthCalls(t, f, 1, 1)
	assert.Equal(t, 5, f.hitCount(http.MethodPost, pathSuspend))
}

func TestOAuthRefreshedBeforeExpiry(t *testing.T) {
	f := newFake(t)
	f.expiresIn = 600
	f.route(http.MethodPost, pathSuspend, okRequestID("r"))
	c, clk := newClockedClient(t, f, func(cfg *Config) { cfg.RefreshBefore = 2 * time.Minute })

	suspendOne(t, c)
	clk.Advance(7*time.Minute + 59*time.Second) // still outside the 2-minute margin
	suspendOne(t, c)
	assert.EqualValues(t, 1, f.oauthN.Load())

	clk.Advance(2 * time.Second) // inside the margin: refresh before expiry
	suspendOne(t, c)
	assert.EqualValues(t, 2, f.oauthN.Load())
	assert.Equal(t, "Bearer access-token-0002", f.lastHeader(http.MethodPost, pathSuspend).Get("Authorization"))
	assert.EqualValues(t, 1, f.loginN.Load(), "a new OAuth token does not need a new session")
}

func TestOAuthShortTTLAndMissingExpiresIn(t *testing.T) {
	t.Run("short ttl: margin capped at half the lifetime", func(t *testing.T) {
		f := newFake(t)
		f.expiresIn = 2
		f.route(http.MethodPost, pathSuspend, okRequestID("r"))
		c, clk := newClockedClient(t, f) // RefreshBefore 5m > TTL
		for range 3 {
			suspendOne(t, c)
		}
		assert.EqualValues(t, 1, f.oauthN.Load(), "token reused within its first half-life")
		clk.Advance(1500 * time.Millisecond)
		suspendOne(t, c)
		assert.EqualValues(t, 2, f.oauthN.Load())
	})
	t.Run("missing expires_in means one hour", func(t *testing.T) {
		f := newFake(t)
		f.expiresIn = nil
		f.route(http.MethodPost, pathSuspend, okRequestID("r"))
		c, clk := newClockedClient(t, f)
		suspendOne(t, c)
		clk.Advance(54 * time.Minute)
		suspendOne(t, c)
		assert.EqualValues(t, 1, f.oauthN.Load())
		clk.Advance(2 * time.Minute)
		suspendOne(t, c)
		assert.EqualValues(t, 2, f.oauthN.Load())
	})
	t.Run("same token handed back is used until it expires", func(t *testing.T) {
		f := newFake(t)
		f.expiresIn = 600
		f.sameToken = true
		f.route(http.MethodPost, pathSuspend, okRequestID("r"))
		c, clk := newClockedClient(t, f)
		suspendOne(t, c)
		clk.Advance(6 * time.Minute) // within the 5-minute margin
		for range 3 {
			suspendOne(t, c)
		}
		assert.EqualValues(t, 2, f.oauthN.Load(), "one early refresh, not one per call")
	})
}

// TestRenewOnceOnExpiredCredential: a credential the server stops honouring
// is renewed once and the call resent: a new OAuth token when the gateway
// answers 900901 to the cached Bearer, a new session when it expired.
func TestRenewOnceOnExpiredCredential(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		forget               func(*fakeTS)
		wantOAuth, wantLogin int64
	}{
		{"ReauthOnceOnGatewayFault", (*fakeTS).forgetTokens, 2, 1},
		{"ReloginOnceOnSessionExpired", (*fakeTS).forgetSessions, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.route(http.MethodPost, pathRestore, okRequestID("r"))
			c := newTestClient(t, f, nil)
			restoreOne(t, c)

			tc.forget(f)
			restoreOne(t, c)
			assertAuthCalls(t, f, tc.wantOAuth, tc.wantLogin)
			assert.Equal(t, 3, f.hitCount(http.MethodPost, pathRestore))
		})
	}
}

func TestSecondExpirySurfacesAsSessionExpired(t *testing.T) {
	for _, tc := range []struct {
		name      string
		handler   http.HandlerFunc
		wantOAuth int64
		wantLogin int64
	}{
		{"gateway 900901 twice", func(w http.ResponseWriter, r *http.Request) {
			gatewayFault(w, http.StatusUnauthorized, "900901", "Invalid Credentials")
		}, 2, 1},
		{"session expired twice", func(w http.ResponseWriter, r *http.Request) {
			m2mError(w, http.StatusBadRequest, "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired", "expired")
		}, 1, 2},
		{"session invalid twice, no prefix", func(w http.ResponseWriter, r *http.Request) {
			m2mError(w, http.StatusBadRequest, "INPUT_INVALID.SessionToken.Invalid", "bad")
		}, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.route(http.MethodPost, pathActivate, tc.handler)
			c := newTestClient(t, f, nil)
			_, err := c.Activate(context.Background(), ActivateRequest{Devices: oneDevice()})
			e, ok := AsError(err)
			require.True(t, ok, "%v", err)
			assert.Equal(t, KindSessionExpired, e.Kind)
			assert.True(t, e.Retryable())
			assert.Equal(t, 2, f.hitCount(http.MethodPost, pathActivate), "resent exactly once")
			assert.Equal(t, tc.wantOAuth, f.oauthN.Load())
			assert.Equal(t, tc.wantLogin, f.loginN.Load())
		})
	}
}

func TestInvalidCredentialsAtOAuthAreLatched(t *testing.T) {
	f := newFake(t)
	rec := &recorder{}
	c := newTestClient(t, f, rec, func(cfg *Config) { cfg.ClientSecret = "wrong-secret-value" })
	ctx := context.Background()
	_, err := c.Activate(ctx, ActivateRequest{Devices: oneDevice()})
	e, ok := AsError(err)
	require.True(t, ok)
	assert.Equal(t, KindInvalidCredentials, e.Kind)
	assert.False(t, e.Retryable())
	assert.Equal(t, OpOAuth, e.Op)
	assert.Equal(t, "invalid_client", e.Code)
	assert.EqualValues(t, 1, f.oauthN.Load(), "never retried by the transport")

	for range 3 {
		_, err2 := c.ListDevices(ctx, ListRequest{})
		assert.Same(t, e, err2.(*Error))
	}
	assert.Same(t, e, c.CheckAuth(ctx).(*Error))
	assert.EqualValues(t, 1, f.oauthN.Load(), "latched: no further request")
	assert.EqualValues(t, 0, f.loginN.Load())
	assert.Equal(t, 1, rec.waitCount(OpOAuth))
}

func TestInvalidCredentialsAtLoginAreLatched(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook func(w http.ResponseWriter, r *http.Request) bool
	}{
		{"wrong password (REQUEST_FAILED.InvalidCredentials)", nil}, // the fake's default answer
		{"account locked", func(w http.ResponseWriter, r *http.Request) bool {
			m2mError(w, http.StatusBadRequest, "UnifiedWebService.REQUEST_FAILED.AccountLocked", "locked")
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.loginHook = tc.hook
			f.delay = 20 * time.Millisecond
			c := newTestClient(t, f, nil, func(cfg *Config) {
				if tc.hook == nil {
					cfg.Password = "wrong-password-value"
				}
			})
			ctx := context.Background()
			errs := concurrently(10, func(int) error {
				_, err := c.Suspend(ctx, ActionRequest{Devices: oneDevice()})
				return err
			})
			for _, err := range errs {
				assert.Equal(t, KindInvalidCredentials, KindOf(err), "%v", err)
				assert.False(t, IsRetryable(err))
			}
			_, err := c.Suspend(ctx, ActionRequest{Devices: oneDevice()})
			assert.True(t, IsInvalidCredentials(err))
			assert.Equal(t, OpLogin, err.(*Error).Op)
			assert.EqualValues(t, 1, f.loginN.Load(), "exactly one login attempt ever")
			assert.Equal(t, 0, f.hitCount(http.MethodPost, pathSuspend))
		})
	}
}

// Only a credential code latches: a refusal without one (a gateway page,
// a code that says nothing of the password) fails the call, unretried, and
// the next call tries again rather than stopping every worker for good.
func TestLoginRefusalWithoutCredentialCodeIsNotLatched(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook func(w http.ResponseWriter, r *http.Request) bool
	}{
		{"unknown 401 code", func(w http.ResponseWriter, r *http.Request) bool {
			m2mError(w, http.StatusUnauthorized, "SomethingElse", "no")
			return true
		}},
		{"403 without JSON", func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("<html>Forbidden</html>"))
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.loginHook = tc.hook
			c := newTestClient(t, f, nil)
			ctx := context.Background()
			for i := range 2 {
				_, err := c.Suspend(ctx, ActionRequest{Devices: oneDevice()})
				assert.Equal(t, KindInvalidCredentials, KindOf(err), "%v", err)
				assert.False(t, IsRetryable(err))
				assert.EqualValues(t, i+1, f.loginN.Load(), "not latched: each call logs in once")
			}
			r, err := c.CredentialRefusal(ctx)
			require.NoError(t, err)
			assert.Nil(t, r)
			assert.Equal(t, 0, f.hitCount(http.MethodPost, pathSuspend))
		})
	}
}

func TestLogin5xxIsRetriedAndNotLatched(t *testing.T) {
	f := newFake(t)
	f.failFirstLogins(3, func(w http.ResponseWriter) {
		m2mError(w, http.StatusInternalServerError, "SYSTEM_ERROR.Internal", "oops")
	})
	f.route(http.MethodPost, pathSuspend, okRequestID("r"))
	c := newTestClient(t, f, nil) // MaxRetries 2 → 3 attempts
	_, err := c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
	assert.Equal(t, KindTemporary, KindOf(err))
	assert.EqualValues(t, 3, f.loginN.Load())
	_, err = c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
	require.NoError(t, err, "a server error is not a credential refusal")
	assert.EqualValues(t, 4, f.loginN.Load())
}

func TestLoginGatewayExpiryRefreshesOAuthOnce(t *testing.T) {
	f := newFake(t)
	f.failFirstLogins(1, func(w http.ResponseWriter) {
		gatewayFault(w, http.StatusUnauthorized, "900901", "Invalid Credentials")
	})
	c := newTestClient(t, f, nil)
	require.NoError(t, c.CheckAuth(context.Background()))
	assertAuthCalls(t, f, 2, 2)
}

func TestConcurrentFirstCallsShareOneAuth(t *testing.T) {
	f := newFake(t)
	f.delay = 50 * time.Millisecond
	f.route(http.MethodPost, pathList, answerJSON(http.StatusOK, map[string]any{"hasMoreData": false, "devices": []any{}}))
	f.route(http.MethodPost, pathActivate, okRequestID("r"))
	rec := &recorder{}
	c := newTestClient(t, f, rec)
	errs := concurrently(50, func(i int) error {
		var err error
		if i%2 == 0 {
			_, err = c.ListDevices(context.Background(), ListRequest{})
		} else {
			_, err = c.Activate(context.Background(), ActivateRequest{Devices: oneDevice()})
		}
		return err
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	assertAuthCalls(t, f, 1, 1)
	assert.Equal(t, 1, rec.waitCount(OpOAuth))
	assert.Equal(t, 1, rec.waitCount(OpLogin))
}

func TestCallerCancellationDoesNotBreakSharedLogin(t *testing.T) {
	f := newFake(t)
	f.delay = 100 * time.Millisecond
	f.route(http.MethodPost, pathSuspend, okRequestID("r"))
	c := newTestClient(t, f, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := c.CheckAuth(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	suspendOne(t, c)
	assert.EqualValues(t, 1, f.oauthN.Load(), "the flight started by the cancelled caller was reused")
	assert.EqualValues(t, 1, f.loginN.Load())
}

func TestLogout(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathSuspend, okRequestID("r"))
	c := newTestClient(t, f, nil)
	ctx := context.Background()
	require.NoError(t, c.Logout(ctx), "no session: nothing to do")
	assert.Equal(t, 0, f.hitCount(http.MethodPost, pathLogout))

	require.NoError(t, c.CheckAuth(ctx))
	require.NoError(t, c.Logout(ctx))
	h := f.lastHeader(http.MethodPost, pathLogout)
	assert.Equal(t, "Bearer access-token-0001", h.Get("Authorization"))
	assert.Equal(t, "session-0001-bcce3ea6-fe4f-4952", h.Get("VZ-M2M-Token"))

	suspendOne(t, c)
	assert.EqualValues(t, 2, f.loginN.Load(), "next call logs in again")
	assert.EqualValues(t, 1, f.oauthN.Load())

	f.forgetSessions()
	require.NoError(t, c.Logout(ctx), "an already expired session counts as ended")
}

func TestNewValidatesConfig(t *testing.T) {
	base := testConfig("http://127.0.0.1:1", nil)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"client id", func(c *Config) { c.ClientID = "" }, "ClientID"},
		{"client secret", func(c *Config) { c.ClientSecret = "" }, "ClientSecret"},
		{"username", func(c *Config) { c.Username = "" }, "Username"},
		{"password", func(c *Config) { c.Password = " " }, "Password"},
		{"bad url", func(c *Config) { c.BaseURL = "ftp://x" }, "BaseURL"},
		{"url with user info", func(c *Config) { c.BaseURL = "https://u:" + testPassword + "@host" }, "BaseURL"},
		{"retries", func(c *Config) { c.MaxRetries = 50 }, "MaxRetries"},
		{"timeout", func(c *Config) { c.HTTPTimeout = -1 }, "HTTPTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			_, err := New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), testPassword)
			assert.NotContains(t, err.Error(), testClientSecret)
		})
	}
	cfg := base
	cfg.BaseURL = ""
	cfg.MaxRetries = -1
	c, err := New(cfg)
	require.NoError(t, err)
	assert.Equal(t, DefaultBaseURL, c.cfg.BaseURL)
	assert.Equal(t, 0, c.cfg.MaxRetries)
	assert.Equal(t, DefaultRefreshBefore, c.cfg.RefreshBefore)
}

// newClockedClient is newTestClient on a fake clock that moves only when the
// test advances it.
func newClockedClient(t *testing.T, f *fakeTS, mods ...func(*Config)) (*Client, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	c := newTestClient(t, f, nil, mods...)
	c.now = clk.Now
	return c, clk
}

// suspendOne sends a one-device suspend that must succeed.
func suspendOne(t *testing.T, c *Client) {
	t.Helper()
	_, err := c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
	require.NoError(t, err)
}

// restoreOne sends a one-device restore that must succeed.
func restoreOne(t *testing.T, c *Client) {
	t.Helper()
	_, err := c.Restore(context.Background(), ActionRequest{Devices: oneDevice()})
	require.NoError(t, err)
}

// assertAuthCalls checks how many OAuth tokens and M2M sessions the client
// asked the fake for.
func assertAuthCalls(t *testing.T, f *fakeTS, oauth, login int64) {
	t.Helper()
	assert.EqualValues(t, oauth, f.oauthN.Load(), "OAuth token requests")
	assert.EqualValues(t, login, f.loginN.Load(), "logins")
}
