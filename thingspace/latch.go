package thingspace

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/change"
)

// Codes that say ThingSpace refused the credentials themselves, the only
// answers the client latches. The login codes are the simulator's choice:
// Verizon documents none (the reference lists the refused-login code as
// never documented), only that five consecutive failed logins lock the
// account. Any other refusal of a token request or login fails the call
// without being latched, so a gateway page or a malformed request does not
// stop every worker until an operator steps in.
const (
	CodeLoginInvalidCredentials = "REQUEST_FAILED.InvalidCredentials"
	CodeLoginAccountLocked      = "REQUEST_FAILED.AccountLocked"
	CodeOAuthInvalidClient      = "invalid_client" // RFC 6749 §5.2: client authentication failed
)

// isLoginRefusalCode reports whether a login answer's code refuses the
// username or password. The service-name prefix varies between
// ThingSpace's services, so only the part after it counts.
func isLoginRefusalCode(code string) bool {
	switch change.ShortCode(code) {
	case CodeLoginInvalidCredentials, CodeLoginAccountLocked:
		return true
	}
	return false
}

// CredentialKey names the credentials a refusal is about: one OAuth client
// and one M2M user at one ThingSpace. Every worker of a deployment shares
// it, so a refusal seen by one is known to all.
type CredentialKey struct {
	BaseURL  string
	ClientID string
	Username string
}

// Refusal is ThingSpace's refusal of the credentials, as latched. It holds
// what ThingSpace answered, never a secret.
type Refusal struct {
	Op         string // OpOAuth (the client id or secret) or OpLogin (the username or password)
	HTTPStatus int
	Code       string
	Message    string
	At         time.Time // when it was latched
}

// Latches shares refused credentials between every Client that uses them:
// the workers of a deployment and their successors after a restart. Without
// it each Client latches on its own, and N workers (or N restarts) each try
// once more: five failed logins lock the Verizon account.
//
// A Client holds the latch around each authentication (OAuth token request
// and login), so that workers starting together do not each try a wrong
// password before the first refusal is recorded.
type Latches interface {
	// Hold waits until no other holder of key is authenticating and returns
	// the refusal latched for key (nil when none). The caller authenticates
	// only when there is none, records a refusal with Latch, and then calls
	// release (always, exactly once).
	Hold(ctx context.Context, key CredentialKey) (refused *Refusal, release func(), err error)
	// Latch records a refusal of key; the first one recorded stays until an
	// operator resets it.
	Latch(ctx context.Context, key CredentialKey, r Refusal) error
	// Latched returns the refusal latched for key (nil when none), without
	// waiting for a hold.
	Latched(ctx context.Context, key CredentialKey) (*Refusal, error)
}

func (c *Client) credentialKey() CredentialKey {
	return CredentialKey{BaseURL: c.cfg.BaseURL, ClientID: c.cfg.ClientID, Username: c.cfg.Username}
}

// refusedError is the error every call returns while a refusal is latched:
// the original answer's code, and nothing was sent.
func refusedError(r *Refusal) *Error {
	msg := fmt.Sprintf("credentials refused at %s, nothing sent since (latched)", r.At.UTC().Format(time.RFC3339))
	if r.Message != "" {
		msg = r.Message + ": " + msg
	}
	return &Error{Op: r.Op, HTTPStatus: r.HTTPStatus, Code: r.Code, Message: msg, Kind: KindInvalidCredentials}
}

// CredentialRefusal returns the refusal of this client's credentials that
// stops it (nil when none): the shared one when Config.Latches is set,
// else this client's own. For readiness checks; it sends nothing.
func (c *Client) CredentialRefusal(ctx context.Context) (*Refusal, error) {
	if l := c.cfg.Latches; l != nil {
		r, err := l.Latched(ctx, c.credentialKey())
		if err != nil {
			return nil, fmt.Errorf("thingspace: read the credential latch: %w", err)
		}
		if r != nil {
			return r, nil
		}
	}
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	if e := c.auth.latched; e != nil {
		return &Refusal{Op: e.Op, HTTPStatus: e.HTTPStatus, Code: e.Code, Message: e.Message, At: c.auth.latchedAt}, nil
	}
	return nil, nil
}

// holdLatch takes the shared latch for one authentication. It returns the
// latched refusal as an error, or a release to call when done (a no-op
// without Config.Latches).
func (c *Client) holdLatch(ctx context.Context) (func(), error) {
	l := c.cfg.Latches
	if l == nil {
		return func() {}, nil
	}
	refused, release, err := l.Hold(ctx, c.credentialKey())
	if err != nil {
		// Not knowing whether the credentials were refused is no licence
		// to try them: wait for the store like for any outage.
		return nil, &Error{Op: OpLogin, Kind: KindTemporary, Message: "cannot read the credential latch", Err: err}
	}
	if refused != nil {
		release()
		return nil, refusedError(refused)
	}
	return release, nil
}

// latch records that ThingSpace refused the credentials (e, from a token
// request or login answered with a refusal code): in the shared latch when
// there is one, else in this client only (also when the shared latch
// cannot be written: this process at least tries no more).
func (c *Client) latch(ctx context.Context, e *Error) {
	e.Kind = KindInvalidCredentials
	now := c.now()
	shared := false
	if l := c.cfg.Latches; l != nil {
		r := Refusal{Op: e.Op, HTTPStatus: e.HTTPStatus, Code: e.Code, Message: e.Message, At: now}
		if err := l.Latch(ctx, c.credentialKey(), r); err != nil {
			c.log.Error("thingspace credentials refused, and the shared latch could not be written; "+
				"only this process stops trying them", slog.String("error", err.Error()))
		} else {
			shared = true
		}
	}
	a := &c.auth
	a.mu.Lock()
	if !shared && a.latched == nil {
		a.latched, a.latchedAt = e, now
	}
	a.access, a.session = "", ""
	a.mu.Unlock()
	c.log.Error("thingspace credentials refused; no further authentication until the latch is reset",
		slog.String("op", e.Op), slog.Int("status", e.HTTPStatus), slog.String("code", e.Code),
		slog.Bool("shared", shared))
}

// unlatchedRefusal marks a token request or login refused for a reason
// other than a refusal code (a gateway page, an unknown 4xx): the call
// fails like a refusal, not retried, but nothing is latched.
func unlatchedRefusal(e *Error) {
	e.Kind = KindInvalidCredentials
	if !strings.Contains(e.Message, "not latched") {
		if e.Message != "" {
			e.Message += "; "
		}
		e.Message += "authentication refused without a credential code, not latched"
	}
}
