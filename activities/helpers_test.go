package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/revio"
	"github.com/iot-ops/tsbulk/thingspace"
)

// Rev.io simulator credentials shared by the simulator and the client.
const (
	revioLogin  = "tsbulk-api"
	revioCode   = "SANDBOX1"
	revioPass   = "revio-test-password"
	revioSubKey = "revio-test-subscription-key"
)

// Endpoint keys of the ThingSpace simulator's Stats.Requests.
const (
	epSuspend  = "POST /api/m2m/v1/devices/actions/suspend"
	epRestore  = "POST /api/m2m/v1/devices/actions/restore"
	epActivate = "POST /api/m2m/v1/devices/actions/activate"
	epAdd      = "POST /api/m2m/v1/devices/actions/add"
	epList     = "POST /api/m2m/v1/devices/actions/list"
)

// setup tunes a harness before it is built.
type setup struct {
	sim thingspacesim.Config
	// clientTimeout is the ThingSpace client's HTTPTimeout (default 5s).
	clientTimeout time.Duration
	// clientSecret overrides the ThingSpace client secret (refused
	// credentials).
	clientSecret string
	// clientAccount is the ThingSpace client's default account (default
	// thingspacesim.DefaultAccount).
	clientAccount string
	revio         revsim.Config
	// revioPassword overrides the Rev.io client's password.
	revioPassword string
}

// harness is one test's world: its own database, a ThingSpace simulator and
// a Rev.io simulator behind real HTTP servers, the activities wired to them,
// and a Temporal test activity environment to run them in.
type harness struct {
	t        *testing.T
	store    *db.Store
	sim      *thingspacesim.Simulator
	rsim     *revsim.Simulator
	acts     *activities.Activities
	temporal *fakeTemporal
	env      *testsuite.TestActivityEnvironment
	revioURL string
	// tsURL is the ThingSpace simulator's base URL, for tests that build
	// a client of their own (newThingSpaceClient).
	tsURL string
	// clientTimeout is the ThingSpace client's HTTPTimeout.
	clientTimeout time.Duration
}

// pendingAnHour keeps every change ThingSpace accepts pending for the
// length of a test: no completion, no callback.
func pendingAnHour(s *setup) { s.sim.CompletionDelay = time.Hour }

func newHarness(t *testing.T, opts ...func(*setup)) *harness {
	t.Helper()
	s := setup{clientTimeout: 5 * time.Second, clientAccount: thingspacesim.DefaultAccount,
		revio: revsim.Config{
			Login:           revioLogin,
			ClientCode:      revioCode,
			Password:        revioPass,
			SubscriptionKey: revioSubKey,
			CallsPerMinute:  -1,
		}}
	s.sim.Seed = 1
	s.sim.CallbackRetryInterval = -1
	for _, o := range opts {
		o(&s)
	}

	store := dbtest.New(t)

	sim := thingspacesim.New(s.sim)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close) // runs first: releases stalled answers

	rsim := revsim.New(s.revio)
	rsrv := httptest.NewServer(rsim.Handler())
	t.Cleanup(rsrv.Close)
	t.Cleanup(rsim.Close)

	fake := &fakeTemporal{finished: map[string]bool{}, described: map[string]enumspb.WorkflowExecutionStatus{}}
	acts := &activities.Activities{
		Store:    store,
		Temporal: fake,
		Logger:   slog.New(slog.DiscardHandler),
	}
	auditor := &activities.Auditor{Store: store, Logger: acts.Logger}
	secret := thingspacesim.DefaultClientSecret
	if s.clientSecret != "" {
		secret = s.clientSecret
	}
	ts, err := thingspace.New(thingspace.Config{
		BaseURL: srv.URL, ClientID: thingspacesim.DefaultClientID, ClientSecret: secret,
		Username: thingspacesim.DefaultUsername, Password: thingspacesim.DefaultPassword, AccountName: s.clientAccount,
		HTTPTimeout: s.clientTimeout, Observer: auditor.ThingSpace,
	})
	require.NoError(t, err)
	acts.ThingSpace = ts

	password := revioPass
	if s.revioPassword != "" {
		password = s.revioPassword
	}
	rv, err := revio.New(revio.Config{BaseURL: rsrv.URL, Login: revioLogin, ClientCode: revioCode, Password: password,
		SubscriptionKey: revioSubKey, CallsPerMinute: -1, MaxRetries: -1, HTTPTimeout: 5 * time.Second, Observer: auditor.Revio})
	require.NoError(t, err)
	acts.Revio = rv

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)

	return &harness{t: t, store: store, sim: sim, rsim: rsim, acts: acts, temporal: fake, env: env, revioURL: rsrv.URL,
		tsURL: srv.URL, clientTimeout: s.clientTimeout}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// run executes an activity in the test environment and decodes its result
// into out (when not nil).
func (h *harness) run(out any, fn any, args ...any) error {
	h.t.Helper()
	v, err := h.env.ExecuteActivity(fn, args...)
	if err != nil {
		return err
	}
	if out != nil && v != nil && v.HasValue() {
		require.NoError(h.t, v.Get(out))
	}
	return nil
}

