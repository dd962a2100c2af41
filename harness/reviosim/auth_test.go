package reviosim

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
