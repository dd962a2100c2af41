package thingspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	pathOAuthToken = "/api/ts/v1/oauth2/token"
	pathLogin      = "/api/m2m/v1/session/login"
	pathLogout     = "/api/m2m/v1/session/logout"
)

// authState holds the two tokens shared by every goroutine using a Client.
//
// Acquisition is single-flight: whoever first finds a token missing starts
// one flight (OAuth and/or login) and every concurrent caller waits for that
// same flight and gets its result, errors included. Fifty goroutines
// starting together therefore make one token request and one login, and a
// failing login is not repeated by each waiter.
type authState struct {
	mu        sync.Mutex
	access    string
	expiry    time.Time // when the OAuth token stops working
	refreshAt time.Time // when to stop using it and fetch another
	session   string
	// latched: credentials refused, and no shared latch (Config.Latches)
	// recorded it: every later call of this client returns this.
	latched   *Error
	latchedAt time.Time
	flight    *authFlight
}

type authFlight struct {
	done        chan struct{}
	needSession bool
	tok         tokens
	err         error
}

type tokens struct {
	access  string
	session string
}

// tokens returns usable tokens, fetching them if needed. needSession=false
// is for calls that only need the OAuth token (logout).
func (c *Client) tokens(ctx context.Context, needSession bool) (tokens, error) {
	a := &c.auth
	for round := 0; ; round++ {
		a.mu.Lock()
		if a.latched != nil {
			err := a.latched
			a.mu.Unlock()
			return tokens{}, err
		}
		if a.access != "" && c.now().Before(a.refreshAt) && (!needSession || a.session != "") {
			t := tokens{access: a.access, session: a.session}
			a.mu.Unlock()
			return t, nil
		}
		f := a.flight
		if f == nil {
			f = &authFlight{done: make(chan struct{}), needSession: needSession}
			a.flight = f
			// The flight must outlive the caller that happened to start it:
			// other goroutines are waiting for its result.
			go c.runAuthFlight(context.WithoutCancel(ctx), f)
		}
		a.mu.Unlock()

		select {
		case <-f.done:
		case <-ctx.Done():
			return tokens{}, fmt.Errorf("thingspace: waiting for authentication: %w", ctx.Err())
		}
		if f.err != nil {
			return tokens{}, f.err
		}
		if !needSession || f.tok.session != "" {
			return f.tok, nil
		}
		// We joined a flight that only fetched the OAuth token; start one
		// that logs in. Two rounds always suffice.
		if round >= 2 {
			return tokens{}, &Error{Op: OpLogin, Kind: KindTemporary, Message: "authentication yielded no session"}
		}
	}
}

// authFlightTimeout bounds a flight that no caller can cancel: up to two
// token requests and two logins, each with its transport retries.
func (c *Client) authFlightTimeout() time.Duration {
	perCall := time.Duration(c.cfg.MaxRetries+1) * (c.cfg.HTTPTimeout + c.retryWaitMax)
	return 4*perCall + time.Minute
}

func (c *Client) runAuthFlight(ctx context.Context, f *authFlight) {
	ctx, cancel := context.WithTimeout(ctx, c.authFlightTimeout())
	defer cancel()
	tok, err := c.acquire(ctx, f.needSession)
	c.auth.mu.Lock()
	f.tok, f.err = tok, err
	c.auth.flight = nil
	c.auth.mu.Unlock()
	close(f.done)
}

// acquire runs inside a flight.
func (c *Client) acquire(ctx context.Context, needSession bool) (tokens, error) {
	a := &c.auth
	a.mu.Lock()
	if a.latched != nil {
		err := a.latched
		a.mu.Unlock()
		return tokens{}, err
	}
	t := tokens{session: a.session}
	if a.access != "" && c.now().Before(a.refreshAt) {
		t.access = a.access
	}
	a.mu.Unlock()

	release, err := c.holdLatch(ctx)
	if err != nil {
		return tokens{}, err
	}
	defer release()
	if t.access == "" {
		if t.access, err = c.fetchOAuth(ctx); err != nil {
			return tokens{}, err
		}
	}
	if needSession && t.session == "" {
		t.session, err = c.login(ctx, t.access)
		if e, ok := AsError(err); ok && isGatewayAuthCode(e.Code) {
			// The Bearer we just used was refused: get another once.
			c.invalidateAccess(t.access)
			if t.access, err = c.fetchOAuth(ctx); err != nil {
				return tokens{}, err
			}
			t.session, err = c.login(ctx, t.access)
		}
		if err != nil {
			return tokens{}, err
		}
	}
	return t, nil
}

// flexInt64 accepts a JSON number or a numeric string; anything else
// leaves it unset. Used where the wire type is unconfirmed.
type flexInt64 struct {
	v   int64
	set bool
}

func (f *flexInt64) UnmarshalJSON(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"`)
	if s == "" || s == "null" {
		return nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		f.v, f.set = v, true
		return nil
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		f.v, f.set = int64(v), true
	}
	return nil
}

// sendAuth POSTs one of the two token requests. They carry their own
// Authorization (the caller's, not the tokens being fetched), so they go
// through send directly rather than do.
func (c *Client) sendAuth(
	ctx context.Context,
	op, path string,
	body []byte,
	contentType, authz string,
) (*response, error) {
	attempt := 0
	return c.send(ctx, &httpCall{
		op:          op,
		method:      http.MethodPost,
		path:        path,
		body:        body,
		contentType: contentType,
		header:      http.Header{"Authorization": {authz}, "Accept": {"application/json"}},
	}, &attempt)
}

