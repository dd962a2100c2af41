package thingspacesim

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"
)

// oauthScope is what the token endpoint reports: WSO2's default scope
// string (the live value is unconfirmed).
const oauthScope = "am_application_scope default"

type authState struct {
	token       string // the one valid OAuth token ("" when none)
	tokenExpiry time.Time
	sessions    map[string]time.Time // VZ-M2M-Token → last use
	failed      map[string]int       // username → consecutive failed logins
}

func newAuthState() authState {
	return authState{sessions: map[string]time.Time{}, failed: map[string]int{}}
}

func secretEqual(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// handleToken: POST /api/ts/v1/oauth2/token (client credentials). The same
// token is returned until it expires; expires_in counts down (rounded up,
// so it is never 0 for a valid token).
func (s *Simulator) handleToken(c *call) reply {
	id, secret, ok := c.r.BasicAuth()
	if !ok {
		return oauthFailure(
			http.StatusUnauthorized,
			"invalid_client",
			"Client credentials were not provided (HTTP Basic authorization required)",
		)
	}
	if !secretEqual(id, s.cfg.ClientID) || !secretEqual(secret, s.cfg.ClientSecret) {
		return oauthFailure(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
	}
	if err := c.r.ParseForm(); err != nil {
		return oauthFailure(http.StatusBadRequest, "invalid_request", "Malformed form body")
	}
	switch gt := c.r.PostForm.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		return oauthFailure(http.StatusBadRequest, "invalid_request", "Missing grant_type parameter value")
	default:
		return oauthFailure(http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type value")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth.token == "" || !c.now.Before(s.auth.tokenExpiry) {
		s.auth.token = newUUID()
		s.auth.tokenExpiry = c.now.Add(s.cfg.OAuthTokenTTL)
	}
	s.stats.oauthTokens++
	left := s.auth.tokenExpiry.Sub(c.now)
	return okReply(tokenResponse{
		AccessToken: s.auth.token,
		TokenType:   "Bearer",
		ExpiresIn:   int((left + time.Second - 1) / time.Second),
		Scope:       oauthScope,
	})
}

// handleRevoke: POST /api/ts/v1/oauth2/revoke. The revoked token comes back
// in a header and there is no body (S-cred); an unknown token is not an
// error (RFC 7009).
func (s *Simulator) handleRevoke(c *call) reply {
	id, secret, ok := c.r.BasicAuth()
	if !ok || !secretEqual(id, s.cfg.ClientID) || !secretEqual(secret, s.cfg.ClientSecret) {
		return oauthFailure(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
	}
	if err := c.r.ParseForm(); err != nil {
		return oauthFailure(http.StatusBadRequest, "invalid_request", "Malformed form body")
	}
	tok := c.r.PostForm.Get("token")
	if tok == "" {
		return oauthFailure(http.StatusBadRequest, "invalid_request", "Missing token parameter")
	}
	rep := reply{status: http.StatusOK}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth.token != "" && secretEqual(tok, s.auth.token) {
		s.auth.token = ""
		rep.header = http.Header{"RevokedAccessToken": []string{tok}}
	}
	return rep
}

// checkBearer validates "Authorization: Bearer <token>" like the gateway.
func (s *Simulator) checkBearer(r *http.Request, now time.Time) (reply, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return missingCredentialsFault(), false
	}
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return invalidCredentialsFault(), false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth.token == "" || !secretEqual(tok, s.auth.token) || !now.Before(s.auth.tokenExpiry) {
		return invalidCredentialsFault(), false
	}
	return reply{}, true
}

// checkSession validates VZ-M2M-Token and slides its idle timeout.
// A GUID that was never issued, or was logged out, answers Expired: the
// client's right reaction (log in again) is the same.
func (s *Simulator) checkSession(r *http.Request, now time.Time) (reply, bool) {
	tok := r.Header.Get("VZ-M2M-Token")
	if tok == "" {
		return uwsError(
			CodeSessionFormat,
			"REQUEST_FAILED. Session token is missing from the VZ-M2M-Token header",
		), false
	}
	if !isGUID(tok) {
		return uwsError(CodeSessionInvalid, "INPUT_INVALID. Session token is not a valid GUID"), false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.auth.sessions[tok]
	if !ok || now.Sub(last) > s.cfg.SessionIdleTimeout {
		delete(s.auth.sessions, tok)
		return uwsError(CodeSessionExpired, "REQUEST_FAILED. Session token expired"), false
	}
	s.auth.sessions[tok] = now
	return reply{}, true
}

// handleLogin: POST /api/m2m/v1/session/login. Wrong credentials count
// toward the lock of that username; the attempt that reaches
// MaxFailedLogins still answers InvalidCredentials, later ones answer
// AccountLocked even with the right password.
func (s *Simulator) handleLogin(c *call) reply {
	var req loginRequest
	if rep := decodeStrict(c.body, &req); rep != nil {
		return *rep
	}
	if req.Username == "" || req.Password == "" {
		return uwsError(CodeUnexpectedError, "REQUEST_FAILED. username and password are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth.failed[req.Username] >= s.cfg.MaxFailedLogins {
		s.stats.failedLogins++
		return uwsError(
			CodeAccountLocked,
			"REQUEST_FAILED. The user is locked after too many failed logins; contact Verizon Support",
		)
	}
	if !secretEqual(req.Username, s.cfg.Username) || !secretEqual(req.Password, s.cfg.Password) {
		s.auth.failed[req.Username]++
		s.stats.failedLogins++
		return uwsError(CodeInvalidCredentials, "REQUEST_FAILED. Invalid username or password")
	}
	delete(s.auth.failed, req.Username)
	for tok, last := range s.auth.sessions { // keep the map from growing with abandoned sessions
		if c.now.Sub(last) > s.cfg.SessionIdleTimeout {
			delete(s.auth.sessions, tok)
		}
	}
	tok := newUUID()
	s.auth.sessions[tok] = c.now
	s.stats.logins++
	return okReply(sessionResponse{SessionToken: tok})
}

// handleLogout: POST /api/m2m/v1/session/logout ends the session named in
// VZ-M2M-Token (already validated by the middleware).
func (s *Simulator) handleLogout(c *call) reply {
	tok := c.r.Header.Get("VZ-M2M-Token")
	s.mu.Lock()
	delete(s.auth.sessions, tok)
	s.mu.Unlock()
	return okReply(sessionResponse{SessionToken: tok})
}

// ExpireOAuthToken makes the current OAuth token invalid at once, so tests
// can exercise re-authentication without waiting for the TTL.
func (s *Simulator) ExpireOAuthToken() {
	s.mu.Lock()
	s.auth.token = ""
	s.mu.Unlock()
}

// ExpireSessions ends every VZ-M2M session, as if all had been idle too long.
func (s *Simulator) ExpireSessions() {
	s.mu.Lock()
	s.auth.sessions = map[string]time.Time{}
	s.mu.Unlock()
}

// UnlockLogins clears failed-login counts and locks (Verizon Support's job
// on the live service).
func (s *Simulator) UnlockLogins() {
	s.mu.Lock()
	s.auth.failed = map[string]int{}
	s.mu.Unlock()
}
