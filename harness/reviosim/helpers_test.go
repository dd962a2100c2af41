package reviosim

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
	"testing"
	"time"

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

func seedServices(t *testing.T, e *env, n int, customer int64) {
	t.Helper()
	for i := 0; i < n; i++ {
		e.createService(fmt.Sprintf(`{"customer_id":%d,"provider_id":5,"number":"1555%04d","number2":"8901%04d"}`, customer, i, i))
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
