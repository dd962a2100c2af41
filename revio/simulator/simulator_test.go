package simulator

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	login    = "INTEGRATIONS"
	client   = "ACME"
	password = "pa:ss-word"
	subKey   = "sub-key-0123456789"
)

func goodBasic() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(login+"@"+client+":"+password))
}

type env struct {
	t   *testing.T
	sim *Simulator
	srv *httptest.Server
}

func newEnv(t *testing.T, mod ...func(*Config)) *env {
	t.Helper()
	cfg := Config{
		Login:           login,
		ClientCode:      client,
		Password:        password,
		SubscriptionKey: subKey,
		CallsPerMinute:  -1,
		Seed:            1,
	}
	for _, m := range mod {
		m(&cfg)
	}
	sim := New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { sim.Close(); srv.Close() })
	return &env{t: t, sim: sim, srv: srv}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(a.body, &m), string(a.body))
	return m
}

// call sends an authenticated request; hdr overrides or (with "") removes
// headers.
func (e *env) call(method, path, ctype, body string, hdr ...string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", goodBasic())
	req.Header.Set("Ocp-Apim-Subscription-Key", subKey)
	req.Header.Set("Accept", "application/json")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return answer{resp.StatusCode, resp.Header, b}
}

func (e *env) createService(body string) int64 {
	e.t.Helper()
	a := e.call("POST", "/v1/Services", "application/json", body)
	require.Equal(e.t, http.StatusCreated, a.status, string(a.body))
	var c struct {
		OK bool  `json:"ok"`
		ID int64 `json:"id"`
	}
	require.NoError(e.t, json.Unmarshal(a.body, &c))
	require.True(e.t, c.OK)
	return c.ID
}

func (e *env) createProduct(serviceID, customerID int64) int64 {
	e.t.Helper()
	a := e.call(
		"POST",
		"/v1/ServiceProduct",
		"application/json",
		fmt.Sprintf(
			`{"service_id":%d,"product_id":3,"customer_id":%d,"rate":9.99,"quantity":1,"generate_proration":true}`,
			serviceID,
			customerID,
		),
	)
	require.Equal(e.t, http.StatusCreated, a.status, string(a.body))
	return int64(a.json(e.t)["id"].(float64))
}

func TestAuthChecks(t *testing.T) {
	e := newEnv(t)
	b64 := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name    string
		hdr     []string
		status  int
		message string
	}{
		{"ok", nil, 200, ""},
		{"missing key", []string{"Ocp-Apim-Subscription-Key", ""}, 401, "missing subscription key"},
		{"wrong key", []string{"Ocp-Apim-Subscription-Key", "nope"}, 401, "invalid subscription key"},
		{"missing basic", []string{"Authorization", ""}, 401, "denied"},
		{"login without client code", []string{"Authorization", b64(login + ":" + password)}, 401, "denied"},
		{"wrong password", []string{"Authorization", b64(login + "@" + client + ":x")}, 401, "denied"},
		{"wrong client code", []string{"Authorization", b64(login + "@OTHER:" + password)}, 401, "denied"},
		{"bearer", []string{"Authorization", "Bearer abc"}, 401, "denied"},
		{
			"case-insensitive user",
			[]string{"Authorization", b64(strings.ToLower(login+"@"+client) + ":" + password)},
			200,
			"",
		},
	}
	fails := 0
	for _, tc := range cases {
		a := e.call("GET", "/v1/SystemStatus", "", "", tc.hdr...)
		assert.Equal(t, tc.status, a.status, tc.name)
		if tc.status == 401 {
			fails++
			assert.Contains(t, string(a.body), tc.message, tc.name)
		}
	}
	// APIM's own shape for key failures.
	a := e.call("GET", "/v1/SystemStatus", "", "", "Ocp-Apim-Subscription-Key", "")
	assert.Equal(
		t,
		map[string]any{
			"statusCode": float64(401),
			"message":    "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
		},
		a.json(t),
	)
	fails++
	st := e.sim.Stats()
	assert.Equal(t, fails, st.AuthFailures)
	assert.Equal(t, fails, st.Statuses[401])
	assert.Equal(t, len(cases)+1, st.Calls["GET /v1/SystemStatus"])
}

func TestEmptyConfigRefusesAll(t *testing.T) {
	sim := New(Config{})
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/SystemStatus", nil)
	req.Header.Set("Ocp-Apim-Subscription-Key", "")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("@:")))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode)
}

