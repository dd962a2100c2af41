package thingspacesim

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestOAuthSameTokenUntilExpiry(t *testing.T) {
	cfg := fastConfig()
	cfg.OAuthTokenTTL = 300 * time.Millisecond
	h := newHarness(t, cfg)

	status, body := h.tokenRequest(DefaultClientID, DefaultClientSecret, "client_credentials")
	if status != http.StatusOK {
		t.Fatalf("token: %d %s", status, body)
	}
	first := decodeAs[tokenResponse](t, body)
	if first.TokenType != "Bearer" || first.ExpiresIn != 1 || first.Scope == "" || first.AccessToken == "" {
		t.Fatalf("token response %+v", first)
	}
	_, body = h.tokenRequest(DefaultClientID, DefaultClientSecret, "client_credentials")
	if again := decodeAs[tokenResponse](t, body); again.AccessToken != first.AccessToken {
		t.Fatal("a second request within the TTL returned a different token")
	}

	time.Sleep(350 * time.Millisecond)
	status, _, body = h.do(
		http.MethodPost,
		m2mBase+"/session/login",
		loginRequest{DefaultUsername, DefaultPassword},
		bearer(first.AccessToken),
	)
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayInvalidCredential)

	_, body = h.tokenRequest(DefaultClientID, DefaultClientSecret, "client_credentials")
	if fresh := decodeAs[tokenResponse](t, body); fresh.AccessToken == first.AccessToken {
		t.Fatal("an expired token was issued again")
	}
	if st := h.sim.Stats(0); st.OAuthTokensIssued != 3 {
		t.Fatalf("OAuthTokensIssued = %d, want 3", st.OAuthTokensIssued)
	}
}

func TestOAuthExpiresInCountsDown(t *testing.T) {
	h := newHarness(t, fastConfig()) // default TTL 1h
	_, body := h.tokenRequest(DefaultClientID, DefaultClientSecret, "client_credentials")
	if got := decodeAs[tokenResponse](t, body).ExpiresIn; got != 3600 {
		t.Fatalf("expires_in = %d, want 3600", got)
	}
	h.sim.mu.Lock()
	h.sim.auth.tokenExpiry = h.sim.auth.tokenExpiry.Add(-10 * time.Minute)
	h.sim.mu.Unlock()
	_, body = h.tokenRequest(DefaultClientID, DefaultClientSecret, "client_credentials")
	if got := decodeAs[tokenResponse](t, body).ExpiresIn; got != 3000 {
		t.Fatalf("expires_in = %d, want 3000", got)
	}
}

func TestOAuthErrors(t *testing.T) {
	h := newHarness(t, fastConfig())
	cases := []struct {
		name, id, secret, grant string
		status                  int
		code                    string
	}{
		{"bad secret", DefaultClientID, "wrong", "client_credentials", 401, "invalid_client"},
		{"unknown client", "someone", DefaultClientSecret, "client_credentials", 401, "invalid_client"},
		{"no basic auth", "", "", "client_credentials", 401, "invalid_client"},
		{"bad grant", DefaultClientID, DefaultClientSecret, "password", 400, "unsupported_grant_type"},
		{"missing grant", DefaultClientID, DefaultClientSecret, "", 400, "invalid_request"},
	}
	for _, c := range cases {
		status, body := h.tokenRequest(c.id, c.secret, c.grant)
		e := decodeAs[oauthError](t, body)
		if status != c.status || e.Error != c.code || e.ErrorDescription == "" {
			t.Errorf("%s: got %d %s, want %d %s", c.name, status, body, c.status, c.code)
		}
		if strings.Contains(string(body), DefaultClientSecret) {
			t.Errorf("%s: answer echoes the secret", c.name)
		}
	}
}

func TestOAuthRevoke(t *testing.T) {
	h := newHarness(t, fastConfig())
	tok := h.oauth()
	req, _ := http.NewRequest(
		http.MethodPost,
		h.srv.URL+"/api/ts/v1/oauth2/revoke",
		strings.NewReader("grant_type=client_credentials&token="+tok),
	)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(DefaultClientID, DefaultClientSecret)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("RevokedAccessToken") != tok {
		t.Fatalf("revoke: %d header %q", resp.StatusCode, resp.Header.Get("RevokedAccessToken"))
	}
	status, _, body := h.do(
		http.MethodPost,
		m2mBase+"/session/login",
		loginRequest{DefaultUsername, DefaultPassword},
		bearer(tok),
	)
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayInvalidCredential)
	if h.oauth() == tok {
		t.Fatal("the revoked token was issued again")
	}
}