// result runs an activity with its input and returns its result.
func result[R any](h *harness, act, in any) (*R, error) {
	h.t.Helper()
	res := new(R)
	if err := h.run(res, act, in); err != nil {
		return nil, err
	}
	return res, nil
}

// mustResult is result for an activity that must succeed.
func mustResult[R any](h *harness, act, in any) *R {
	h.t.Helper()
	res, err := result[R](h, act, in)
	require.NoError(h.t, err)
	return res
}

func (h *harness) sendBatch(bulkID string, batch int) (*activities.SendBatchResult, error) {
	h.t.Helper()
	in := activities.SendBatchInput{BulkChangeID: bulkID, BatchNo: batch}
	return result[activities.SendBatchResult](h, h.acts.SendBatch, in)
}

func (h *harness) mustSendBatch(bulkID string, batch int) *activities.SendBatchResult {
	h.t.Helper()
	in := activities.SendBatchInput{BulkChangeID: bulkID, BatchNo: batch}
	return mustResult[activities.SendBatchResult](h, h.acts.SendBatch, in)
}

// load runs LoadDeviceChange: the device change as its workflow reads it
// when it starts.
func (h *harness) load(id int64) *activities.DeviceState {
	h.t.Helper()
	return mustResult[activities.DeviceState](h, h.acts.LoadDeviceChange, id)
}

// requireSyncFault checks that the device's workflow, when it starts, sees
// the refusal ThingSpace answered with the code, and returns what it reads.
func (h *harness) requireSyncFault(id int64, code string) *activities.DeviceState {
	h.t.Helper()
	st := h.load(id)
	require.NotNil(h.t, st.Sync, "the device's workflow sees the refusal when it starts")
	require.Equal(h.t, change.Code(code), st.Sync.FaultCode)
	return st
}

// seed adds devices to the ThingSpace simulator.
func (h *harness) seed(devs ...thingspacesim.DeviceSeed) {
	h.t.Helper()
	require.NoError(h.t, h.sim.Seed(devs...))
}

// devices makes n device seeds in a state, with ICCIDs unique to prefix.
func devices(n int, prefix, state string) []thingspacesim.DeviceSeed {
	return thingspacesim.GenerateDevices(n, prefix, state)
}

// changeSpec is one device change of a bulk change made by newBulk.
type changeSpec struct {
	seed    thingspacesim.DeviceSeed
	op      change.Operation
	batch   int
	params  db.ChangeParams
	ppu     *thingspace.PlaceOfUse
	billing *db.BillingData
}

func changes(op change.Operation, batch int, seeds ...thingspacesim.DeviceSeed) []changeSpec {
	out := make([]changeSpec, len(seeds))
	for i, s := range seeds {
		out[i] = changeSpec{seed: s, op: op, batch: batch}
	}
	return out
}

// activations are changes activating the devices on the test service plan
// in a ZIP code.
func activations(zip string, batch int, seeds ...thingspacesim.DeviceSeed) []changeSpec {
	out := changes("activate", batch, seeds...)
	for i := range out {
		out[i].params = db.ChangeParams{ServicePlan: "M2M_FLEX_5GB", MdnZipCode: zip}
	}
	return out
}

// withPPU gives every change of cs the same Primary Place of Use.
func withPPU(ppu *thingspace.PlaceOfUse, cs []changeSpec) []changeSpec {
	for i := range cs {
		cs[i].ppu = ppu
	}
	return cs
}

// newBulk writes a bulk change of the account with the device changes,
// and returns its id and the device change ids by ICCID.
func (h *harness) newBulk(account string, cs ...changeSpec) (string, map[string]int64) {
	h.t.Helper()
	id := uuid.NewString()
	n := db.NewBulkChange{
		ID:          id,
		AccountName: account,
		SourceName:  "test.csv",
		SubmittedBy: "test",
		WorkflowID:  "bulk-change/" + id,
	}
	for i, c := range cs {
		params, err := json.Marshal(c.params)
		require.NoError(h.t, err)
		d := db.NewDeviceChange{Seq: i + 1, RowNumber: i + 2, ICCID: c.seed.ICCID, IMEI: c.seed.IMEI, Operation: c.op,
			BatchNo: c.batch, Params: params}
		if c.ppu != nil {
			d.PPU, err = json.Marshal(c.ppu)
			require.NoError(h.t, err)
		}
		if c.billing != nil {
			d.Billing, err = json.Marshal(c.billing)
			require.NoError(h.t, err)
		}
		n.Devices = append(n.Devices, d)
		n.Batches = max(n.Batches, c.batch)
	}
	b, created, err := h.store.CreateBulkChange(ctx(h.t), n)
	require.NoError(h.t, err)
	require.True(h.t, created)
	ids := map[string]int64{}
	var iccid string
	var dcID int64
	h.eachRow([]any{&iccid, &dcID}, func() { ids[iccid] = dcID },
		`SELECT iccid, id FROM device_changes WHERE bulk_change_id = $1`, b.ID)
	return b.ID, ids
}

