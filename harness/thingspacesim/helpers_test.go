package thingspacesim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	m2mBase  = "/api/m2m/v1"
	cbUser   = "cb-user"
	cbSecret = "cb-secret"
)

// fastConfig makes completions and retries take milliseconds.
func fastConfig() Config {
	return Config{
		CompletionDelay:       5 * time.Millisecond,
		CallbackRetryInterval: 10 * time.Millisecond,
		CallbackHTTPTimeout:   2 * time.Second,
		CallbackConcurrency:   1,
		Seed:                  1,
	}
}

type harness struct {
	t       *testing.T
	sim     *Simulator
	srv     *httptest.Server
	token   string
	session string
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	sim := New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close) // runs before srv.Close: releases stalled handlers
	return &harness{t: t, sim: sim, srv: srv}
}

// do sends a request; body may be nil, a string/[]byte (sent as-is) or a
// value to encode as JSON.
func (h *harness) do(method, path string, body any, hdr http.Header) (int, http.Header, []byte) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

// tokenRequest asks for an OAuth token with the given Basic credentials.
func (h *harness) tokenRequest(id, secret, grant string) (int, []byte) {
	h.t.Helper()
	req, _ := http.NewRequest(
		http.MethodPost,
		h.srv.URL+"/api/ts/v1/oauth2/token",
		strings.NewReader("grant_type="+grant),
	)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func (h *harness) oauth() string {
	h.t.Helper()
	status, body := h.tokenRequest(DefaultClientID, DefaultClientSecret, "client_credentials")
	if status != http.StatusOK {
		h.t.Fatalf("token: %d %s", status, body)
	}
	return decodeAs[tokenResponse](h.t, body).AccessToken
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func (h *harness) login(username, password string) (int, []byte) {
	h.t.Helper()
	if h.token == "" {
		h.token = h.oauth()
	}
	status, _, body := h.do(
		http.MethodPost,
		m2mBase+"/session/login",
		loginRequest{username, password},
		bearer(h.token),
	)
	return status, body
}

// authenticate obtains a token and a session with the default credentials.
func (h *harness) authenticate() {
	h.t.Helper()
	status, body := h.login(DefaultUsername, DefaultPassword)
	if status != http.StatusOK {
		h.t.Fatalf("login: %d %s", status, body)
	}
	h.session = decodeAs[sessionResponse](h.t, body).SessionToken
}

func (h *harness) m2mHeaders() http.Header {
	if h.session == "" {
		h.authenticate()
	}
	hd := bearer(h.token)
	hd.Set("VZ-M2M-Token", h.session)
	return hd
}

// m2m calls an M2M endpoint with the harness's token and session.
func (h *harness) m2m(method, path string, body any) (int, []byte) {
	h.t.Helper()
	status, _, data := h.do(method, m2mBase+path, body, h.m2mHeaders())
	return status, data
}

// action posts a device action for the given ICCIDs.
// lookup asks the device list for one device by an identifier.
func (h *harness) lookup(id, kind string) (int, []byte) {
	return h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{"deviceId": deviceID{ID: id, Kind: kind}})
}

// found is lookup of a device that must be there.
func (h *harness) found(id, kind string) listDevice {
	h.t.Helper()
	status, body := h.lookup(id, kind)
	if status != http.StatusOK {
		h.t.Fatalf("lookup by %s %s: %d %s", kind, id, status, body)
	}
	return decodeAs[listResponse](h.t, body).Devices[0]
}

func (h *harness) action(action string, extra map[string]any, iccids ...string) (int, []byte) {
	h.t.Helper()
	body := map[string]any{"devices": refs(iccids...)}
	switch action {
	case ActionActivate:
		body["servicePlan"] = "m2m_4G"
		body["mdnZipCode"] = "98801"
		// refs names devices by ICCID alone: a 4G activation then needs
		// the device's SKU in lieu of its IMEI.
		body["skuNumber"] = testSKU
	case ActionDeactivate:
		body["accountName"] = DefaultAccount
		body["reasonCode"] = "FF"
	case ActionContactInfo:
		body["primaryPlaceOfUse"] = samplePPU()
	}
	for k, v := range extra {
		body[k] = v
	}
	method := http.MethodPost
	if action == ActionContactInfo {
		method = http.MethodPut
	}
	return h.m2m(method, "/devices/actions/"+action, body)
}

// accepted asserts a 200 {requestId} answer and returns the id.
func (h *harness) accepted(status int, body []byte) string {
	h.t.Helper()
	if status != http.StatusOK {
		h.t.Fatalf("want 200, got %d %s", status, body)
	}
	id := decodeAs[requestIDResponse](h.t, body).RequestID
	if !isGUID(id) {
		h.t.Fatalf("requestId %q is not a GUID", id)
	}
	return id
}

// testSKU is the skuNumber of the harness's activations.
const testSKU = "VZW-TEST-4G-SKU"

func refs(iccids ...string) []deviceRef {
	out := make([]deviceRef, len(iccids))
	for i, id := range iccids {
		out[i] = deviceRef{DeviceIDs: []deviceID{{ID: id, Kind: "iccid"}}}
	}
	return out
}

func samplePPU() placeOfUse {
	return placeOfUse{
		CustomerName: customerName{FirstName: "Ada", LastName: "Lovelace"},
		Address:      address{AddressLine1: "1 Main St", City: "Wenatchee", State: "WA", Zip: "98801", Country: "USA"},
	}
}

// seed adds n generated devices in a state and returns their ICCIDs.
func (h *harness) seed(n int, state string) []string {
	h.t.Helper()
	return seedSim(h.t, h.sim, n, state)
}

var seedCounter struct {
	sync.Mutex
	n int
}

// seedSim seeds devices with ICCID prefixes unique within the test binary.
func seedSim(t *testing.T, s *Simulator, n int, state string) []string {
	t.Helper()
	seedCounter.Lock()
	seedCounter.n++
	prefix := fmt.Sprintf("891480%04d", seedCounter.n)
	seedCounter.Unlock()
	seeds := GenerateDevices(n, prefix, state)
	if err := s.Seed(seeds...); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(seeds))
	for i, sd := range seeds {
		out[i] = sd.ICCID
	}
	return out
}