func TestRoutesCaseInsensitiveAnd404And405(t *testing.T) {
	e := newEnv(t)
	assert.Equal(t, 200, e.call("GET", "/V1/systemstatus/", "", "").status)
	id := e.createService(`{"customer_id":1}`)
	assert.Equal(t, 200, e.call("GET", fmt.Sprintf("/v1/services/%d", id), "", "").status)
	assert.Equal(t, 200, e.call("GET", "/v1/serviceProduct?search.service_id=1", "", "").status)
	assert.Equal(t, 404, e.call("GET", "/v1/Nope", "", "").status)
	a := e.call("PUT", "/v1/Services", "application/json", "{}")
	assert.Equal(t, 405, a.status)
	assert.Equal(t, "GET, POST", a.header.Get("Allow"))
	assert.Equal(t, 400, e.call("GET", "/v1/Services/abc", "", "").status)
	assert.Equal(t, 404, e.call("GET", "/v1/Services/999", "", "").status)
	assert.Equal(t, 3, e.sim.Stats().Calls["GET /v1/Services/{id}"])
	assert.Equal(t, 1, e.sim.Stats().Calls["GET /v1/nope"], "unknown routes are counted by path")
}

func TestCreateService(t *testing.T) {
	e := newEnv(t)
	a := e.call(
		"POST",
		"/v1/Services",
		"application/json",
		`{"customer_id":7,"provider_id":5,"service_type_id":9,"number":"15551234567","number2":"8901","activated_date":"2024-05-01Z","usage_plan_group_id":3,"description":"d"}`,
	)
	require.Equal(t, 201, a.status, string(a.body))
	assert.JSONEq(t, `{"ok":true,"id":100001}`, string(a.body))
	assert.Equal(t, "/v1/Services/100001", a.header.Get("Location"))

	got := e.sim.Services()
	require.Len(t, got, 1)
	assert.Equal(t, "2024-05-01", got[0].ActivatedDate)
	assert.NotEmpty(t, got[0].EffectiveDate, "effective_date defaults to today")

	g := e.call("GET", "/v1/Services/100001", "", "").json(t)
	assert.Equal(t, true, g["ok"])
	assert.Equal(t, "2024-05-01T00:00:00", g["activated_date"])
	assert.Nil(t, g["disconnected_date"])
	assert.Equal(t, "8901", g["number2"])
	assert.Equal(t, float64(7), g["customer_id"])
}

func TestCreateServiceValidation(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ name, ctype, body, want string }{
		{"no customer", "application/json", `{"number":"1"}`, "customer_id is required"},
		{"string id", "application/json", `{"customer_id":"7"}`, "must be a JSON number"},
		{"camelCase", "application/json", `{"customerId":7}`, `unknown field \"customerId\"`},
		{"service_id", "application/json", `{"customer_id":7,"service_id":1}`, "service_id must not be sent"},
		{"bad date", "application/json", `{"customer_id":7,"activated_date":"05/01/2024"}`, "not a valid date"},
		{
			"long number",
			"application/json",
			`{"customer_id":7,"number":"` + strings.Repeat("1", 256) + `"}`,
			"longer than 255",
		},
		{"not object", "application/json", `[1]`, "JSON object"},
		{"empty", "application/json", ``, "empty"},
	}
	for _, tc := range cases {
		a := e.call("POST", "/v1/Services", tc.ctype, tc.body)
		assert.Equal(t, 400, a.status, tc.name)
		// Validation errors are an array of {ok,id,error,message}.
		var arr []map[string]any
		require.NoError(t, json.Unmarshal(a.body, &arr), tc.name)
		require.Len(t, arr, 1)
		assert.Equal(t, false, arr[0]["ok"])
		assert.Contains(t, string(a.body), tc.want, tc.name)
	}
	assert.Equal(t, 415, e.call("POST", "/v1/Services", "text/plain", `{"customer_id":7}`).status)
	assert.Empty(t, e.sim.Services())
}

func seedServices(t *testing.T, e *env, n int, customer int64) {
	t.Helper()
	for i := 0; i < n; i++ {
		e.createService(fmt.Sprintf(`{"customer_id":%d,"number":"1555%04d","number2":"8901%04d"}`, customer, i, i))
	}
}