// seededBulk seeds the devices in the ThingSpace simulator and writes a
// bulk change of the account applying op to all of them in one batch.
func (h *harness) seededBulk(
	account string,
	op change.Operation,
	devs ...thingspacesim.DeviceSeed,
) (string, map[string]int64) {
	h.t.Helper()
	h.seed(devs...)
	return h.newBulk(account, changes(op, 1, devs...)...)
}

// eachRow runs a query and calls fn after each row is scanned into dest.
func (h *harness) eachRow(dest []any, fn func(), sql string, args ...any) {
	h.t.Helper()
	rows, err := h.store.Pool.Query(ctx(h.t), sql, args...)
	require.NoError(h.t, err)
	_, err = pgx.ForEachRow(rows, dest, func() error {
		fn()
		return nil
	})
	require.NoError(h.t, err)
}

func (h *harness) change(id int64) *db.DeviceChange {
	h.t.Helper()
	dc, err := h.store.GetDeviceChange(ctx(h.t), id)
	require.NoError(h.t, err)
	return dc
}

// requestRow is a thingspace_requests row.
type requestRow struct {
	State, RequestID, ErrorCode, ErrorMessage string
	Devices, Attempts                         int
}

func (h *harness) request(bulkID string, batch int) requestRow {
	h.t.Helper()
	var r requestRow
	err := h.store.Pool.QueryRow(ctx(h.t), `SELECT state, coalesce(request_id, ''), coalesce(error_code, ''),
		coalesce(error_message, ''), devices, attempts FROM thingspace_requests WHERE bulk_change_id = $1 AND request_key = $2`,
		bulkID, db.BatchKey(batch)).Scan(&r.State, &r.RequestID, &r.ErrorCode, &r.ErrorMessage, &r.Devices, &r.Attempts)
	require.NoError(h.t, err)
	return r
}

func (h *harness) exec(sql string, args ...any) {
	h.t.Helper()
	_, err := h.store.Pool.Exec(ctx(h.t), sql, args...)
	require.NoError(h.t, err)
}

// stats returns the ThingSpace simulator's counters.
func (h *harness) stats() thingspacesim.Stats { return h.sim.Stats(time.Hour) }

// accepted counts the requests ThingSpace answered 2xx that carried the
// device for the action.
func (h *harness) accepted(iccid, action string) int {
	return h.stats().AcceptedChanges[iccid][action]
}

// appError extracts the ApplicationError an activity failed with.
func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "want an ApplicationError, got %T: %v", err, err)
	return ae
}

// fakeTemporal records the calls activities make to Temporal. Only the
// methods activities use are implemented; any other call panics on the nil
// embedded client.
type fakeTemporal struct {
	client.Client

	mu       sync.Mutex
	starts   []signalWithStart
	signals  []signal
	finished map[string]bool // workflow ids answered NotFound (already closed)
	// described answers DescribeWorkflowExecution (absent: NotFound).
	described map[string]enumspb.WorkflowExecutionStatus
}

type signalWithStart struct {
	WorkflowID, Signal string
	Options            client.StartWorkflowOptions
	Workflow           any
	Args               []any
}

type signal struct {
	WorkflowID, Signal string
	Arg                any
}

func (f *fakeTemporal) SignalWithStartWorkflow(_ context.Context, workflowID, signalName string, _ any,
	options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(
		f.starts,
		signalWithStart{
			WorkflowID: workflowID,
			Signal:     signalName,
			Options:    options,
			Workflow:   workflow,
			Args:       workflowArgs,
		},
	)
	return nil, nil
}

func (f *fakeTemporal) SignalWorkflow(_ context.Context, workflowID, _, signalName string, arg any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signals = append(f.signals, signal{WorkflowID: workflowID, Signal: signalName, Arg: arg})
	if f.finished[workflowID] {
		return serviceerror.NewNotFound("workflow execution already completed")
	}
	return nil
}

func (f *fakeTemporal) started() []signalWithStart {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]signalWithStart(nil), f.starts...)
}

func (f *fakeTemporal) finish(workflowID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finished[workflowID] = true
}

func (f *fakeTemporal) signalled() []signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]signal(nil), f.signals...)
}

// newThingSpaceClient builds a ThingSpace client of the simulator like the
// harness's own (audited, default account), changed by mod: a test gives it
// a Limiter or an HTTP transport that injects faults, and sets it as
// h.acts.ThingSpace.
func (h *harness) newThingSpaceClient(mod func(*thingspace.Config)) *thingspace.Client {
	h.t.Helper()
	cfg := thingspace.Config{
		BaseURL: h.tsURL, ClientID: thingspacesim.DefaultClientID, ClientSecret: thingspacesim.DefaultClientSecret,
		Username: thingspacesim.DefaultUsername, Password: thingspacesim.DefaultPassword, AccountName: thingspacesim.DefaultAccount,
		HTTPTimeout: h.clientTimeout, Observer: (&activities.Auditor{Store: h.store, Logger: h.acts.Logger}).ThingSpace,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := thingspace.New(cfg)
	require.NoError(h.t, err)
	return c
}
