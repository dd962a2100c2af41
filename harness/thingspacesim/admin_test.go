package thingspacesim

import (
	"net/http"
	"testing"
	"time"
)

func TestAdminDevices(t *testing.T) {
	h := newHarness(t, fastConfig())
	status, _, body := h.do(
		http.MethodPost,
		"/admin/devices",
		`[{"iccid":"89148000000000000068","imei":"350000000000018","state":"active","msisdn":"2065550100"},{"iccid":"89148000000000000076"}]`,
		nil,
	)
	if status != http.StatusOK || decodeAs[map[string]int](t, body)["seeded"] != 2 {
		t.Fatalf("seed: %d %s", status, body)
	}
	status, _, body = h.do(http.MethodGet, "/admin/devices", nil, nil)
	all := decodeAs[[]DeviceSnapshot](t, body)
	if status != http.StatusOK || len(all) != 2 || all[0].ICCID != "89148000000000000068" ||
		all[0].MSISDN != "2065550100" ||
		all[1].State != StatePreActive ||
		all[1].Account != DefaultAccount {
		t.Fatalf("devices: %d %+v", status, all)
	}
	status, _, body = h.do(http.MethodGet, "/admin/devices/89148000000000000068", nil, nil)
	if d := decodeAs[DeviceSnapshot](t, body); status != http.StatusOK || d.State != StateActive ||
		d.IMEI != "350000000000018" {
		t.Fatalf("device: %d %s", status, body)
	}
	status, _, _ = h.do(http.MethodGet, "/admin/devices/1234", nil, nil)
	if status != http.StatusNotFound {
		t.Fatalf("unknown device: %d", status)
	}
	status, _, body = h.do(http.MethodPost, "/admin/devices", `[{"iccid":"89148000000000000068"}]`, nil)
	if status != http.StatusBadRequest || decodeAs[map[string]string](t, body)["error"] == "" {
		t.Fatalf("duplicate seed: %d %s", status, body)
	}
	status, _, _ = h.do(http.MethodPost, "/admin/devices", `[{"iccid":"1","colour":"red"}]`, nil)
	if status != http.StatusBadRequest {
		t.Fatalf("unknown seed field: %d", status)
	}
	status, _, _ = h.do(http.MethodGet, "/admin/nothing", nil, nil)
	if status != http.StatusNotFound {
		t.Fatalf("unknown admin path: %d", status)
	}
}

func TestAdminStats(t *testing.T) {
	h := newHarness(t, fastConfig())
	dev := h.seed(1, "active")[0]
	h.accepted(h.action(ActionSuspend, nil, dev))
	status, _, body := h.do(http.MethodGet, "/admin/stats?window=1m", nil, nil)
	type statsAnswer struct {
		Window string `json:"window"`
		Stats
	}
	st := decodeAs[statsAnswer](t, body)
	if status != http.StatusOK || st.Window != "1m0s" {
		t.Fatalf("stats: %d %s", status, body)
	}
	key := "POST /api/m2m/v1/devices/actions/suspend"
	if st.Requests[key] != 1 || st.Responses[key][200] != 1 || st.AcceptedChanges[dev][ActionSuspend] != 1 ||
		st.Logins != 1 || st.OAuthTokensIssued != 1 || st.RequestsPerAccount[DefaultAccount] != 3 || st.MaxRequestsInWindow[DefaultAccount] != 3 {
		t.Fatalf("stats content: %s", body)
	}
	if status, _, _ := h.do(http.MethodGet, "/admin/stats?window=forever", nil, nil); status != http.StatusBadRequest {
		t.Fatalf("bad window: %d", status)
	}
	status, _, _ = h.do(http.MethodPost, "/admin/reset-stats", nil, nil)
	if status != http.StatusOK {
		t.Fatalf("reset: %d", status)
	}
	if s := h.sim.Stats(0); len(s.Requests) != 0 || s.Logins != 0 || len(s.AcceptedChanges) != 0 {
		t.Fatalf("after reset: %+v", s)
	}
}

func TestAdminFaultsAndLimits(t *testing.T) {
	h := newHarness(t, fastConfig())
	status, _, body := h.do(
		http.MethodPut,
		"/admin/faults",
		`{"error_rate":0.25,"latency":"15ms","stall_for":"2s","late_callback_delay":1000000,"reorder_callbacks":true}`,
		nil,
	)
	if status != http.StatusOK {
		t.Fatalf("put faults: %d %s", status, body)
	}
	want := Faults{
		ErrorRate:         0.25,
		Latency:           15 * time.Millisecond,
		StallFor:          2 * time.Second,
		LateCallbackDelay: time.Millisecond,
		ReorderCallbacks:  true,
	}
	if got := h.sim.currentFaults(); got != want {
		t.Fatalf("faults %+v, want %+v", got, want)
	}
	_, _, body = h.do(http.MethodGet, "/admin/faults", nil, nil)
	if fj := decodeAs[map[string]any](t, body); fj["latency"] != "15ms" || fj["error_rate"] != 0.25 {
		t.Fatalf("get faults: %s", body)
	}
	if status, _, _ := h.do(http.MethodPut, "/admin/faults", `{"latency":"soon"}`, nil); status != http.StatusBadRequest {
		t.Fatalf("bad duration accepted: %d", status)
	}

	status, _, body = h.do(
		http.MethodPut,
		"/admin/limits",
		`{"requests_per_hour":1000,"actions_per_line_per_day":2}`,
		nil,
	)
	if status != http.StatusOK {
		t.Fatalf("put limits: %d %s", status, body)
	}
	got := decodeAs[Limits](t, body)
	wantL := Limits{
		ActivateRequestsPerMinute: 100,
		RequestsPerHour:           1000,
		MaxDevicesPerRequest:      10000,
		MaxDevicesPerAdd:          200,
		ActionsPerLinePerDay:      2,
	}
	if got != wantL {
		t.Fatalf("limits %+v, want %+v", got, wantL)
	}
	_, _, body = h.do(http.MethodGet, "/admin/limits", nil, nil)
	if decodeAs[Limits](t, body) != wantL {
		t.Fatalf("get limits: %s", body)
	}
}

