package callbacks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// recordingSignaler stands in for Temporal: it records signals and answers
// with a chosen error.
type recordingSignaler struct {
	mu      sync.Mutex
	signals []signal
	err     error
}

type signal struct {
	WorkflowID string
	Conf       api.Confirmation
}

func (r *recordingSignaler) SignalWorkflow(_ context.Context, workflowID, _, name string, arg any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name != api.ConfirmationSignal {
		return fmt.Errorf("unexpected signal %s", name)
	}
	r.signals = append(r.signals, signal{workflowID, arg.(api.Confirmation)})
	return r.err
}

const iccid = "89148000001234567895"

// ThingSpace's request ids are UUIDs.
const (
	req1       = "5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f70"
	reqUnknown = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"
)

// inFlight creates a bulk change with one device change sent to ThingSpace
// as request req1.
func inFlight(t *testing.T, st *db.Store) (bulkID string) {
	t.Helper()
	bulkID, req, _ := claimed(t, st)
	require.NoError(t, st.MarkRequestAccepted(context.Background(), req, req1, nil))
	return bulkID
}

func newReceiver(t *testing.T) (*Receiver, *recordingSignaler, *db.Store) {
	st := dbtest.New(t)
	sig := &recordingSignaler{}
	return &Receiver{
		Store:        st,
		Temporal:     sig,
		Username:     "listener",
		Password:     "s3cret-listener",
		MaxBodyBytes: 4096,
	}, sig, st
}

func post(r *Receiver, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/thingspace/callbacks", strings.NewReader(body)))
	return w
}

