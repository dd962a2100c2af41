package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(
		strings.Fields("--login API --client-code CC --calls-per-minute -1 --error-rate 0.1 --stall-create-service 2s"),
		env(
			map[string]string{"REVIO_SIM_PASSWORD": "pw-from-env", "REVIO_SIM_SUBSCRIPTION_KEY": "key-from-env"},
		),
		io.Discard,
	)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8091", o.listen)
	assert.Equal(t, "pw-from-env", o.cfg.Password)
	assert.Equal(t, "key-from-env", o.cfg.SubscriptionKey)
	assert.Equal(t, -1, o.cfg.CallsPerMinute)
	assert.Equal(t, 0.1, o.cfg.Faults.ErrorRate)
	assert.Equal(t, 2*time.Second, o.cfg.Faults.StallCreateService)

	_, err = parseFlags(nil, env(nil), io.Discard)
	assert.ErrorContains(t, err, "REVIO_SIM_PASSWORD")
	_, err = parseFlags([]string{"--password", "p"}, env(nil), io.Discard)
	assert.ErrorContains(t, err, "REVIO_SIM_SUBSCRIPTION_KEY")
	_, err = parseFlags(
		[]string{"--password", "p", "--subscription-key", "k", "--error-rate", "3"},
		env(nil),
		io.Discard,
	)
	assert.ErrorContains(t, err, "error_rate")
}

func TestServeAndGracefulShutdown(t *testing.T) {
	o, err := parseFlags(
		strings.Fields("--password serve-secret-pw --subscription-key serve-secret-key --stall-create-service 1m"),
		env(nil),
		io.Discard,
	)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, o.cfg, log.New(&logs, "", 0)) }()

	base := "http://" + ln.Addr().String()
	req, _ := http.NewRequest("GET", base+"/v1/SystemStatus", nil)
	req.Header.Set(
		"Authorization",
		"Basic "+base64.StdEncoding.EncodeToString([]byte("INTEGRATIONS@SIMCLIENT:serve-secret-pw")),
	)
	req.Header.Set("Ocp-Apim-Subscription-Key", "serve-secret-key")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	// A stalled create must not hold up shutdown.
	stalled := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/v1/Services", strings.NewReader(`{"customer_id":1,"provider_id":5}`))
		req.Header = resp.Request.Header.Clone()
		req.Header.Set("Content-Type", "application/json")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			stalled <- 0
			return
		}
		r.Body.Close()
		stalled <- r.StatusCode
	}()
	require.Eventually(t, func() bool {
		r, err := http.Get(base + "/admin/services")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return strings.Contains(string(b), "service_id")
	}, 2*time.Second, 10*time.Millisecond)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown hung")
	}
	assert.Equal(t, 201, <-stalled)
	assert.Contains(t, logs.String(), "listening on "+ln.Addr().String())
	assert.NotContains(t, logs.String(), "serve-secret")
}
