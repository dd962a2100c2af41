// Package callbacks is the HTTP endpoint ThingSpace calls with the outcome
// of each device's state change (CarrierService callbacks). It stores every
// callback before acknowledging it and signals the device's workflow.
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
	"strings"
	"time"
	"unicode/utf8"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

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
	// Username and Password are the credentials registered with the
	// listener; ThingSpace echoes them in every callback body.
	Username     string
	Password     string
	MaxBodyBytes int64
	Metrics      *metrics.Metrics
	Logger       *slog.Logger
}

// Handler returns the endpoint, to mount at the registered path.
func (r *Receiver) Handler() http.Handler {
	return http.HandlerFunc(r.serve)
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
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
	n, refused := r.parseCallback(body)
	if refused != nil {
		r.count(refused.result)
		if refused.status == http.StatusUnauthorized {
			r.log().Warn("callback refused: wrong listener credentials", "remote", req.RemoteAddr)
		}
		http.Error(w, refused.text, refused.status)
		return
	}
	ctx := req.Context()
	cb, first, err := r.Store.StoreCallback(ctx, *n)
	if err != nil {
		// Not stored: ThingSpace must try again.
		r.count("store_failed")
		r.log().Error("callback not stored", "requestId", n.RequestID, "iccid", n.ICCID, "error", err)
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
	if err := r.signal(ctx, cb); err != nil {
		r.log().Warn("callback stored; its workflow could not be signalled yet, it will be redelivered",
			"requestId", n.RequestID,
			"callback", cb.ID,
			"error", err)
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
		if err := r.signal(ctx, &cbs[i]); err != nil {
			return n, fmt.Errorf("redeliver callback %d: %w", cbs[i].ID, err)
		}
		n++
	}
	return n, nil
}

// refusal is why a callback is answered without being stored.
type refusal struct {
	status int    // HTTP status of the answer
	result string // label of the callbacks metric
	text   string // body of the answer
}

// parseCallback checks a callback body: a ThingSpace callback carrying the
// registered listener credentials, a request id and an ICCID. It returns
// the callback to store, listener credentials removed, or why it is
// refused. It needs neither the database nor Temporal.
//
// The body is read by thingspace.ParseCallbackMessage, which tolerates the
// shapes ThingSpace has not confirmed (counts as strings, a deviceResponse
// or faultResponse that is not an object): refusing such a callback would
// make ThingSpace retry it in vain and leave the device to polling.
func (r *Receiver) parseCallback(body []byte) (*db.NewCallback, *refusal) {
	parsed, err := thingspace.ParseCallbackMessage(body)
	if err != nil {
		return nil, &refusal{http.StatusBadRequest, "invalid", "body is not a ThingSpace callback"}
	}
	msg := *parsed
	if !r.authorized(msg) {
		return nil, &refusal{http.StatusUnauthorized, "unauthorized", "unauthorized"}
	}
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

// authorized compares the body's credentials with the registered ones in
// constant time, both always compared.
func (r *Receiver) authorized(msg thingspace.CallbackMessage) bool {
	u := subtle.ConstantTimeCompare([]byte(msg.Username), []byte(r.Username))
	p := subtle.ConstantTimeCompare([]byte(msg.Password), []byte(r.Password))
	return u&p == 1
}

// signal delivers the callback to its device's workflow. A callback that
// matches no device change, or whose workflow does not exist (not started
// yet, or finished), stays stored: the workflow reads stored callbacks when
// it starts waiting.
func (r *Receiver) signal(ctx context.Context, cb *db.Callback) error {
	if cb.DeviceChangeID == nil || cb.BulkChangeID == "" {
		r.signalResult(ctx, cb, "unmatched")
		return nil
	}
	conf := cb.Stored().Confirmation()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
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
