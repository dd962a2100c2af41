// Package callbacks is the HTTP endpoint ThingSpace calls with the outcome
// of each device's state change (CarrierService callbacks). It stores every
// callback before acknowledging it and signals the device's workflow. Each
// tenant has its own endpoint (path and listener credentials); a callback
// is the tenant's whose endpoint received it.
package callbacks

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Signaler is the part of the Temporal client the receiver uses.
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

var _ Signaler = client.Client(nil)

// Receiver handles ThingSpace's callback POSTs.
type Receiver struct {
	Store    *db.Store
	Temporal Signaler
	// Username and Password are the default tenant's listener credentials
	// (Handler); ThingSpace echoes them in every callback body.
	Username string
	Password string
	// Listeners are the endpoints Mount serves, one per tenant.
	Listeners    []Listener
	MaxBodyBytes int64
	// AllowedSources are the networks callbacks may come from (empty: any);
	// others are refused 403 before their body is read.
	AllowedSources []netip.Prefix
	// TrustedProxies are the proxies (load balancers) in front of the
	// receiver: only when the direct peer is one of them is
	// X-Forwarded-For read, and the right-most address in it that is not
	// a trusted proxy is the source. Anyone else can write that header.
	TrustedProxies []netip.Prefix
	// MaxConcurrent bounds the callbacks handled at once (0:
	// DefaultMaxConcurrent); more are answered 503 with Retry-After, which
	// ThingSpace retries, instead of piling up connections to PostgreSQL
	// and memory.
	MaxConcurrent int
	Metrics       *metrics.Metrics
	Logger        *slog.Logger

	slotsOnce sync.Once
	slots     chan struct{}
	// signalsPausedUntil (Unix nanoseconds): after a failed signal the
	// answer to ThingSpace does not wait for Temporal again until then;
	// Redeliver delivers what is stored meanwhile.
	signalsPausedUntil atomic.Int64
}

// DefaultMaxConcurrent is the number of callbacks handled at once when
// MaxConcurrent is 0.
const DefaultMaxConcurrent = 64

// Signals made while answering (Redeliver's have signalTimeout).
const (
	// answerSignalTimeout bounds the signal sent before answering: a
	// healthy Temporal answers in milliseconds, and ThingSpace's wait for
	// the answer should not depend on an unhealthy one.
	answerSignalTimeout = 3 * time.Second
	signalTimeout       = 10 * time.Second
	// signalPause is how long after a failed signal the answers stop
	// trying (Redeliver's interval).
	signalPause = 15 * time.Second
)

// Listener is one tenant's endpoint: where its callbacks arrive and the
// listener credentials registered for them. The source allow list, the
// concurrency cap and the body limit are the receiver's, shared by all.
type Listener struct {
	// Tenant is the tenant whose callbacks arrive here ("" = the default
	// tenant).
	Tenant string
	// Path is where Mount serves it (config.Tenant.CallbackPath).
	Path     string
	Username string
	Password string
}

// CallbackURL is the URL a tenant registers with ThingSpace: publicURL
// (callbacks.public_url, the default tenant's) for the default tenant,
// publicURL + "/" + id for a named one, as config.Tenant.CallbackPath
// extends callbacks.path. A query or fragment of publicURL stays at the
// end.
func CallbackURL(publicURL, tenant string) (string, error) {
	if tenant == "" || tenant == change.DefaultTenant {
		return publicURL, nil
	}
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("callbacks.public_url is not a URL with a host")
	}
	u = u.JoinPath(tenant)
	return u.String(), nil
}

// Handler returns the default tenant's endpoint (Username and Password),
// to mount at the registered path: the receiver of a single tenant.
func (r *Receiver) Handler() http.Handler {
	return r.TenantHandler(Listener{Tenant: change.DefaultTenant, Username: r.Username, Password: r.Password})
}

// TenantHandler returns a tenant's endpoint, its listener credentials l's.
func (r *Receiver) TenantHandler(l Listener) http.Handler {
	if l.Tenant == "" {
		l.Tenant = change.DefaultTenant
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { r.serve(l, w, req) })
}

// Mount serves every listener at its path on mux. Each path checks its own
// tenant's credentials: another tenant's are refused 401 there.
func (r *Receiver) Mount(mux *http.ServeMux) error {
	seen := map[string]string{}
	for _, l := range r.Listeners {
		if !strings.HasPrefix(l.Path, "/") {
			return fmt.Errorf("callback path %q of tenant %s does not start with /", l.Path, l.Tenant)
		}
		if other, ok := seen[l.Path]; ok {
			return fmt.Errorf("tenants %s and %s would receive callbacks at the same path %s", other, l.Tenant, l.Path)
		}
		seen[l.Path] = l.Tenant
		mux.Handle(l.Path, r.TenantHandler(l))
	}
	return nil
}