func decodeAs[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, data, err)
	}
	return v
}

// wantError asserts a 400 {errorCode} answer with the given code.
func wantError(t *testing.T, status int, body []byte, code string) {
	t.Helper()
	if status != http.StatusBadRequest {
		t.Fatalf("want 400 %s, got %d %s", code, status, body)
	}
	if got := decodeAs[errorBody](t, body).ErrorCode; got != code {
		t.Fatalf("want errorCode %s, got %s (%s)", code, got, body)
	}
}

func wantGatewayFault(t *testing.T, status int, body []byte, wantStatus int, code string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("want %d fault %s, got %d %s", wantStatus, code, status, body)
	}
	if got := decodeAs[gatewayFault](t, body).Fault.Code; got != code {
		t.Fatalf("want fault code %s, got %s", code, got)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *harness) waitState(iccid, state string) DeviceSnapshot {
	h.t.Helper()
	var d DeviceSnapshot
	waitFor(h.t, 3*time.Second, iccid+" to reach "+state, func() bool {
		d, _ = h.sim.Device(iccid)
		return d.State == state
	})
	return d
}

// listener is a callback listener that records what it receives.
type listener struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []received
	// respond picks the status for the n-th (1-based) message; nil → 200.
	respond func(n int) int
}

type received struct {
	msg callbackMessage
	at  time.Time
}

func newListener(t *testing.T) *listener {
	l := &listener{}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg callbackMessage
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&msg); err != nil {
			t.Errorf("listener: bad callback body: %v", err)
		}
		l.mu.Lock()
		l.got = append(l.got, received{msg, time.Now()})
		n, respond := len(l.got), l.respond
		l.mu.Unlock()
		status := http.StatusOK
		if respond != nil {
			status = respond(n)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *listener) messages() []callbackMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]callbackMessage, len(l.got))
	for i, r := range l.got {
		out[i] = r.msg
	}
	return out
}

func (l *listener) wait(t *testing.T, n int) []callbackMessage {
	t.Helper()
	waitFor(t, 3*time.Second, "callbacks", func() bool { return len(l.messages()) >= n })
	return l.messages()
}

// register registers l as the CarrierService listener of account.
func (h *harness) register(l *listener, account string) {
	h.t.Helper()
	status, body := h.m2m(http.MethodPost, "/callbacks/"+account,
		callbackRegistration{Name: CarrierService, URL: l.srv.URL + "/cb", Username: cbUser, Password: cbSecret})
	if status != http.StatusOK {
		h.t.Fatalf("register: %d %s", status, body)
	}
}

// listen registers a new callback listener for the default account.
func (h *harness) listen() *listener {
	h.t.Helper()
	l := newListener(h.t)
	h.register(l, DefaultAccount)
	return l
}

func ids(msg callbackMessage, kind string) []string {
	var out []string
	for _, id := range msg.DeviceIDs {
		if id.Kind == kind {
			out = append(out, id.ID)
		}
	}
	return out
}

func iccidOf(msg callbackMessage) string {
	if v := ids(msg, "iccid"); len(v) > 0 {
		return v[0]
	}
	return ""
}