func TestBearerChecks(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.authenticate()
	// login
	status, _, body := h.do(
		http.MethodPost,
		m2mBase+"/session/login",
		loginRequest{DefaultUsername, DefaultPassword},
		nil,
	)
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayMissingCredential)
	status, _, body = h.do(
		http.MethodPost,
		m2mBase+"/session/login",
		loginRequest{DefaultUsername, DefaultPassword},
		bearer("not-a-token"),
	)
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayInvalidCredential)
	// any other M2M route, with a valid session
	hdr := http.Header{"VZ-M2M-Token": {h.session}}
	status, _, body = h.do(http.MethodPost, m2mBase+"/devices/actions/list", map[string]any{}, hdr)
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayMissingCredential)
	hdr.Set("Authorization", "Bearer nope")
	status, _, body = h.do(http.MethodPost, m2mBase+"/devices/actions/list", map[string]any{}, hdr)
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayInvalidCredential)
	hdr.Set("Authorization", "Basic "+h.token)
	status, _, body = h.do(http.MethodPost, m2mBase+"/devices/actions/list", map[string]any{}, hdr)
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayInvalidCredential)
}

func TestSessionHeaderErrors(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.authenticate()
	list := func(session string) (int, []byte) {
		hdr := bearer(h.token)
		if session != "" {
			hdr.Set("VZ-M2M-Token", session)
		}
		status, _, body := h.do(http.MethodPost, m2mBase+"/devices/actions/list", map[string]any{}, hdr)
		return status, body
	}
	status, body := list("")
	wantError(t, status, body, CodeSessionFormat)
	status, body = list("not-a-guid")
	wantError(t, status, body, CodeSessionInvalid)
	status, body = list(newUUID())
	wantError(t, status, body, CodeSessionExpired)
	status, body = list(h.session)
	if status != http.StatusOK {
		t.Fatalf("valid session: %d %s", status, body)
	}
}

func TestSessionIdleExpirySlides(t *testing.T) {
	cfg := fastConfig()
	cfg.SessionIdleTimeout = 300 * time.Millisecond
	h := newHarness(t, cfg)
	h.authenticate()
	for range 4 { // 4 × 120 ms > 300 ms: only sliding keeps it alive
		time.Sleep(120 * time.Millisecond)
		if status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{}); status != http.StatusOK {
			t.Fatalf("session used within the idle timeout expired: %d %s", status, body)
		}
	}
	time.Sleep(400 * time.Millisecond)
	status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{})
	wantError(t, status, body, CodeSessionExpired)
}

func TestLoginLockout(t *testing.T) {
	h := newHarness(t, fastConfig())
	for i := 1; i <= 5; i++ {
		status, body := h.login(DefaultUsername, "wrong")
		wantError(t, status, body, CodeInvalidCredentials)
	}
	status, body := h.login(DefaultUsername, DefaultPassword)
	wantError(t, status, body, CodeAccountLocked)
	if st := h.sim.Stats(0); st.FailedLogins != 6 || st.Logins != 0 {
		t.Fatalf("stats: failed %d, logins %d", st.FailedLogins, st.Logins)
	}
	h.sim.UnlockLogins()
	if status, body := h.login(DefaultUsername, DefaultPassword); status != http.StatusOK {
		t.Fatalf("after unlock: %d %s", status, body)
	}
}

func TestLoginSuccessResetsFailures(t *testing.T) {
	h := newHarness(t, fastConfig())
	for round := 0; round < 3; round++ {
		for i := 0; i < 4; i++ {
			status, body := h.login(DefaultUsername, "wrong")
			wantError(t, status, body, CodeInvalidCredentials)
		}
		status, body := h.login(DefaultUsername, DefaultPassword)
		if status != http.StatusOK {
			t.Fatalf("round %d: good login after 4 failures: %d %s", round, status, body)
		}
		if tok := decodeAs[sessionResponse](t, body).SessionToken; !isGUID(tok) {
			t.Fatalf("session token %q is not a GUID", tok)
		}
	}
}

func TestLogout(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.authenticate()
	status, body := h.m2m(http.MethodPost, "/session/logout", nil)
	if status != http.StatusOK || decodeAs[sessionResponse](t, body).SessionToken != h.session {
		t.Fatalf("logout: %d %s", status, body)
	}
	status, body = h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{})
	wantError(t, status, body, CodeSessionExpired)
}

func TestExpireHelpers(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.authenticate()
	h.sim.ExpireSessions()
	status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{})
	wantError(t, status, body, CodeSessionExpired)
	h.sim.ExpireOAuthToken()
	status, body = h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{})
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayInvalidCredential)
}

func TestUnknownPath(t *testing.T) {
	h := newHarness(t, fastConfig())
	status, body := h.m2m(http.MethodPost, "/devices/actions/explode", map[string]any{})
	wantGatewayFault(t, status, body, http.StatusBadRequest, GatewayUnknownResource)
	status, body = h.m2m(http.MethodGet, "/devices/actions/activate", nil) // wrong method
	wantGatewayFault(t, status, body, http.StatusBadRequest, GatewayUnknownResource)
	if st := h.sim.Stats(0); st.Requests[unmatchedKey] != 2 {
		t.Fatalf("unmatched requests = %d", st.Requests[unmatchedKey])
	}
}
