package revio

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultBaseURL        = "https://api.revioapi.com"
	DefaultHTTPTimeout    = 30 * time.Second
	DefaultCallsPerMinute = 500 // Rev.io's documented per-account limit
	DefaultMaxRetries     = 2
)

// maxBodyBytes bounds what is read from a response. A 500-record page is a
// few hundred KiB; anything near this limit is not a Rev.io answer.
const maxBodyBytes = 16 << 20

// Config configures a Client. Login, ClientCode, Password and SubscriptionKey
// are required.
type Config struct {
	// BaseURL is scheme://host[/prefix], default DefaultBaseURL. It must not
	// carry user info, a query or a fragment.
	BaseURL string
	// Login is the API user name, not an e-mail: the Basic user id is
	// "<Login>@<ClientCode>", so an extra '@' would break it.
	Login string
	// ClientCode selects the tenant (and with it production or sandbox).
	ClientCode string
	// Password is secret.
	Password string
	// SubscriptionKey is the secret Azure APIM key (Ocp-Apim-Subscription-Key).
	SubscriptionKey string
	// HTTPTimeout bounds each HTTP attempt, default 30s.
	HTTPTimeout time.Duration
	// CallsPerMinute paces this Client (all goroutines share one bucket).
	// 0 means DefaultCallsPerMinute; negative disables pacing (tests only).
	CallsPerMinute int
	// MaxRetries is the number of transport-level retries after the first
	// attempt, default 2; negative disables them.
	MaxRetries int
	// Observer, if set, is called once per HTTP attempt (audit log).
	Observer Observer
	// HTTPClient, if set, is used for the calls. The Client works on a
	// shallow copy that does not follow redirects; its Timeout should be 0
	// or longer than HTTPTimeout.
	HTTPClient *http.Client
}

// Exchange describes one HTTP attempt for auditing. It never contains the
// Authorization or subscription-key headers; bodies and Err are scrubbed of
// the configured secrets.
type Exchange struct {
	Op     string // client method, e.g. "CreateService"
	Method string
	// Path is the request path relative to the base URL plus the query
	// string, e.g. "/v1/Services?search.number=1555&search.page=1".
	Path         string
	RequestBody  []byte
	ResponseBody []byte
	StatusCode   int // 0 when no answer was received
	Attempt      int // 1-based
	Started      time.Time
	Duration     time.Duration
	Err          string // transport error text, "" when an answer came
}

// Observer receives one Exchange per HTTP attempt, synchronously, on the
// calling goroutine; it must be quick and must not retain the byte slices
// beyond the call unless it copies them.
type Observer func(ctx context.Context, x Exchange)

// Client calls the Rev.io REST API. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	authHeader string
	subKey     string
	hc         *http.Client
	timeout    time.Duration
	limiter    *rate.Limiter // nil when pacing is disabled
	maxRetries int
	observer   Observer
	secrets    [][]byte
	// backoff returns the wait before retry n (1-based); replaced in tests.
	backoff func(n int) time.Duration
	// rateLimitPatience bounds the time one call spends waiting out 429s
	// (maxRateLimitWait); replaced in tests.
	rateLimitPatience time.Duration
	now               func() time.Time
}

// New validates cfg and builds a Client. Errors name the offending field and
// never show a secret value.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		// The URL itself is not secret, but a malformed one may carry
		// credentials pasted by mistake, so it is not echoed.
		return nil, errors.New("revio: Config.BaseURL must be an absolute http(s) URL")
	}
	if base.User != nil {
		return nil, errors.New("revio: Config.BaseURL must not contain user info; use Login/Password")
	}
	if base.RawQuery != "" || base.Fragment != "" {
		return nil, errors.New("revio: Config.BaseURL must not contain a query or fragment")
	}
	switch {
	case strings.TrimSpace(cfg.Login) == "":
		return nil, errors.New("revio: Config.Login is required")
	case strings.ContainsAny(cfg.Login, "@:"):
		return nil, errors.New(
			"revio: Config.Login must be the API user name without '@' or ':' " +
				"(not an e-mail; the client code goes in Config.ClientCode)",
		)
	case strings.TrimSpace(cfg.ClientCode) == "":
		return nil, errors.New("revio: Config.ClientCode is required")
	case strings.ContainsAny(cfg.ClientCode, "@:"):
		return nil, errors.New("revio: Config.ClientCode must not contain '@' or ':'")
	case cfg.Password == "":
		return nil, errors.New("revio: Config.Password is required")
	case cfg.SubscriptionKey == "":
		return nil, errors.New("revio: Config.SubscriptionKey is required")
	case strings.ContainsAny(cfg.SubscriptionKey, "\r\n"):
		return nil, errors.New("revio: Config.SubscriptionKey contains a line break")
	case cfg.HTTPTimeout < 0:
		return nil, errors.New("revio: Config.HTTPTimeout must not be negative")
	}
	if cfg.HTTPTimeout == 0 {
		cfg.HTTPTimeout = DefaultHTTPTimeout
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.CallsPerMinute == 0 {
		cfg.CallsPerMinute = DefaultCallsPerMinute
	}

	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	// An API client has no business following redirects, and a redirect
	// to another host would carry the subscription key along (Go strips
	// only Authorization and cookies across hosts).
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	userPass := cfg.Login + "@" + cfg.ClientCode + ":" + cfg.Password
	basic := base64.StdEncoding.EncodeToString([]byte(userPass))
	c := &Client{
		base:       base,
		authHeader: "Basic " + basic,
		subKey:     cfg.SubscriptionKey,
		hc:         &hc,
		timeout:    cfg.HTTPTimeout,
		limiter:    newLimiter(cfg.CallsPerMinute),
		maxRetries: cfg.MaxRetries,
		observer:   cfg.Observer,
		backoff:    defaultBackoff,
		now:        time.Now,

		rateLimitPatience: maxRateLimitWait,
	}
	// Very short secrets are not scrubbed: replacing every "ab" in a body
	// would destroy it, and such a password is not worth hiding anyway.
	for _, s := range []string{userPass, basic, cfg.Password, cfg.SubscriptionKey} {
		if len(s) >= 4 {
			c.secrets = append(c.secrets, []byte(s))
		}
	}
	return c, nil
}