func callback(user, pass, requestID, status, fault string) string {
	m := map[string]any{
		"username": user, "password": pass, "requestId": requestID, "status": status,
		"deviceIds":     []map[string]string{{"id": iccid, "kind": "Iccid"}, {"id": "990000862471854", "kind": "imei"}},
		"callbackCount": 1, "maxCallbackThreshold": 4,
	}
	if fault != "" {
		m["faultResponse"] = map[string]string{"faultcode": fault, "faultstring": "no"}
	} else {
		m["deviceResponse"] = map[string]any{"suspendResponse": map[string]any{"deviceIds": []map[string]string{{"id": iccid, "kind": "iccid"}}}}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestCallbackStoredThenSignalled(t *testing.T) {
	r, sig, st := newReceiver(t)
	bulkID := inFlight(t, st)

	w := post(r, callback("listener", "s3cret-listener", req1, "Success", ""))

	require.Equal(t, http.StatusOK, w.Code)
	require.Len(t, sig.signals, 1)
	require.Equal(t, api.DeviceChangeWorkflowID(bulkID, iccid), sig.signals[0].WorkflowID)
	c := sig.signals[0].Conf
	require.True(t, c.Success)
	require.Equal(t, req1, c.RequestID)
	require.Equal(t, change.ByCallback, c.Source)
	cbs, err := st.StoredCallbacks(context.Background(), mustChange(t, st, bulkID))
	require.NoError(t, err)
	require.Len(t, cbs, 1)
	require.Equal(t, "signalled", cbs[0].SignalResult)
	require.NotContains(t, string(cbs[0].Payload), "s3cret-listener", "listener credentials are not stored")
	require.NotContains(t, string(cbs[0].Payload), `"username"`)
}

func TestDuplicateCallbackChangesNothing(t *testing.T) {
	r, sig, st := newReceiver(t)
	bulkID := inFlight(t, st)
	body := callback(
		"listener",
		"s3cret-listener",
		req1,
		"Failed",
		"UnifiedWebService.REQUEST_FAILED.DeviceNotFound",
	)

	require.Equal(t, http.StatusOK, post(r, body).Code)
	require.Equal(t, http.StatusOK, post(r, body).Code)

	cbs, err := st.StoredCallbacks(context.Background(), mustChange(t, st, bulkID))
	require.NoError(t, err)
	require.Len(t, cbs, 1, "one stored callback")
	require.Equal(t, 2, cbs[0].Copies)
	require.Equal(t, change.Code("REQUEST_FAILED.DeviceNotFound"), sig.signals[1].Conf.FaultCode)
	require.Equal(t, sig.signals[0].Conf, sig.signals[1].Conf, "the copy carries the same confirmation")
}

func TestCallbackWithWrongCredentialsIsRefused(t *testing.T) {
	r, sig, st := newReceiver(t)
	inFlight(t, st)

	for _, body := range []string{
		callback("listener", "wrong", req1, "Success", ""),
		callback("someone", "s3cret-listener", req1, "Success", ""),
		callback("", "", req1, "Success", ""),
	} {
		require.Equal(t, http.StatusUnauthorized, post(r, body).Code)
	}
	require.Empty(t, sig.signals)
	var n int
	require.NoError(t, st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM callbacks`).Scan(&n))
	require.Zero(t, n, "nothing stored")
}

func TestCallbackBodyLimits(t *testing.T) {
	r, _, _ := newReceiver(t)
	big := `{"username":"listener","password":"s3cret-listener","comment":"` + strings.Repeat("x", 5000) + `"}`
	require.Equal(t, http.StatusRequestEntityTooLarge, post(r, big).Code)
	require.Equal(t, http.StatusBadRequest, post(r, "not json").Code)
	require.Equal(
		t,
		http.StatusBadRequest,
		post(r, `{"username":"listener","password":"s3cret-listener"}`).Code,
		"no requestId or ICCID",
	)
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/thingspace/callbacks", nil))
	require.Equal(t, http.StatusMethodNotAllowed, w.Code)
}

func TestCallbackBeforeWorkflowExistsIsKept(t *testing.T) {
	r, sig, st := newReceiver(t)
	bulkID := inFlight(t, st)
	sig.err = serviceerror.NewNotFound("workflow not found")

	require.Equal(t, http.StatusOK, post(r, callback("listener", "s3cret-listener", req1, "Success", "")).Code)

	cbs, err := st.StoredCallbacks(context.Background(), mustChange(t, st, bulkID))
	require.NoError(t, err)
	require.Len(t, cbs, 1, "kept for the workflow to find when it starts waiting")
	require.Equal(t, "workflow_not_running", cbs[0].SignalResult)
}

func TestCallbackForUnknownRequestIsKept(t *testing.T) {
	r, sig, st := newReceiver(t)

	require.Equal(t, http.StatusOK, post(r, callback("listener", "s3cret-listener", reqUnknown, "Success", "")).Code)

	require.Empty(t, sig.signals, "no device change to signal")
	var result string
	require.NoError(
		t,
		st.Pool.QueryRow(context.Background(), `SELECT signal_result FROM callbacks WHERE request_id = $1`, reqUnknown).
			Scan(&result),
	)
	require.Equal(t, "unmatched", result)
}

// Temporal unreachable: a stored callback is answered 200 (ThingSpace
// would give up after its few attempts), and delivered by the redelivery
// loop once Temporal answers; then it is not delivered again.
func TestSignalFailureIsAnsweredOnceStoredAndRedelivered(t *testing.T) {
	r, sig, st := newReceiver(t)
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	bulkID := inFlight(t, st)
	sig.err = errors.New("temporal unavailable")
	ctx := context.Background()

	require.Equal(t, http.StatusOK, postHTTP(t, srv.URL, callback("listener", "s3cret-listener", req1, "Success", "")))

	cbs, err := st.StoredCallbacks(ctx, mustChange(t, st, bulkID))
	require.NoError(t, err)
	require.Len(t, cbs, 1, "stored even though the signal failed")
	require.Equal(t, "signal_failed", cbs[0].SignalResult)

	n, err := r.RedeliverOnce(ctx, 0)
	require.Error(t, err, "Temporal still unreachable")
	require.Zero(t, n)

	sig.err = nil
	sig.signals = nil
	n, err = r.RedeliverOnce(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Len(t, sig.signals, 1)
	require.Equal(t, api.DeviceChangeWorkflowID(bulkID, iccid), sig.signals[0].WorkflowID)
	require.Equal(t, req1, sig.signals[0].Conf.RequestID)
	cbs, err = st.StoredCallbacks(ctx, mustChange(t, st, bulkID))
	require.NoError(t, err)
	require.Equal(t, "signalled", cbs[0].SignalResult)

	n, err = r.RedeliverOnce(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n, "delivered once")
}

func mustChange(t *testing.T, st *db.Store, bulkID string) int64 {
	t.Helper()
	var id int64
	require.NoError(
		t,
		st.Pool.QueryRow(context.Background(), `SELECT id FROM device_changes WHERE bulk_change_id = $1`, bulkID).
			Scan(&id),
	)
	return id
}

// A callback PostgreSQL cannot store (a NUL character, invalid UTF-8) is
// refused with 400: a 503 would have ThingSpace send it again in vain.
func TestUnstorableCallbackIsRefused(t *testing.T) {
	r, sig, st := newReceiver(t)
	bulkID := inFlight(t, st)
	good := callback("listener", "s3cret-listener", req1, "Success", "")
	for _, body := range []string{
		strings.Replace(good, `"Success"`, `"Succ\u0000ess"`, 1),
		strings.Replace(good, `"Success"`, "\"Succ\xffess\"", 1),
	} {
		require.Equal(t, http.StatusBadRequest, post(r, body).Code)
	}
	require.Empty(t, sig.signals)
	cbs, err := st.StoredCallbacks(context.Background(), mustChange(t, st, bulkID))
	require.NoError(t, err)
	require.Empty(t, cbs)
}
