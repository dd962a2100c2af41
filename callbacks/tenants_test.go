package callbacks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	basePath   = "/thingspace/callbacks"
	acmePath   = basePath + "/acme"
	acmeUser   = "acme-listener"
	acmePass   = "acme-s3cret"
	acmeICCID  = "89148000009876543210"
	acmeReq    = "7c1e2d3f-4a5b-4c6d-8e7f-901a2b3c4d5e"
	defaultReq = req1
)

// lockedBuffer is a log destination the server's goroutines write to while
// the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tenantsServer serves the default tenant at basePath and the tenant acme
// at acmePath, over HTTP, as process.NewReceiver mounts them.
func tenantsServer(t *testing.T) (srv *httptest.Server, r *Receiver, sig *recordingSignaler, st *db.Store, logs *lockedBuffer) {
	t.Helper()
	r, sig, st = newReceiver(t)
	r.Metrics = metrics.New()
	logs = &lockedBuffer{}
	r.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r.Listeners = []Listener{
		{Tenant: change.DefaultTenant, Path: basePath, Username: r.Username, Password: r.Password},
		{Tenant: "acme", Path: acmePath, Username: acmeUser, Password: acmePass},
	}
	mux := http.NewServeMux()
	require.NoError(t, r.Mount(mux))
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, r, sig, st, logs
}

// claimedAs creates a bulk change of tenant changing one device and claims
// its batch; requestID "" leaves the request's id unknown (the answer not
// received yet).
func claimedAs(t *testing.T, st *db.Store, tenant, device, requestID string) (bulkID string, changeID int64) {
	t.Helper()
	ctx := context.Background()
	bulkID = uuid.NewString()
	_, _, err := st.CreateBulkChange(ctx, db.NewBulkChange{ID: bulkID, Tenant: tenant, AccountName: "acct-" + tenant,
		Batches: 1, WorkflowID: api.BulkChangeWorkflowID(bulkID),
		Devices: []db.NewDeviceChange{{Seq: 1, RowNumber: 2, ICCID: device, Operation: "suspend", BatchNo: 1}}})
	require.NoError(t, err)
	req, devs, _, err := st.ClaimBatch(ctx, bulkID, 1, db.ClaimLimits{})
	require.NoError(t, err)
	require.Len(t, devs, 1)
	if requestID != "" {
		require.NoError(t, st.MarkRequestAccepted(ctx, req, requestID, nil))
	}
	return bulkID, devs[0].ID
}

// callbackOf is callback() for another device.
func callbackOf(device, user, pass, requestID string) string {
	return strings.ReplaceAll(callback(user, pass, requestID, "Success", ""), iccid, device)
}