type page struct {
	OK          bool             `json:"ok"`
	HasMore     bool             `json:"has_more"`
	RecordCount int              `json:"record_count"`
	Records     []map[string]any `json:"records"`
}

func (e *env) page(path string) page {
	e.t.Helper()
	a := e.call("GET", path, "", "")
	require.Equal(e.t, 200, a.status, string(a.body))
	var p page
	require.NoError(e.t, json.Unmarshal(a.body, &p))
	return p
}

func TestPagingAndFilters(t *testing.T) {
	e := newEnv(t)
	seedServices(t, e, 23, 7)
	seedServices(t, e, 2, 8)

	p := e.page("/v1/Services")
	assert.True(t, p.OK)
	assert.True(t, p.HasMore)
	assert.Equal(t, 10, p.RecordCount, "default page size")

	var ids []float64
	for pg := 1; ; pg++ {
		p := e.page(fmt.Sprintf("/v1/Services?search.customer_id=7&search.page_size=10&search.page=%d", pg))
		assert.Equal(t, len(p.Records), p.RecordCount)
		for _, r := range p.Records {
			ids = append(ids, r["service_id"].(float64))
			assert.Equal(t, float64(7), r["customer_id"])
		}
		if !p.HasMore {
			assert.Equal(t, 3, pg)
			break
		}
	}
	assert.Len(t, ids, 23)
	assert.IsIncreasing(t, ids)

	// Bare names work as well as the search. prefix.
	p = e.page("/v1/Services?customer_id=8&page_size=1&page=2")
	assert.Equal(t, 1, p.RecordCount)
	assert.False(t, p.HasMore)

	p = e.page("/v1/Services?search.number=15550003")
	require.Len(t, p.Records, 1)
	assert.Equal(t, "89010003", p.Records[0]["number2"])
	p = e.page("/v1/Services?search.number2=89010001&search.customer_id=8")
	require.Len(t, p.Records, 1)
	p = e.page("/v1/Services?search.number2=89010001&search.number2=89010002&search.customer_id=7")
	assert.Len(t, p.Records, 2, "repeated filters match any value")
	p = e.page("/v1/Services?search.number=1555")
	assert.Empty(t, p.Records, "number is an exact match")
	assert.NotNil(t, p.Records)

	// Past the end.
	p = e.page("/v1/Services?page=99")
	assert.Equal(t, 0, p.RecordCount)
	assert.False(t, p.HasMore)

	assert.Equal(t, 400, e.call("GET", "/v1/Services?page_size=0", "", "").status)
	assert.Equal(t, 400, e.call("GET", "/v1/Services?page=0", "", "").status)
	assert.Equal(t, 400, e.call("GET", "/v1/Services?search.customer_id=x", "", "").status)
}

func TestPageSizeCappedAt500(t *testing.T) {
	e := newEnv(t)
	seedServices(t, e, 501, 1)
	p := e.page("/v1/Services?search.page_size=1000")
	assert.Equal(t, 500, p.RecordCount)
	assert.True(t, p.HasMore)
	p = e.page("/v1/Services?search.page_size=500&search.page=2")
	assert.Equal(t, 1, p.RecordCount)
	assert.False(t, p.HasMore)
}

