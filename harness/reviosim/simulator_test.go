package reviosim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
		a := e.call("POST", "/v1/Services", "application/json", `{"customer_id":1,"provider_id":5}`)
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
	a := e.call("POST", "/v1/Services", "application/json", `{"customer_id":1,"provider_id":5}`)
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
			strings.NewReader(`{"customer_id":1,"provider_id":5,"number":"1555"}`),
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

func TestStallCallerGoneKeepsService(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.StallCreateService = 5 * time.Second })
	err := e.createServiceGivingUp(100*time.Millisecond, `{"customer_id":1,"provider_id":5}`)
	require.Error(t, err)
	assert.Len(t, e.sim.Services(), 1)
}

// TestStalledCreatesCounted: a chaos run reports how many creates answered
// after the client gave up, so the simulator counts them (in /admin/stats
// too), and only those.
func TestStalledCreatesCounted(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.StallCreateService = 5 * time.Second })
	err := e.createServiceGivingUp(100*time.Millisecond, `{"customer_id":1,"provider_id":5}`)
	require.Error(t, err, "the client gives up before the answer")

	e.sim.SetFaults(Faults{})
	e.createService(`{"customer_id":1,"provider_id":5}`)
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
	sid := e.createService(`{"customer_id":7,"provider_id":5}`)
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
	assert.Equal(t, int64(100001), e.createService(`{"customer_id":7,"provider_id":5}`), "ids restart")
}