func storedCount(t *testing.T, st *db.Store) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM callbacks`).Scan(&n))
	return n
}

// Each tenant's callbacks arrive at its own path, with its own listener
// credentials, and are stored as the tenant's and signalled.
func TestTenantsReceiveCallbacksAtTheirOwnPaths(t *testing.T) {
	srv, _, sig, st, _ := tenantsServer(t)
	ctx := context.Background()
	defBulk, defID := claimedAs(t, st, "", iccid, defaultReq)
	acmeBulk, acmeID := claimedAs(t, st, "acme", acmeICCID, acmeReq)

	require.Equal(t, http.StatusOK,
		postHTTP(t, srv.URL+basePath, callbackOf(iccid, "listener", "s3cret-listener", defaultReq)))
	require.Equal(t, http.StatusOK, postHTTP(t, srv.URL+acmePath, callbackOf(acmeICCID, acmeUser, acmePass, acmeReq)))

	for _, c := range []struct {
		tenant, bulk, device string
		id                   int64
	}{{change.DefaultTenant, defBulk, iccid, defID}, {"acme", acmeBulk, acmeICCID, acmeID}} {
		cbs, err := st.StoredCallbacks(ctx, c.id)
		require.NoError(t, err)
		require.Len(t, cbs, 1, c.tenant)
		require.Equal(t, c.tenant, cbs[0].Tenant)
		require.Equal(t, "signalled", cbs[0].SignalResult)
	}
	require.Len(t, sig.signals, 2)
	require.Equal(t, api.DeviceChangeWorkflowID(defBulk, iccid), sig.signals[0].WorkflowID)
	require.Equal(t, api.DeviceChangeWorkflowID(acmeBulk, acmeICCID), sig.signals[1].WorkflowID)
}

// A tenant's path takes only its own listener credentials: another
// tenant's are refused 401, nothing stored; a path of no tenant is not
// served.
func TestAnotherTenantsCredentialsAreRefused(t *testing.T) {
	srv, r, sig, st, logs := tenantsServer(t)
	claimedAs(t, st, "", iccid, defaultReq)
	claimedAs(t, st, "acme", acmeICCID, acmeReq)

	require.Equal(t, http.StatusUnauthorized,
		postHTTP(t, srv.URL+basePath, callbackOf(acmeICCID, acmeUser, acmePass, acmeReq)))
	require.Equal(t, http.StatusUnauthorized,
		postHTTP(t, srv.URL+acmePath, callbackOf(iccid, "listener", "s3cret-listener", defaultReq)))
	require.Equal(t, http.StatusUnauthorized,
		postHTTP(t, srv.URL+acmePath, callbackOf(acmeICCID, "listener", "s3cret-listener", acmeReq)),
		"the default tenant's credentials for acme's own request")
	require.Equal(t, http.StatusNotFound,
		postHTTP(t, srv.URL+basePath+"/globex", callbackOf(acmeICCID, acmeUser, acmePass, acmeReq)))

	require.Zero(t, storedCount(t, st), "nothing stored")
	require.Empty(t, sig.signals)
	require.Equal(t, 3.0, counted(t, r.Metrics, "unauthorized"))
	require.Contains(t, logs.String(), "tenant=acme")
	require.NotContains(t, logs.String(), acmePass)
	require.NotContains(t, logs.String(), "s3cret-listener")
}

// A callback whose requestId is one of tenant acme's requests, received at
// the default tenant's path with the default tenant's valid credentials, is
// refused 403: not stored, acme's device change not signalled. The same
// callback at acme's path is acme's.
func TestCallbackOfAnotherTenantsRequestIsRefused(t *testing.T) {
	srv, r, sig, st, logs := tenantsServer(t)
	ctx := context.Background()
	acmeBulk, acmeID := claimedAs(t, st, "acme", acmeICCID, acmeReq)
	body := callbackOf(acmeICCID, "listener", "s3cret-listener", acmeReq)

	require.Equal(t, http.StatusForbidden, postHTTP(t, srv.URL+basePath, body))
	require.Equal(t, http.StatusForbidden, postHTTP(t, srv.URL+basePath, body), "and again")
	// Another device of acme's request: the request decides.
	require.Equal(t, http.StatusForbidden,
		postHTTP(t, srv.URL+basePath, callbackOf(iccid, "listener", "s3cret-listener", acmeReq)))

	require.Zero(t, storedCount(t, st), "nothing stored")
	require.Empty(t, sig.signals, "acme's device change not signalled")
	require.Equal(t, 3.0, counted(t, r.Metrics, "wrong_tenant"))
	require.Zero(t, counted(t, r.Metrics, "stored"))
	require.Contains(t, logs.String(), "request of another tenant")
	require.Contains(t, logs.String(), "requestId="+acmeReq)
	require.NotContains(t, logs.String(), "s3cret-listener")
	require.NotContains(t, logs.String(), acmePass)

	require.Equal(t, http.StatusOK, postHTTP(t, srv.URL+acmePath, callbackOf(acmeICCID, acmeUser, acmePass, acmeReq)))
	cbs, err := st.StoredCallbacks(ctx, acmeID)
	require.NoError(t, err)
	require.Len(t, cbs, 1)
	require.Equal(t, 1, cbs[0].Copies)
	require.Len(t, sig.signals, 1)
	require.Equal(t, api.DeviceChangeWorkflowID(acmeBulk, acmeICCID), sig.signals[0].WorkflowID)
}

// A callback of a request no request of ours holds goes to the ICCID's
// change in flight awaiting its requestId only when that change is the
// receiving tenant's; otherwise it is stored unmatched, as the receiving
// tenant's.
func TestICCIDFallbackStaysWithinTheTenant(t *testing.T) {
	srv, _, sig, st, _ := tenantsServer(t)
	ctx := context.Background()
	acmeBulk, acmeID := claimedAs(t, st, "acme", acmeICCID, "") // its request's answer not received yet

	stray := uuid.NewString()
	require.Equal(t, http.StatusOK,
		postHTTP(t, srv.URL+basePath, callbackOf(acmeICCID, "listener", "s3cret-listener", stray)))
	require.Empty(t, sig.signals, "acme's change not signalled")
	var tenant string
	var matched *int64
	require.NoError(t, st.Pool.QueryRow(ctx, `SELECT tenant, device_change_id FROM callbacks WHERE request_id = $1`,
		stray).Scan(&tenant, &matched))
	require.Equal(t, change.DefaultTenant, tenant)
	require.Nil(t, matched, "stored unmatched")
	cbs, err := st.StoredCallbacks(ctx, acmeID)
	require.NoError(t, err)
	require.Empty(t, cbs)

	// At acme's path an unknown request's callback is its change's.
	require.Equal(t, http.StatusOK,
		postHTTP(t, srv.URL+acmePath, callbackOf(acmeICCID, acmeUser, acmePass, uuid.NewString())))
	require.Len(t, sig.signals, 1)
	require.Equal(t, api.DeviceChangeWorkflowID(acmeBulk, acmeICCID), sig.signals[0].WorkflowID)
	cbs, err = st.StoredCallbacks(ctx, acmeID)
	require.NoError(t, err)
	require.Len(t, cbs, 1)
	require.Equal(t, "acme", cbs[0].Tenant)
}

// Redelivery signals the stored callbacks of every tenant.
func TestRedeliveryOfEveryTenant(t *testing.T) {
	srv, r, sig, st, _ := tenantsServer(t)
	ctx := context.Background()
	defBulk, _ := claimedAs(t, st, "", iccid, defaultReq)
	acmeBulk, _ := claimedAs(t, st, "acme", acmeICCID, acmeReq)
	sig.err = errors.New("temporal unavailable")

	require.Equal(t, http.StatusOK,
		postHTTP(t, srv.URL+basePath, callbackOf(iccid, "listener", "s3cret-listener", defaultReq)))
	require.Equal(t, http.StatusOK, postHTTP(t, srv.URL+acmePath, callbackOf(acmeICCID, acmeUser, acmePass, acmeReq)))

	sig.err = nil
	sig.signals = nil
	n, err := r.RedeliverOnce(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	var got []string
	for _, s := range sig.signals {
		got = append(got, s.WorkflowID)
	}
	require.ElementsMatch(t, []string{api.DeviceChangeWorkflowID(defBulk, iccid),
		api.DeviceChangeWorkflowID(acmeBulk, acmeICCID)}, got)
}

// Mount refuses two tenants at one path and a path that is not one.
func TestMountRefusesAmbiguousPaths(t *testing.T) {
	r := &Receiver{Listeners: []Listener{
		{Tenant: change.DefaultTenant, Path: basePath, Username: "a", Password: "b"},
		{Tenant: "acme", Path: basePath, Username: "c", Password: "d"},
	}}
	require.ErrorContains(t, r.Mount(http.NewServeMux()), "tenants default and acme would receive callbacks at the same path")
	r.Listeners = []Listener{{Tenant: "acme", Path: "callbacks", Username: "c", Password: "d"}}
	require.ErrorContains(t, r.Mount(http.NewServeMux()), "does not start with /")
}

// A listener without credentials takes nothing, not even a body without
// credentials (an empty username and password would compare equal).
func TestListenerWithoutCredentialsTakesNothing(t *testing.T) {
	r, sig, st := newReceiver(t)
	inFlight(t, st)
	r.Username, r.Password = "", ""
	for _, body := range []string{
		callback("", "", req1, "Success", ""),
		strings.Replace(callback("", "", req1, "Success", ""), `"password":"",`, "", 1),
	} {
		require.Equal(t, http.StatusUnauthorized, post(r, body).Code)
	}
	require.Empty(t, sig.signals)
	require.Zero(t, storedCount(t, st))
}

// The URL a tenant registers extends callbacks.public_url as its path
// extends callbacks.path.
func TestCallbackURL(t *testing.T) {
	for _, c := range []struct{ public, tenant, want string }{
		{"https://cb.example.com/thingspace/callbacks", change.DefaultTenant, "https://cb.example.com/thingspace/callbacks"},
		{"https://cb.example.com/thingspace/callbacks", "", "https://cb.example.com/thingspace/callbacks"},
		{"https://cb.example.com/thingspace/callbacks", "acme", "https://cb.example.com/thingspace/callbacks/acme"},
		{"https://cb.example.com/thingspace/callbacks/", "acme", "https://cb.example.com/thingspace/callbacks/acme"},
		{"https://cb.example.com", "acme", "https://cb.example.com/acme"},
		{"https://cb.example.com:8443/cb?x=1", "acme", "https://cb.example.com:8443/cb/acme?x=1"},
	} {
		got, err := CallbackURL(c.public, c.tenant)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "%s for %s", c.public, c.tenant)
	}
	_, err := CallbackURL("not a url", "acme")
	require.ErrorContains(t, err, "callbacks.public_url is not a URL with a host")
}