// newLimiter builds a bucket that can never allow more than perMinute calls
// in any rolling minute: burst B plus a refill of (perMinute-B)/min. Rev.io
// counts in a window, so a plain rate of perMinute with a burst would
// overshoot by the burst.
func newLimiter(perMinute int) *rate.Limiter {
	if perMinute < 0 {
		return nil
	}
	burst := max(perMinute/60, 1)
	refill := perMinute - burst
	if refill < 1 {
		refill = 1
	}
	return rate.NewLimiter(rate.Limit(float64(refill)/60), burst)
}

// defaultBackoff waits 200ms, 400ms, 800ms… capped at 2s, with jitter so
// that many workers hitting the same 5xx do not retry in lockstep.
func defaultBackoff(n int) time.Duration {
	d := 200 * time.Millisecond << min(n-1, 4)
	d = min(d, 2*time.Second)
	return d/2 + rand.N(d/2+1)
}

// maxRetryAfterWait caps how long a transport retry honours a 503's
// Retry-After, and is the longest 429 Retry-After the client waits out
// itself; longer waits belong to the caller's retry policy.
const maxRetryAfterWait = 5 * time.Second

// maxRateLimitWait is how long one call keeps waiting out short 429s before
// the 429 goes to the caller: bounded by time, not by MaxRetries, because
// while the account's window is full every slot that frees goes to whoever
// asks first, and a few tries a second apart can all lose.
const maxRateLimitWait = 10 * time.Second

// request is one logical API call.
type request struct {
	op          string
	method      string
	path        string // below the base URL, e.g. "/v1/Services"
	query       url.Values
	body        []byte
	contentType string
}

// response is a received answer (any status).
type response struct {
	status int
	header http.Header
	body   []byte
}

