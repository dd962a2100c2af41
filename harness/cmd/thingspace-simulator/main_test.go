package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunServesAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "seeds.csv")
	if err := os.WriteFile(seedFile, []byte("iccid,state,account\n89012600000000000011,active,0000777777-00001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TS_SIM_CLIENT_SECRET": "s3cret-from-env", "TS_SIM_PASSWORD": "pw-from-env"}
	var logs syncBuffer
	addrCh := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--seed-count", "5", "--seed-state", "active",
			"--seed-file", seedFile, "--account", "0000111111-00001,0000222222-00001", "--completion-delay", "10ms"},
			func(k string) string { return env[k] }, &logs, func(a net.Addr) { addrCh <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrCh:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}
	base := "http://" + addr.String()

	resp, err := http.Get(base + "/admin/devices")
	if err != nil {
		t.Fatal(err)
	}
	var devs []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&devs)
	resp.Body.Close()
	if len(devs) != 6 {
		t.Fatalf("want 6 seeded devices, got %d", len(devs))
	}

	// The secret from the environment is the one accepted.
	req, _ := http.NewRequest(
		http.MethodPost,
		base+"/api/ts/v1/oauth2/token",
		strings.NewReader("grant_type=client_credentials"),
	)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("sim-client-id", "s3cret-from-env")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token with the env secret: %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no graceful shutdown")
	}
	out := logs.String()
	if !strings.Contains(out, "devices=6") ||
		!strings.Contains(out, "0000111111-00001,0000222222-00001,0000777777-00001") {
		t.Fatalf("start line lacks device count or accounts: %s", out)
	}
	for _, secret := range []string{"s3cret-from-env", "pw-from-env"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log contains a secret: %s", out)
		}
	}
}

func TestParseFlags(t *testing.T) {
	var out bytes.Buffer
	st, err := parseFlags(
		[]string{"--account", "a", "--account", "b,c", "--requests-per-hour", "1000", "--error-rate", "0.1",
			"--latency", "50ms", "--reorder-callbacks", "--client-secret", "flag-secret", "--log-level", "debug",
			"--list-cursor"},
		func(string) string { return "env-secret" },
		&out,
	)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.accounts, ",") != "a,b,c" || st.cfg.Limits.RequestsPerHour != 1000 || st.cfg.Faults.ErrorRate != 0.1 ||
		st.cfg.Faults.Latency != 50*time.Millisecond || !st.cfg.Faults.ReorderCallbacks || st.cfg.ClientSecret != "flag-secret" ||
		st.cfg.Password != "env-secret" || !st.cfg.ListCursorPaging ||
		st.logLevel.String() != "DEBUG" {
		t.Fatalf("settings %+v", st)
	}
	if _, err := parseFlags([]string{"--no-such-flag"}, func(string) string { return "" }, &out); err == nil {
		t.Fatal("unknown flag accepted")
	}
	if _, err := parseFlags([]string{"stray"}, func(string) string { return "" }, &out); err == nil {
		t.Fatal("stray argument accepted")
	}
}
