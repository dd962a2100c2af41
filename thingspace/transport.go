package thingspace

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Transport retry rule (bounded: MaxRetries retries, 200ms..2s apart):
//
//   - Safe calls (oauth, login, list, requestStatus, callbacks, logout) are
//     retried after a connection error or timeout and after a 5xx answer
//     other than 501. Repeating them changes nothing at ThingSpace.
//   - State-changing calls (activate, suspend, restore, deactivate,
//     contactInfo, add) are retried only when the attempt never obtained a
//     connection (DNS failure, connection refused, TLS handshake failure,
//     proxy refusal): only then is it certain that not a byte of the request
//     reached ThingSpace. A timeout, reset or EOF after a connection was
//     obtained returns *Error{Kind: KindTemporary, Sent: true, HTTPStatus: 0}
//     (MayHaveApplied) so the caller reconciles instead of activating twice.
//     A 5xx answer is returned as KindTemporary with Sent=true and its
//     status, and is not retried here either: it may come from the gateway
//     after the backend applied the change (MayHaveApplied too).
//   - 429 and the gateway throttling fault (900800) are never retried here:
//     the error carries RetryAfter and Limiter.Throttled is told.
//   - Nothing is retried once the caller's context is done, after the
//     Limiter refused, or after a certificate error.
//
// Re-authentication (gateway 900901/900902, SessionToken.*) is not a
// transport retry: the client handles it above this layer, once per call.
const (
	retryWaitMin = 200 * time.Millisecond
	retryWaitMax = 2 * time.Second
)

// maxResponseBytes bounds what is read of one answer. A full device-list
// page (2000 devices) is a few MB.
const maxResponseBytes = 32 << 20

var safeOps = map[string]bool{
	OpOAuth:         true,
	OpLogin:         true,
	OpLogout:        true,
	OpList:          true,
	OpRequestStatus: true,
	OpCallbacks:     true,
}

// httpCall is one logical request handed to the transport.
type httpCall struct {
	op          string
	method      string
	path        string // escaped, relative to BaseURL
	body        []byte
	contentType string
	header      http.Header
	personal    []string // personal values of this request, scrubbed from what is observed
}

// response is a complete, buffered answer of any status.
type response struct {
	status   int
	header   http.Header
	body     []byte
	personal []string // from the httpCall, for error messages
}

func (r *response) ok() bool { return r.status >= 200 && r.status < 300 }

// callState follows one logical request through its transport attempts. It
// travels in the request context because retryablehttp hands CheckRetry
// only the context, and the RoundTripper only the request. Attempts of one
// call are sequential, so plain fields suffice.
type callState struct {
	op               string
	safe             bool
	observedReq      []byte
	personal         []string
	attempt          *int // shared by the re-auth resends of one client call
	attemptConnected bool
	everConnected    bool
	lastCode         string
	limiterErr       error
	guardErr         error
}

type callStateKey struct{}

func stateOf(ctx context.Context) *callState {
	st, _ := ctx.Value(callStateKey{}).(*callState)
	return st
}

// limiterError marks a refusal by the Limiter so that it is never retried.
type limiterError struct{ err error }

func (e *limiterError) Error() string { return "limiter: " + e.err.Error() }
func (e *limiterError) Unwrap() error { return e.err }

// guardError marks a write its SendGuard stopped, so that it is never
// retried.
type guardError struct{ err error }

func (e *guardError) Error() string { return "send guard: " + e.err.Error() }
func (e *guardError) Unwrap() error { return e.err }

// SendGuard is called right before each HTTP write of a call that is not
// safe to repeat (a state change), after any Limiter wait and token fetch,
// so that as little as possible separates its check from the write. An
// error stops the write: the call returns that error, wrapped, and never a
// *Error, since ThingSpace was not asked.
type SendGuard func(ctx context.Context) error

type sendGuardKey struct{}

// WithSendGuard returns a context whose state-changing calls run guard
// before each of their HTTP writes (see SendGuard).
func WithSendGuard(ctx context.Context, guard SendGuard) context.Context {
	return context.WithValue(ctx, sendGuardKey{}, guard)
}

func (c *Client) newRetryClient(base *http.Client) *retryablehttp.Client {
	var next http.RoundTripper
	var jar http.CookieJar
	if base != nil {
		next, jar = base.Transport, base.Jar
	}
	if next == nil {
		next = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: &attemptTransport{c: c, next: next},
			Jar:       jar,
			// Never follow redirects: VZ-M2M-Token is not a header net/http
			// strips on a cross-host redirect, and a redirected POST would
			// silently turn into a GET.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Logger:       nil, // the library's own logger would print URLs and errors
		RetryWaitMin: c.retryWaitMin,
		RetryWaitMax: c.retryWaitMax,
		RetryMax:     c.cfg.MaxRetries,
		CheckRetry:   c.checkRetry,
		Backoff:      c.backoff,
		ErrorHandler: func(resp *http.Response, err error, _ int) (*http.Response, error) {
			// Hand back the last answer (e.g. the final 5xx) instead of an
			// opaque "giving up" error, so it can be classified.
			return resp, err
		},
	}
}

func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	st := stateOf(ctx)
	if st == nil {
		return false, err
	}
	if err != nil {
		var le *limiterError
		var ge *guardError
		if errors.As(err, &le) || errors.As(err, &ge) || permanentTransportError(err) {
			return false, nil
		}
		if st.safe {
			return true, nil
		}
		return !st.attemptConnected, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests || st.lastCode == CodeGatewayThrottled {
		return false, nil
	}
	if st.safe && resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
		return true, nil
	}
	return false, nil
}

func permanentTransportError(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return true
	}
	return strings.Contains(err.Error(), "unsupported protocol scheme")
}