// decodeToken reads a 2xx token answer into v. An answer without the token
// is as useless as unreadable JSON; the request did reach ThingSpace, so
// it is Sent and worth another try.
func decodeToken(op string, res *response, v any, token *string, field, what string) error {
	err := json.Unmarshal(res.body, v)
	if err == nil && *token == "" {
		err = errors.New("no " + field + " in answer")
	}
	if err != nil {
		return &Error{
			Op:         op,
			HTTPStatus: res.status,
			Kind:       KindTemporary,
			Sent:       true,
			Message:    "unreadable " + what + " answer",
			Err:        err,
		}
	}
	return nil
}

func (c *Client) fetchOAuth(ctx context.Context) (string, error) {
	body := []byte("grant_type=client_credentials")
	res, err := c.sendAuth(ctx, OpOAuth, pathOAuthToken, body, "application/x-www-form-urlencoded", c.basicAuth)
	if err != nil {
		return "", err
	}
	if !res.ok() {
		eb := parseErrorBody(res.body)
		e := c.httpError(OpOAuth, res, eb)
		switch {
		case e.Kind == KindRateLimited:
		case (res.status == http.StatusBadRequest || res.status == http.StatusUnauthorized) &&
			eb.Code == CodeOAuthInvalidClient:
			c.latch(ctx, e)
		case res.status == http.StatusBadRequest || res.status == http.StatusUnauthorized:
			unlatchedRefusal(e)
		}
		return "", e
	}
	var tr struct {
		AccessToken string    `json:"access_token"`
		ExpiresIn   flexInt64 `json:"expires_in"`
	}
	if err := decodeToken(OpOAuth, res, &tr, &tr.AccessToken, "access_token", "token"); err != nil {
		return "", err
	}
	ttl := DefaultOAuthTTL
	if tr.ExpiresIn.set && tr.ExpiresIn.v > 0 {
		ttl = time.Duration(tr.ExpiresIn.v) * time.Second
	}
	c.setAccess(tr.AccessToken, ttl)
	return tr.AccessToken, nil
}

func (c *Client) setAccess(tok string, ttl time.Duration) {
	c.sec.remember(tok)
	a := &c.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	now := c.now()
	exp := now.Add(ttl)
	if tok == a.access && a.expiry.After(now) {
		// ThingSpace hands back the same token until one hour after its
		// first issue, so asking early bought nothing: keep the original
		// expiry and use the token until then (a 900901 right at the end
		// is handled by the re-auth path).
		if a.expiry.Before(exp) {
			exp = a.expiry
		}
		a.refreshAt = exp
	} else {
		a.refreshAt = exp.Add(-min(c.cfg.RefreshBefore, ttl/2))
	}
	a.access, a.expiry = tok, exp
}

func (c *Client) invalidateAccess(old string) {
	a := &c.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.access == old {
		a.access, a.refreshAt = "", time.Time{}
	}
}

func (c *Client) invalidateSession(old string) {
	a := &c.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.session == old {
		a.session = ""
	}
}

func (c *Client) login(ctx context.Context, access string) (string, error) {
	body, err := json.Marshal(struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}{c.cfg.Username, c.cfg.Password})
	if err != nil {
		return "", &Error{Op: OpLogin, Kind: KindInvalidInput, Err: err}
	}
	res, err := c.sendAuth(ctx, OpLogin, pathLogin, body, "application/json", "Bearer "+access)
	if err != nil {
		return "", err
	}
	if !res.ok() {
		eb := parseErrorBody(res.body)
		e := c.httpError(OpLogin, res, eb)
		switch {
		case isGatewayAuthCode(eb.Code), isSessionCode(eb.Code):
		case e.Kind == KindRateLimited, e.Kind == KindTemporary:
		case res.status >= 400 && res.status < 500 && isLoginRefusalCode(eb.Code):
			c.latch(ctx, e)
		case res.status >= 400 && res.status < 500:
			unlatchedRefusal(e)
		}
		return "", e
	}
	var lr struct {
		SessionToken string `json:"sessionToken"`
	}
	if err := decodeToken(OpLogin, res, &lr, &lr.SessionToken, "sessionToken", "login"); err != nil {
		return "", err
	}
	c.sec.remember(lr.SessionToken)
	c.auth.mu.Lock()
	c.auth.session = lr.SessionToken
	c.auth.mu.Unlock()
	return lr.SessionToken, nil
}

// CheckAuth makes sure both tokens are held, fetching them if needed. It
// returns the latched error when credentials were refused earlier.
func (c *Client) CheckAuth(ctx context.Context) error {
	_, err := c.tokens(ctx, true)
	return err
}

// Logout ends the M2M session, if one is held. The OAuth token is kept. A
// session that ThingSpace already considers expired counts as ended.
func (c *Client) Logout(ctx context.Context) error {
	a := &c.auth
	a.mu.Lock()
	session := a.session
	a.session = ""
	a.mu.Unlock()
	if session == "" {
		return nil
	}
	attempt := 0
	for reauthed := false; ; reauthed = true {
		tok, err := c.tokens(ctx, false)
		if err != nil {
			return err
		}
		res, err := c.send(ctx, &httpCall{
			op: OpLogout, method: http.MethodPost, path: pathLogout,
			contentType: "application/json",
			header:      c.m2mHeader(tokens{access: tok.access, session: session}),
		}, &attempt)
		if err != nil {
			return err
		}
		if res.ok() {
			return nil
		}
		eb := parseErrorBody(res.body)
		switch {
		case isSessionCode(eb.Code):
			return nil
		case !reauthed && (isGatewayAuthCode(eb.Code) || (res.status == http.StatusUnauthorized && eb.Code == "")):
			c.invalidateAccess(tok.access)
			continue
		}
		return c.httpError(OpLogout, res, eb)
	}
}