func (r *Receiver) serve(l Listener, w http.ResponseWriter, req *http.Request) {
	if src, ok := r.sourceAllowed(req); !ok {
		r.count("forbidden")
		r.log().Warn("callback refused: source not allowed", "source", src, "peer", req.RemoteAddr)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !r.acquire() {
		r.count("busy")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy, try again", http.StatusServiceUnavailable)
		return
	}
	defer r.release()
	limit := r.MaxBodyBytes
	if limit <= 0 {
		limit = 1 << 20
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			r.count("too_large")
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.count("invalid")
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	n, refused := r.parseCallback(l, body)
	if refused != nil {
		r.count(refused.result)
		if refused.status == http.StatusUnauthorized {
			r.log().Warn("callback refused: wrong listener credentials", "tenant", l.Tenant, "remote", req.RemoteAddr)
		}
		http.Error(w, refused.text, refused.status)
		return
	}
	ctx := req.Context()
	cb, first, err := r.Store.StoreCallback(ctx, *n)
	if errors.Is(err, db.ErrOtherTenant) {
		// Not stored, not signalled: this tenant's credentials decide
		// nothing of another tenant's changes. 403, not 503: trying again
		// changes nothing. The answer says no more than "forbidden": whose
		// request it is is no business of the sender's.
		r.count("wrong_tenant")
		r.log().Warn("callback refused: request of another tenant", "tenant", l.Tenant, "requestId", n.RequestID,
			"remote", req.RemoteAddr, "error", err)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if err != nil {
		// Not stored: ThingSpace must try again.
		r.count("store_failed")
		r.log().Error("callback not stored", "tenant", l.Tenant, "requestId", n.RequestID, "iccid", n.ICCID, "error", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	if first {
		r.count("stored")
	} else {
		r.count("duplicate")
	}
	// Stored is enough to answer 2xx, whatever Temporal's state: a callback
	// whose signal fails (or is never attempted, this process dying now) is
	// delivered by Redeliver once Temporal answers, and the device's
	// workflow reads the stored callbacks when its timer fires anyway.
	// Answering 503 instead would have ThingSpace give up after its few
	// attempts while Temporal is down. A duplicate is signalled too (the
	// first signal may have been lost); the workflow takes only the first
	// confirmation.
	// While signals fail, the answer does not wait for Temporal: the
	// callback stays unsignalled for Redeliver.
	if !r.signalsPaused() {
		if err := r.signal(ctx, cb, answerSignalTimeout); err != nil {
			r.pauseSignals()
			r.log().Warn("callback stored; its workflow could not be signalled yet, it will be redelivered",
				"requestId", n.RequestID,
				"callback", cb.ID,
				"error", err)
		}
	}
	w.WriteHeader(http.StatusOK)
}

// Redelivery settings (Redeliver).
const (
	redeliverSettle = 30 * time.Second
	redeliverBatch  = 200
)

// Redeliver signals again, every interval until ctx ends, the stored
// callbacks of changes still in flight whose signal failed or was never
// attempted. It stops a round at the first failure (Temporal still
// unreachable) and tries again at the next.
func (r *Receiver) Redeliver(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.RedeliverOnce(ctx, redeliverSettle); err != nil && ctx.Err() == nil {
			r.log().Warn("callback redelivery: will try again", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RedeliverOnce signals the callbacks waiting for a signal, last received
// more than settle ago, and returns how many were delivered.
func (r *Receiver) RedeliverOnce(ctx context.Context, settle time.Duration) (int, error) {
	cbs, err := r.Store.CallbacksToSignal(ctx, settle, redeliverBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range cbs {
		if err := r.signal(ctx, &cbs[i], signalTimeout); err != nil {
			r.pauseSignals()
			return n, fmt.Errorf("redeliver callback %d: %w", cbs[i].ID, err)
		}
		n++
	}
	if n > 0 {
		// Temporal answers again: so may the answers' signals.
		r.signalsPausedUntil.Store(0)
	}
	return n, nil
}

func (r *Receiver) signalsPaused() bool {
	return time.Now().UnixNano() < r.signalsPausedUntil.Load()
}

func (r *Receiver) pauseSignals() {
	r.signalsPausedUntil.Store(time.Now().Add(signalPause).UnixNano())
}

// acquire takes one of the MaxConcurrent slots, if one is free.
func (r *Receiver) acquire() bool {
	r.slotsOnce.Do(func() {
		n := r.MaxConcurrent
		if n <= 0 {
			n = DefaultMaxConcurrent
		}
		r.slots = make(chan struct{}, n)
	})
	select {
	case r.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *Receiver) release() { <-r.slots }

// sourceAllowed says whether the request comes from an allowed source, and
// which address that is (for the log).
func (r *Receiver) sourceAllowed(req *http.Request) (netip.Addr, bool) {
	if len(r.AllowedSources) == 0 {
		return netip.Addr{}, true
	}
	src, ok := r.source(req)
	return src, ok && containsAddr(r.AllowedSources, src)
}

// source is the request's source address: its direct peer, or when that
// is a trusted proxy, the right-most X-Forwarded-For address that is not
// one (the left-most when all are). An unreadable address there means the
// source cannot be told: not ok.
func (r *Receiver) source(req *http.Request) (netip.Addr, bool) {
	peer, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	src := peer.Addr().Unmap()
	if !containsAddr(r.TrustedProxies, src) {
		return src, true
	}
	var hops []string
	for _, v := range req.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(strings.TrimSpace(hops[i]))
		if !ok {
			return netip.Addr{}, false
		}
		src = a
		if !containsAddr(r.TrustedProxies, a) {
			break
		}
	}
	return src, true
}

// parseHop reads an X-Forwarded-For address, with or without a port.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func containsAddr(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// refusal is why a callback is answered without being stored.
type refusal struct {
	status int    // HTTP status of the answer
	result string // label of the callbacks metric
	text   string // body of the answer
}

// parseCallback checks a callback body received at l: a ThingSpace callback
// carrying l's listener credentials, a request id and an ICCID. It returns
// the callback to store (l's tenant's), listener credentials removed, or
// why it is refused. It needs neither the database nor Temporal.
//
// The body is read by thingspace.ParseCallbackMessage, which tolerates the
// shapes ThingSpace has not confirmed (counts as strings, a deviceResponse
// or faultResponse that is not an object): refusing such a callback would
// make ThingSpace retry it in vain and leave the device to polling.
func (r *Receiver) parseCallback(l Listener, body []byte) (*db.NewCallback, *refusal) {
	// The credentials first, and nothing else: the rest of a body is read
	// only once it carries them. Decoding into a struct of the two members
	// only checks the rest's syntax (bounded by MaxBodyBytes), and reads
	// them as the full parse does (last of duplicate members, names
	// matched without case).
	var creds struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal(body, &creds); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return nil, &refusal{http.StatusBadRequest, "invalid", "body is not JSON"}
		}
		// Credentials that are not strings are not the registered ones.
		return nil, &refusal{http.StatusUnauthorized, "unauthorized", "unauthorized"}
	}
	if !l.authorized(creds.Username, creds.Password) {
		return nil, &refusal{http.StatusUnauthorized, "unauthorized", "unauthorized"}
	}
	parsed, err := thingspace.ParseCallbackMessage(body)
	if err != nil {
		return nil, &refusal{http.StatusBadRequest, "invalid", "body is not a ThingSpace callback"}
	}
	msg := *parsed
	iccid := msg.ICCID()
	if msg.RequestID == "" || iccid == "" {
		return nil, &refusal{http.StatusBadRequest, "invalid", "callback needs a requestId and an ICCID"}
	}
	if !thingspace.IsRequestID(msg.RequestID) {
		// ThingSpace's requestIds are UUIDs; anything else is not one of
		// its callbacks, and would only carry an arbitrary string (up to
		// the body limit) into signals and rows.
		return nil, &refusal{http.StatusBadRequest, "invalid", "requestId is not a ThingSpace request id (a UUID)"}
	}
	if len(iccid) > maxICCIDLen {
		return nil, &refusal{http.StatusBadRequest, "invalid", "ICCID is too long"}
	}
	if !storable(body, msg.CallbackCount) {
		// PostgreSQL would refuse it: answering 503 would have ThingSpace
		// send it again and again for nothing.
		return nil, &refusal{
			http.StatusBadRequest,
			"invalid",
			"callback cannot be stored: NUL character, invalid UTF-8 or callbackCount out of range",
		}
	}
	payload, err := redactedPayload(body)
	if err != nil {
		return nil, &refusal{http.StatusBadRequest, "invalid", "body is not a JSON object"}
	}
	return &db.NewCallback{
		Tenant:    l.Tenant,
		RequestID: msg.RequestID, ICCID: iccid, Status: thingspace.BoundStatus(msg.Status),
		FaultCode: faultCode(msg), FaultString: faultString(msg), MSISDN: msisdn(msg),
		CallbackCount: msg.CallbackCount, Payload: payload,
	}, nil
}

// maxICCIDLen bounds a callback's ICCID (ICCIDs have 19 or 20 digits; some
// kinds of device ids are longer, none by much).
const maxICCIDLen = 64

// msisdn is the callback's MSISDN when it looks like one: a longer value
// is no telephone number and is not stored.
func msisdn(m thingspace.CallbackMessage) string {
	if v := m.MSISDN(); len(v) <= 32 {
		return v
	}
	return ""
}

// storable says whether PostgreSQL can store the callback: jsonb and text
// refuse NUL characters and invalid UTF-8, and the count is an int.
func storable(body []byte, count int) bool {
	return utf8.Valid(body) && !bytes.Contains(bytes.ToLower(body), []byte(`\u0000`)) &&
		count >= 0 && count <= math.MaxInt32
}

// authorized compares the body's credentials with the listener's in
// constant time, both always compared. A listener without credentials
// (a receiver with no default tenant, Handler) takes nothing: an empty
// username and password would otherwise match a body without them.
func (l Listener) authorized(username, password string) bool {
	u := subtle.ConstantTimeCompare([]byte(username), []byte(l.Username))
	p := subtle.ConstantTimeCompare([]byte(password), []byte(l.Password))
	return u&p == 1 && l.Username != "" && l.Password != ""
}

// signal delivers the callback to its device's workflow. A callback that
// matches no device change, or whose workflow does not exist (not started
// yet, or finished), stays stored: the workflow reads stored callbacks when
// it starts waiting.
func (r *Receiver) signal(ctx context.Context, cb *db.Callback, timeout time.Duration) error {
	if cb.DeviceChangeID == nil || cb.BulkChangeID == "" {
		r.signalResult(ctx, cb, "unmatched")
		return nil
	}
	conf := activities.CallbackConfirmation(*cb)
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := r.Temporal.SignalWorkflow(
		sctx,
		api.DeviceChangeWorkflowID(cb.BulkChangeID, cb.ICCID),
		"",
		api.ConfirmationSignal,
		conf,
	)
	var nf *serviceerror.NotFound
	switch {
	case err == nil:
		r.signalResult(ctx, cb, "signalled")
	case errors.As(err, &nf):
		r.signalResult(ctx, cb, "workflow_not_running")
	default:
		r.signalResult(ctx, cb, "signal_failed")
		return fmt.Errorf("signal device workflow: %w", err)
	}
	return nil
}

func (r *Receiver) signalResult(ctx context.Context, cb *db.Callback, result string) {
	if r.Metrics != nil {
		r.Metrics.CallbackSignals.WithLabelValues(result).Inc()
	}
	if err := r.Store.SetCallbackSignalResult(context.WithoutCancel(ctx), cb.ID, result); err != nil {
		r.log().Warn("could not record signal result", "callback", cb.ID, "error", err)
	}
}

func (r *Receiver) count(result string) {
	if r.Metrics != nil {
		r.Metrics.Callbacks.WithLabelValues(result).Inc()
	}
}

func (r *Receiver) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// redactedPayload is the raw callback without the listener credentials
// ThingSpace echoes in it. Members are dropped in any spelling that
// encoding/json matches to the credential fields (it compares names with
// Unicode case folding, as strings.EqualFold does), so "Password" or a
// second "PASSWORD" cannot carry them into storage.
func redactedPayload(body []byte) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	for k := range m {
		if strings.EqualFold(k, "username") || strings.EqualFold(k, "password") {
			delete(m, k)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	// And whatever else a body may carry that is not to be stored
	// (credentials, place-of-use members) in any spelling.
	return thingspace.RedactJSON(b), nil
}

func faultCode(m thingspace.CallbackMessage) string {
	if m.FaultResponse == nil {
		return ""
	}
	return thingspace.BoundCode(m.FaultResponse.FaultCode)
}

func faultString(m thingspace.CallbackMessage) string {
	if m.FaultResponse == nil {
		return ""
	}
	return thingspace.BoundText(thingspace.FaultText(m.FaultResponse.FaultString))
}