func TestServiceProductsLifecycle(t *testing.T) {
	e := newEnv(t)
	sid := e.createService(`{"customer_id":7,"number":"1"}`)
	p1 := e.createProduct(sid, 7)
	p2 := e.createProduct(sid, 7)
	assert.Equal(t, int64(700001), p1)

	// Validation.
	for _, tc := range []struct{ body, want string }{
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"rate":1}`, sid), "generate_proration is required"},
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"generateProration":true}`, sid), "unknown field"},
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":8,"generate_proration":false}`, sid), "does not belong"},
		{`{"service_id":5,"product_id":3,"customer_id":7,"generate_proration":false}`, "does not exist"},
		{fmt.Sprintf(`{"service_id":%d,"customer_id":7,"generate_proration":false}`, sid), "product_id is required"},
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"rate":"abc","generate_proration":false}`, sid), "rate must be a number"},
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"quantity":0,"generate_proration":false}`, sid), "quantity"},
	} {
		a := e.call("POST", "/v1/ServiceProduct", "application/json", tc.body)
		assert.Equal(t, 400, a.status, tc.body)
		assert.Contains(t, string(a.body), tc.want)
	}

	p := e.page(fmt.Sprintf("/v1/ServiceProduct?search.service_id=%d&search.status=ACTIVE", sid))
	require.Len(t, p.Records, 2)
	assert.Equal(t, 9.99, p.Records[0]["rate"], "rate is a JSON number")
	assert.Equal(t, "ACTIVE", p.Records[0]["status"])

	// Disconnecting the service needs every product disconnected on that date.
	patch := func(body string) answer {
		return e.call("PATCH", fmt.Sprintf("/v1/Services/%d", sid), "application/json-patch+json", body)
	}
	a := patch(`[{"op":"replace","path":"/disconnected_date","value":"2024-06-01"}]`)
	assert.Equal(t, 400, a.status)
	assert.Contains(t, string(a.body), "DISCONNECTED")

	del := func(body string) answer { return e.call("DELETE", "/v1/ServiceProduct", "application/json", body) }
	assert.Equal(t, 400, del(fmt.Sprintf(`{"service_product_id":%d}`, p1)).status, "generate_proration required")
	assert.Equal(t, 404, del(`{"service_product_id":1,"generate_proration":false}`).status)
	a = del(fmt.Sprintf(`{"service_product_id":%d,"effective_date":"2024-06-01","generate_proration":true}`, p1))
	require.Equal(t, 200, a.status, string(a.body))
	assert.Equal(
		t,
		400,
		del(fmt.Sprintf(`{"service_product_id":%d,"generate_proration":true}`, p1)).status,
		"already disconnected",
	)
	require.Equal(
		t,
		200,
		del(
			fmt.Sprintf(`{"service_product_id":%d,"effective_date":"2024-06-02","generate_proration":true}`, p2),
		).status,
	)

	a = patch(`[{"op":"replace","path":"/disconnected_date","value":"2024-06-01"}]`)
	assert.Equal(t, 400, a.status, "dates differ")
	// Reconnecting p2 is not possible; make the dates agree by disconnecting
	// a fresh service instead.
	p = e.page(fmt.Sprintf("/v1/ServiceProduct?service_id=%d&status=disconnected", sid))
	require.Len(t, p.Records, 2)
	assert.Equal(t, "2024-06-01T00:00:00", p.Records[0]["canceled_date"])

	sid2 := e.createService(`{"customer_id":7,"number":"2"}`)
	p3 := e.createProduct(sid2, 7)
	require.Equal(
		t,
		200,
		del(
			fmt.Sprintf(`{"service_product_id":%d,"effective_date":"2024-07-01","generate_proration":false}`, p3),
		).status,
	)
	a = e.call(
		"PATCH",
		fmt.Sprintf("/v1/Services/%d", sid2),
		"application/json",
		`[{"op":"replace","path":"/description","value":"x"}]`,
	)
	assert.Equal(t, 415, a.status, "JSON Patch media type required")
	a = e.call(
		"PATCH",
		fmt.Sprintf("/v1/Services/%d", sid2),
		"application/json-patch+json",
		`[{"op":"replace","path":"/description","value":"gone"},{"op":"replace","path":"/disconnected_date","value":"2024-07-01"}]`,
	)
	require.Equal(t, 200, a.status, string(a.body))
	svc := e.sim.Services()[1]
	assert.Equal(t, "2024-07-01", svc.DisconnectedDate)
	assert.Equal(t, "gone", svc.Description)

	// A rejected op leaves the earlier ones unapplied.
	a = patch(
		`[{"op":"replace","path":"/description","value":"half"},{"op":"replace","path":"/fields/0/value","value":"x"}]`,
	)
	assert.Equal(t, 400, a.status)
	assert.Empty(t, e.sim.Services()[0].Description)

	// Disconnected services accept no new products.
	a = e.call("POST", "/v1/ServiceProduct", "application/json",
		fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"generate_proration":false}`, sid2))
	assert.Equal(t, 400, a.status)

	g := e.call("GET", fmt.Sprintf("/v1/ServiceProduct/%d", p3), "", "").json(t)
	assert.Equal(t, "DISCONNECTED", g["status"])
	assert.Len(t, e.sim.ServiceProducts(), 3)
}

func TestRateLimitWindow(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CallsPerMinute = 3 })
	var mu sync.Mutex
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	e.sim.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	for i := 0; i < 3; i++ {
		assert.Equal(t, 200, e.call("GET", "/v1/SystemStatus", "", "").status)
		advance(10 * time.Second)
	}
	a := e.call("GET", "/v1/SystemStatus", "", "")
	assert.Equal(t, 429, a.status)
	assert.Equal(t, "30", a.header.Get("Retry-After"), "first call leaves the window in 30s")
	assert.Equal(t, float64(429), a.json(t)["statusCode"])
	// Calls with a bad key are not counted and still get 401.
	assert.Equal(t, 401, e.call("GET", "/v1/SystemStatus", "", "", "Ocp-Apim-Subscription-Key", "x").status)

	advance(30 * time.Second)
	assert.Equal(t, 200, e.call("GET", "/v1/SystemStatus", "", "").status)
	assert.Equal(t, 429, e.call("GET", "/v1/SystemStatus", "", "").status)
	st := e.sim.Stats()
	assert.Equal(t, 2, st.RateLimited)
	assert.Equal(t, 2, st.Statuses[429])
}

func TestDefaultLimitIs500(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CallsPerMinute = 0 })
	for i := 0; i < 500; i++ {
		require.Equal(t, 200, e.call("GET", "/v1/SystemStatus", "", "").status)
	}
	assert.Equal(t, 429, e.call("GET", "/v1/SystemStatus", "", "").status)
}

func TestFaultErrorRate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.ErrorRate = 1 })
	seen := map[int]bool{}
	for i := 0; i < 20; i++ {
		a := e.call("POST", "/v1/Services", "application/json", `{"customer_id":1}`)
		seen[a.status] = true
	}
	assert.Equal(t, map[int]bool{500: true, 503: true}, seen)
	assert.Empty(t, e.sim.Services(), "faults strike before processing")

	e.sim.SetFaults(Faults{ErrorRate: 0.5})
	ok := 0
	for i := 0; i < 200; i++ {
		if e.call("GET", "/v1/SystemStatus", "", "").status == 200 {
			ok++
		}
	}
	assert.InDelta(t, 100, ok, 40)
}

func TestFaultRateLimitRate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.RateLimitRate = 1; c.CallsPerMinute = 5 })
	for i := 0; i < 10; i++ {
		a := e.call("GET", "/v1/SystemStatus", "", "")
		assert.Equal(t, 429, a.status)
		assert.Equal(t, "1", a.header.Get("Retry-After"))
	}
	e.sim.SetFaults(Faults{})
	// Injected 429s used no slots of the window.
	for i := 0; i < 5; i++ {
		assert.Equal(t, 200, e.call("GET", "/v1/SystemStatus", "", "").status)
	}
}

func TestFaultLatency(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.Latency = 80 * time.Millisecond })
	start := time.Now()
	assert.Equal(t, 200, e.call("GET", "/v1/SystemStatus", "", "").status)
	assert.GreaterOrEqual(t, time.Since(start), 80*time.Millisecond)
}

func TestFaultFailCreateService(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.FailCreateServiceRate = 1 })
	a := e.call("POST", "/v1/Services", "application/json", `{"customer_id":1}`)
	assert.Equal(t, 500, a.status)
	assert.Empty(t, e.sim.Services())
	// Other calls are unaffected.
	assert.Equal(t, 200, e.call("GET", "/v1/Services?customer_id=1", "", "").status)
}

func TestFaultStallCreateService(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.StallCreateService = 5 * time.Second })
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(
			"POST",
			e.srv.URL+"/v1/Services",
			strings.NewReader(`{"customer_id":1,"number":"1555"}`),
		)
		req.Header.Set("Authorization", goodBasic())
		req.Header.Set("Ocp-Apim-Subscription-Key", subKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- answer{status: resp.StatusCode, body: b}
	}()
	// The service exists while the answer is still held back.
	require.Eventually(t, func() bool { return len(e.sim.Services()) == 1 }, 2*time.Second, 5*time.Millisecond)
	select {
	case <-done:
		t.Fatal("answered before the stall ended")
	case <-time.After(50 * time.Millisecond):
	}
	// Also visible through the API.
	p := e.page("/v1/Services?search.number=1555")
	assert.Len(t, p.Records, 1)

	e.sim.Close() // releases the stall
	select {
	case a := <-done:
		assert.Equal(t, 201, a.status)
		assert.Contains(t, string(a.body), `"id":100001`)
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not release the stalled call")
	}
}

// createServiceGivingUp creates a service from a client that gives up
// after the given time, and returns the client's error.
func (e *env) createServiceGivingUp(after time.Duration, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), after)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/v1/Services", bytes.NewBufferString(body))
	req.Header.Set("Authorization", goodBasic())
	req.Header.Set("Ocp-Apim-Subscription-Key", subKey)
	req.Header.Set("Content-Type", "application/json")
	_, err := http.DefaultClient.Do(req)
	return err
}

func TestStallCallerGoneKeepsService(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.StallCreateService = 5 * time.Second })
	err := e.createServiceGivingUp(100*time.Millisecond, `{"customer_id":1}`)
	require.Error(t, err)
	assert.Len(t, e.sim.Services(), 1)
}

// TestStalledCreatesCounted: a chaos run reports how many creates answered
// after the client gave up, so the simulator counts them (in /admin/stats
// too), and only those.
func TestStalledCreatesCounted(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.StallCreateService = 5 * time.Second })
	err := e.createServiceGivingUp(100*time.Millisecond, `{"customer_id":1}`)
	require.Error(t, err, "the client gives up before the answer")

	e.sim.SetFaults(Faults{})
	e.createService(`{"customer_id":1}`)
	assert.Equal(t, 1, e.sim.Stats().StalledCreates)

	resp, err := http.Get(e.srv.URL + "/admin/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var st Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	assert.Equal(t, 1, st.StalledCreates)
	assert.Len(t, e.sim.Services(), 2)
}

func TestAdminEndpoints(t *testing.T) {
	e := newEnv(t)
	sid := e.createService(`{"customer_id":7}`)
	e.createProduct(sid, 7)
	get := func(path string) answer {
		resp, err := http.Get(e.srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header, b}
	}
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	var svcs []ServiceRecord
	require.NoError(t, json.Unmarshal(get("/admin/services").body, &svcs))
	require.Len(t, svcs, 1)
	assert.Equal(t, sid, svcs[0].ServiceID)
	var sps []ServiceProductRecord
	require.NoError(t, json.Unmarshal(get("/admin/service-products").body, &sps))
	require.Len(t, sps, 1)
	assert.Equal(t, "9.99", sps[0].Rate)
	var st Stats
	require.NoError(t, json.Unmarshal(get("/admin/stats").body, &st))
	assert.Equal(t, 1, st.Calls["POST /v1/Services"])
	assert.Equal(t, 2, st.Statuses[201])

	assert.Equal(
		t,
		200,
		do(
			"PUT",
			"/admin/faults",
			`{"error_rate":0.25,"latency":"10ms","stall_create_service":"1s","fail_create_service_rate":0.5}`,
		),
	)
	assert.Equal(
		t,
		Faults{
			ErrorRate:             0.25,
			Latency:               10 * time.Millisecond,
			StallCreateService:    time.Second,
			FailCreateServiceRate: 0.5,
		},
		e.sim.CurrentFaults(),
	)
	assert.Equal(t, 400, do("PUT", "/admin/faults", `{"error_rate":2}`))
	assert.Equal(t, 400, do("PUT", "/admin/faults", `{"eror_rate":0.1}`))
	assert.Equal(t, 405, do("POST", "/admin/services", ""))

	assert.Equal(t, 200, do("POST", "/admin/reset", ""))
	assert.Empty(t, e.sim.Services())
	assert.Empty(t, e.sim.ServiceProducts())
	assert.Zero(t, e.sim.Stats().Total)
	assert.Equal(t, Faults{}, e.sim.CurrentFaults())
	assert.Equal(t, int64(100001), e.createService(`{"customer_id":7}`), "ids restart")
}

func TestConcurrentCreatesGetDistinctIDs(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest(
				"POST",
				e.srv.URL+"/v1/Services",
				strings.NewReader(fmt.Sprintf(`{"customer_id":%d}`, i+1)),
			)
			req.Header.Set("Authorization", goodBasic())
			req.Header.Set("Ocp-Apim-Subscription-Key", subKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if assert.NoError(t, err) {
				resp.Body.Close()
				assert.Equal(t, 201, resp.StatusCode)
			}
		}(i)
	}
	wg.Wait()
	svcs := e.sim.Services()
	require.Len(t, svcs, 20)
	for i, s := range svcs {
		assert.Equal(t, int64(100001+i), s.ServiceID)
	}
}
