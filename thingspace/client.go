// Package thingspace is a client for the Verizon ThingSpace Connectivity
// Management (M2M) REST API: OAuth + VZ-M2M session authentication, device
// state changes, device listing, request status and callback listeners.
//
// A Client is safe for concurrent use; all goroutines share its two tokens.
// Errors are *Error values classified by ErrorKind. Nothing secret ever
// reaches logs, error strings or the Observer.
package thingspace

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Client talks to ThingSpace. Make one per set of credentials and keep it:
// it caches tokens, and once credentials have been refused it refuses every
// later call without contacting ThingSpace (five failed logins lock the
// Verizon account): until a new Client is made, or, with Config.Latches,
// until the shared latch is reset (a new Client does not undo that one).
type Client struct {
	cfg       Config
	log       *slog.Logger
	rc        *retryablehttp.Client
	sec       *secrets
	basicAuth string
	now       func() time.Time

	retryWaitMin, retryWaitMax time.Duration

	auth authState
}

// New validates cfg and returns a Client. It makes no request.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	basic := base64.StdEncoding.EncodeToString([]byte(cfg.ClientID + ":" + cfg.ClientSecret))
	c := &Client{
		cfg:          cfg,
		log:          cfg.Logger,
		sec:          newSecrets(cfg.ClientSecret, cfg.Password, basic),
		basicAuth:    "Basic " + basic,
		now:          time.Now,
		retryWaitMin: retryWaitMin,
		retryWaitMax: retryWaitMax,
	}
	c.rc = c.newRetryClient(cfg.HTTPClient)
	return c, nil
}

// AccountName is the default account of this client.
func (c *Client) AccountName() string { return c.cfg.AccountName }

func (c *Client) m2mHeader(t tokens) http.Header {
	return http.Header{
		"Authorization": {"Bearer " + t.access},
		"Vz-M2m-Token":  {t.session},
		"Accept":        {"application/json"},
	}
}

// do performs one M2M call with both tokens, re-authenticating at most once
// per kind of expiry: gateway 900901/900902 (or a bare 401) gets a new OAuth
// token, SessionToken.* a new login. A repeated expiry is returned as
// KindSessionExpired rather than looping. out (if non-nil) receives the
// decoded 2xx body. It returns the HTTP status of the final answer.
func (c *Client) do(ctx context.Context, op, method, path string, in, out any) (int, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, &Error{Op: op, Kind: KindInvalidInput, Message: "cannot encode request", Err: err}
		}
		body = b
	}
	var personal []string
	switch v := in.(type) {
	case ActivateRequest:
		personal = personalValues(v.PrimaryPlaceOfUse)
	case ContactInfoRequest:
		personal = personalValues(&v.PrimaryPlaceOfUse)
	}
	attempt := 0
	oauthRetried, loginRetried := false, false
	for {
		tok, err := c.tokens(ctx, true)
		if err != nil {
			return 0, err
		}
		res, err := c.send(ctx, &httpCall{
			op: op, method: method, path: path, body: body,
			contentType: "application/json", header: c.m2mHeader(tok), personal: personal,
		}, &attempt)
		if err != nil {
			return 0, err
		}
		if res.ok() {
			if out != nil && len(res.body) > 0 {
				if err := json.Unmarshal(res.body, out); err != nil {
					// The request was accepted; only the answer is unreadable.
					return res.status, &Error{Op: op, HTTPStatus: res.status, Kind: KindTemporary, Sent: true,
						Message: "unreadable answer", Err: err}
				}
			}
			return res.status, nil
		}
		eb := parseErrorBody(res.body)
		switch {
		case !oauthRetried && (isGatewayAuthCode(eb.Code) || (res.status == http.StatusUnauthorized && eb.Code == "")):
			oauthRetried = true
			c.log.InfoContext(ctx, "thingspace bearer token refused; fetching a new one", slog.String("op", op))
			c.invalidateAccess(tok.access)
			continue
		case !loginRetried && isSessionCode(eb.Code):
			loginRetried = true
			c.log.InfoContext(ctx, "thingspace session refused; logging in again", slog.String("op", op),
				slog.String("code", eb.Code))
			c.invalidateSession(tok.session)
			continue
		}
		return res.status, c.httpError(op, res, eb)
	}
}

// httpError builds the *Error for a non-2xx answer.
func (c *Client) httpError(op string, res *response, eb errorBody) *Error {
	e := &Error{
		Op:         op,
		HTTPStatus: res.status,
		Code:       BoundCode(c.sec.scrubString(eb.Code, res.personal...)),
		Message:    BoundText(c.sec.scrubString(eb.Message, res.personal...)),
		Kind:       classify(res.status, eb.Code),
		Sent:       true,
	}
	if e.Kind == KindRateLimited || res.status == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(res.header.Get("Retry-After"), c.now())
	}
	return e
}

func levelFor(x Exchange) slog.Level {
	if x.Err != "" || x.StatusCode >= 500 || x.StatusCode == http.StatusTooManyRequests {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

func invalidInput(op, msg string) *Error {
	return &Error{Op: op, Kind: KindInvalidInput, Message: msg}
}