// do runs req with pacing and the narrow retry policy described in the
// package doc. It returns the 2xx answer, or an *Error for anything else.
func (c *Client) do(ctx context.Context, req request) (*response, error) {
	relPath := req.path
	if len(req.query) > 0 {
		relPath += "?" + req.query.Encode()
	}
	target := c.base.String() + relPath

	var limitedFor time.Duration // waited out on 429s so far
	for attempt := 1; ; attempt++ {
		if c.limiter != nil {
			if err := c.limiter.Wait(ctx); err != nil {
				e := &Error{Op: req.op, Err: err, Message: "waiting for client-side pacing"}
				// rate.Wait refuses early when the wait would outlast the
				// deadline; that is congestion, worth retrying later, unlike
				// the caller cancelling.
				e.transport = ctx.Err() == nil
				return nil, e
			}
		}

		resp, sent, err := c.attempt(ctx, req, target, relPath, attempt)
		if err != nil {
			e := &Error{Op: req.op, Sent: sent, Err: err}
			if ctx.Err() != nil {
				// The caller gave up; its context error is the cause.
				e.Err = ctx.Err()
				return nil, e
			}
			e.transport = true
			if attempt <= c.maxRetries && (req.method == http.MethodGet || !sent) {
				if werr := c.wait(ctx, c.backoff(attempt)); werr != nil {
					return nil, &Error{Op: req.op, Sent: sent, Err: werr}
				}
				continue
			}
			return nil, e
		}

		if resp.status >= 200 && resp.status < 300 {
			return resp, nil
		}

		e := &Error{
			Op:         req.op,
			HTTPStatus: resp.status,
			Message:    string(c.redact([]byte(extractMessage(resp.body)))),
			Sent:       true,
		}
		if e.Message == "" {
			e.Message = http.StatusText(resp.status)
		}
		if resp.status == http.StatusTooManyRequests || resp.status == http.StatusServiceUnavailable {
			e.RetryAfter = parseRetryAfter(resp.header.Get("Retry-After"), c.now())
		}
		// A 429 comes from the gateway, which refused the call before Rev.io
		// saw it: sending it again is safe whatever the method. A short
		// Retry-After (the rolling window frees a slot in a second or two) is
		// waited here; left to the caller, each would use up one of the
		// activity's few bounded attempts in a second, and a minute of
		// congestion would end as a billing error (the chaos suite saw it).
		// A long one (the window resets up to a minute later) is still left
		// to the caller's retry policy. 5xx is retried only for GET.
		if resp.status == http.StatusTooManyRequests && e.RetryAfter > 0 && e.RetryAfter <= maxRetryAfterWait &&
			limitedFor+e.RetryAfter <= c.rateLimitPatience && beforeDeadline(ctx, e.RetryAfter) {
			if werr := c.wait(ctx, e.RetryAfter); werr != nil {
				e.Err = werr
				return nil, e
			}
			limitedFor += e.RetryAfter
			continue
		}
		if resp.status >= 500 && req.method == http.MethodGet && attempt <= c.maxRetries {
			wait := c.backoff(attempt)
			if e.RetryAfter > 0 {
				wait = min(e.RetryAfter, maxRetryAfterWait)
			}
			if werr := c.wait(ctx, wait); werr != nil {
				e.Err = werr
				return nil, e
			}
			continue
		}
		return nil, e
	}
}

// attempt performs one HTTP exchange. sent reports whether any part of the
// request may have reached the server: it is false only when the headers
// were never written (dial, DNS, TLS or proxy failure).
func (c *Client) attempt(
	ctx context.Context,
	req request,
	target, relPath string,
	n int,
) (_ *response, sent bool, _ error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	}
	actx = httptrace.WithClientTrace(actx, trace)

	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(actx, req.method, target, body)
	if err != nil {
		return nil, false, err
	}
	hreq.Header.Set("Authorization", c.authHeader)
	hreq.Header.Set("Ocp-Apim-Subscription-Key", c.subKey)
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", "tsbulk-revio/1")
	if req.body != nil {
		hreq.Header.Set("Content-Type", req.contentType)
	}

	x := Exchange{
		Op:          req.op,
		Method:      req.method,
		Path:        relPath,
		RequestBody: c.redact(req.body),
		Attempt:     n,
		Started:     c.now(),
	}
	start := time.Now()
	hresp, err := c.hc.Do(hreq)
	if err != nil {
		sent = wrote.Load()
		x.Duration = time.Since(start)
		x.Err = string(c.redact([]byte(err.Error())))
		c.observe(ctx, x)
		return nil, sent, err
	}
	defer hresp.Body.Close()
	data, rerr := io.ReadAll(io.LimitReader(hresp.Body, maxBodyBytes+1))
	if rerr == nil && len(data) > maxBodyBytes {
		rerr = fmt.Errorf("response body larger than %d bytes", maxBodyBytes)
	}
	x.Duration = time.Since(start)
	x.StatusCode = hresp.StatusCode
	x.ResponseBody = c.redact(data)
	if rerr != nil {
		x.Err = string(c.redact([]byte(rerr.Error())))
		c.observe(ctx, x)
		// The status line arrived, so the request was certainly sent.
		return nil, true, fmt.Errorf("reading HTTP %d response: %w", hresp.StatusCode, rerr)
	}
	c.observe(ctx, x)
	return &response{status: hresp.StatusCode, header: hresp.Header, body: data}, true, nil
}

func (c *Client) observe(ctx context.Context, x Exchange) {
	if c.observer != nil {
		c.observer(ctx, x)
	}
}

// redact returns a copy of b with every configured secret replaced. It
// always copies so the Observer cannot alias the client's buffers.
func (c *Client) redact(b []byte) []byte {
	if b == nil {
		return nil
	}
	out := bytes.Clone(b)
	for _, s := range c.secrets {
		if bytes.Contains(out, s) {
			out = bytes.ReplaceAll(out, s, []byte("[REDACTED]"))
		}
	}
	return out
}

// beforeDeadline reports whether a wait of d ends before ctx's deadline:
// a wait cut short by it would turn a clean 429 into a context error.
func beforeDeadline(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > d
}

func (c *Client) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