// A Faults sent as JSON is what the simulator applies and reports: Go
// clients of the admin endpoints (the chaos harness) rely on its
// MarshalJSON writing the admin form, and on "0s" turning a fault off.
func TestAdminFaultsRoundTrip(t *testing.T) {
	h := newHarness(t, fastConfig())
	want := Faults{
		ErrorRate:             0.1,
		Latency:               1500 * time.Microsecond,
		LatencyJitter:         3 * time.Millisecond,
		TimeoutRate:           0.2,
		StallFor:              12 * time.Second,
		DropCallbackRate:      0.3,
		DuplicateCallbackRate: 0.4,
		LateCallbackRate:      0.5,
		LateCallbackDelay:     6 * time.Second,
		ReorderCallbacks:      true,
		GatewayAfterApplyRate: 0.6,
	}
	for _, f := range []Faults{want, {}} {
		status, _, body := h.do(http.MethodPut, "/admin/faults", f, nil)
		if status != http.StatusOK || decodeAs[Faults](t, body) != f {
			t.Fatalf("put faults %+v: %d %s", f, status, body)
		}
		if got := h.sim.currentFaults(); got != f {
			t.Fatalf("applied %+v, want %+v", got, f)
		}
		_, _, body = h.do(http.MethodGet, "/admin/faults", nil, nil)
		if got := decodeAs[Faults](t, body); got != f {
			t.Fatalf("get faults %s, want %+v", body, f)
		}
		// Faults marshals to the admin form, the one shell scripts write.
		m := decodeAs[map[string]any](t, body)
		if f == want && (m["stall_for"] != "12s" || m["drop_callback_rate"] != 0.3 || m["gateway_after_apply_rate"] != 0.6) {
			t.Fatalf("not the admin form: %s", body)
		}
	}
	status, _, body := h.do(http.MethodPut, "/admin/faults", `{"eror_rate":1}`, nil)
	if status != http.StatusBadRequest {
		t.Fatalf("a misspelt fault was not refused: %d %s", status, body)
	}
}

func TestAdminCallbackLog(t *testing.T) {
	h := newHarness(t, fastConfig())
	l := newListener(t)
	l.respond = func(n int) int {
		if n == 1 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	}
	h.register(l, DefaultAccount)
	devs := h.seed(2, "active")
	reqID := h.accepted(h.action(ActionSuspend, nil, devs...))
	waitFor(t, 3*time.Second, "deliveries", func() bool { return h.sim.Stats(0).CallbacksDelivered == 2 })
	_, _, body := h.do(http.MethodGet, "/admin/callbacks", nil, nil)
	all := decodeAs[[]DeliveryLogEntry](t, body)
	if len(all) != 3 {
		t.Fatalf("log: %s", body)
	}
	_, _, body = h.do(http.MethodGet, "/admin/callbacks?iccid="+devs[0]+"&request_id="+reqID, nil, nil)
	mine := decodeAs[[]DeliveryLogEntry](t, body)
	if len(mine) != 2 || mine[0].HTTPStatus != 502 || mine[0].Outcome != OutcomeFailed || mine[1].Attempt != 2 ||
		mine[1].Outcome != OutcomeDelivered || mine[1].Time.IsZero() {
		t.Fatalf("filtered log: %s", body)
	}
}

func TestAdminAuthHelpers(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.authenticate()
	if status, _, _ := h.do(http.MethodPost, "/admin/sessions/expire", nil, nil); status != http.StatusOK {
		t.Fatal("sessions/expire")
	}
	status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{})
	wantError(t, status, body, CodeSessionExpired)
	if status, _, _ := h.do(http.MethodPost, "/admin/oauth/expire", nil, nil); status != http.StatusOK {
		t.Fatal("oauth/expire")
	}
	status, body = h.login(DefaultUsername, DefaultPassword)
	wantGatewayFault(t, status, body, http.StatusUnauthorized, GatewayInvalidCredential)
	h.token = ""
	for range 5 {
		h.login(DefaultUsername, "bad")
	}
	if status, _, _ := h.do(http.MethodPost, "/admin/unlock", nil, nil); status != http.StatusOK {
		t.Fatal("unlock")
	}
	if status, body := h.login(DefaultUsername, DefaultPassword); status != http.StatusOK {
		t.Fatalf("login after unlock: %d %s", status, body)
	}
}