// backoff is exponential with jitter, honours a short Retry-After on 503,
// and never exceeds max.
func (c *Client) backoff(lo, hi time.Duration, attemptNum int, resp *http.Response) time.Duration {
	d := lo << uint(min(attemptNum, 16))
	if d <= 0 || d > hi {
		d = hi
	}
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	if resp != nil {
		if ra := parseRetryAfter(resp.Header.Get("Retry-After"), c.now()); ra > d {
			d = ra
		}
	}
	return min(max(d, lo), hi)
}

// send runs one logical request through retryablehttp. It returns the
// answer for any HTTP status; a *Error only when no answer was obtained.
func (c *Client) send(ctx context.Context, hc *httpCall, attempt *int) (*response, error) {
	st := &callState{
		op:          hc.op,
		safe:        safeOps[hc.op],
		observedReq: c.sec.observedBody(hc.body, hc.contentType, hc.personal...),
		personal:    hc.personal,
		attempt:     attempt,
	}
	var body any
	if len(hc.body) > 0 {
		body = hc.body
	}
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, callStateKey{}, st),
		hc.method, c.cfg.BaseURL+hc.path, body)
	if err != nil {
		return nil, &Error{Op: hc.op, Kind: KindInvalidInput, Err: fmt.Errorf("building request: %w", err)}
	}
	for k, vs := range hc.header {
		req.Header[k] = vs
	}
	if hc.contentType != "" {
		req.Header.Set("Content-Type", hc.contentType)
	}
	resp, err := c.rc.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, c.transportError(hc.op, st, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body) // already buffered by attemptTransport
	if err != nil {
		return nil, &Error{Op: hc.op, HTTPStatus: resp.StatusCode, Kind: KindTemporary, Sent: true,
			Err: fmt.Errorf("reading answer: %w", err)}
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b, personal: hc.personal}, nil
}

func (c *Client) transportError(op string, st *callState, err error) error {
	if st.guardErr != nil {
		return fmt.Errorf("%s not sent: %w", op, st.guardErr)
	}
	if st.limiterErr != nil {
		if e, ok := AsError(st.limiterErr); ok {
			cp := *e
			if cp.Op == "" {
				cp.Op = op
			}
			cp.Sent = cp.Sent || st.everConnected
			return &cp
		}
		return &Error{Op: op, Kind: KindTemporary, Sent: st.everConnected,
			Err: fmt.Errorf("waiting for limiter: %w", st.limiterErr)}
	}
	return &Error{Op: op, Kind: KindTemporary, Sent: st.everConnected, Err: err}
}

// attemptTransport wraps every HTTP attempt: pacing, the per-attempt
// timeout, connection tracking for the Sent rule, body buffering and the
// Observer.
type attemptTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req.Context())
	if st == nil {
		return t.next.RoundTrip(req)
	}
	c := t.c
	*st.attempt++
	attempt := *st.attempt
	st.attemptConnected = false
	st.lastCode = ""

	if c.cfg.Limiter != nil {
		if err := c.cfg.Limiter.Wait(req.Context(), st.op); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			st.limiterErr = err
			return nil, &limiterError{err}
		}
	}

	if guard, ok := req.Context().Value(sendGuardKey{}).(SendGuard); ok && guard != nil && !st.safe {
		if err := guard(req.Context()); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			st.guardErr = err
			return nil, &guardError{err}
		}
	}

	// The attempt's deadline starts after pacing, so a long Limiter wait
	// does not eat into HTTPTimeout.
	ctx, cancel := context.WithTimeout(req.Context(), c.cfg.HTTPTimeout)
	defer cancel()
	var connected atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	})

	started := c.now()
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	var body []byte
	if err == nil {
		body, err = readAllLimited(resp.Body, maxResponseBytes)
		resp.Body.Close()
	}
	elapsed := c.now().Sub(started)
	st.attemptConnected = connected.Load()
	st.everConnected = st.everConnected || st.attemptConnected

	x := Exchange{
		Op:          st.op,
		Method:      req.Method,
		Path:        req.URL.Path,
		RequestBody: st.observedReq,
		Attempt:     attempt,
		Started:     started,
		Duration:    elapsed,
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && req.Context().Err() == nil {
			err = fmt.Errorf("attempt timed out after %s: %w", c.cfg.HTTPTimeout, err)
		}
		x.Err = c.sec.scrubString(err.Error(), st.personal...)
		c.observe(req.Context(), x)
		return nil, err
	}

	x.StatusCode = resp.StatusCode
	if resp.StatusCode >= 300 {
		st.lastCode = parseErrorBody(body).Code
		x.Code = st.lastCode
	}
	x.ResponseBody = c.sec.observedBody(body, resp.Header.Get("Content-Type"), st.personal...)
	if c.cfg.Limiter != nil && (resp.StatusCode == http.StatusTooManyRequests || st.lastCode == CodeGatewayThrottled) {
		c.cfg.Limiter.Throttled(req.Context(), st.op, parseRetryAfter(resp.Header.Get("Retry-After"), c.now()))
	}
	c.observe(req.Context(), x)

	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

func (c *Client) observe(ctx context.Context, x Exchange) {
	c.log.LogAttrs(ctx, levelFor(x), "thingspace attempt",
		slog.String("op", x.Op), slog.String("method", x.Method), slog.String("path", x.Path),
		slog.Int("status", x.StatusCode), slog.String("code", x.Code), slog.Int("attempt", x.Attempt),
		slog.Duration("duration", x.Duration), slog.String("err", x.Err))
	if c.cfg.Observer != nil {
		c.cfg.Observer(ctx, x)
	}
}

func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading answer: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("answer larger than %d bytes", limit)
	}
	return b, nil
}
