package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/harness/testcerts"
	"github.com/iot-ops/tsbulk/setup"
)

// A bulk change runs through the Temporal server production runs (v1.29.1
// on PostgreSQL) with mutual TLS required on its frontend: the worker, a
// process configured by TSBULK_TEMPORAL_TLS_* as in production, and the
// submitting client connect with the test CA's client certificate; a
// client without one, or with one of another CA, or in plaintext, is
// refused.
func TestBulkChangeOverMutualTLS(t *testing.T) {
	certs, err := testcerts.Write(t.TempDir())
	require.NoError(t, err)
	started := time.Now()
	addr := startMutualTLSTemporal(t, certs)
	t.Logf("Temporal server with mutual TLS on %s after %s", addr, time.Since(started).Round(time.Second))

	withCert := func(c *config.Config) {
		c.Temporal.TLS = config.TemporalTLS{CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey,
			ServerName: "localhost"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// stack.Start, not newStack: TSBULK_TEST_TEMPORAL_ADDRESS must not
	// send this test to another server.
	s, err := stack.Start(ctx, stack.Options{DatabaseURL: dbtest.NewURL(t), TemporalAddress: addr,
		ThingSpace: simConfig(200*time.Millisecond, 200*time.Millisecond, 20), Config: withCert})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	w := startWorkerProcess(t, s)

	devs, file := suspendFile(t, s, "8914800803", 3)
	res := submit(t, s, file)
	out := waitBulk(t, s, res, 2*time.Minute)
	require.Equal(t, len(devs), out.Processed, "worker log:\n%s", w.log)
	for iccid, r := range results(t, s, res.ID) {
		require.Equal(t, change.Processed, r.Status, iccid)
	}

	quiet := slog.New(slog.DiscardHandler)
	for _, refused := range []struct {
		name string
		tls  config.TemporalTLS
	}{
		{"no client certificate", config.TemporalTLS{CAFile: certs.CA, ServerName: "localhost"}},
		{"a certificate of another CA", config.TemporalTLS{CAFile: certs.CA, ServerName: "localhost",
			CertFile: certs.UntrustedCert, KeyFile: certs.UntrustedKey}},
		{"plaintext", config.TemporalTLS{Enabled: new(bool)}},
	} {
		cfg := *s.Config
		cfg.Temporal.TLS = refused.tls
		c, err := setup.Temporal(ctx, &cfg, nil, quiet)
		if err == nil {
			c.Close()
		}
		require.Error(t, err, "%s: refused", refused.name)
		t.Logf("%s: refused: %v", refused.name, err)
	}
	t.Logf("the whole test took %s", time.Since(started).Round(time.Second))
}

// startMutualTLSTemporal starts a Temporal server on PostgreSQL with
// scripts/temporal-postgres.sh, with mutual TLS on its frontend (the
// script's TEMPORAL_PG_TLS_* settings), and returns its frontend's
// address. It is the test's own: its own ports, databases, role and state
// directory, so that a server already running here, with or without TLS,
// is left alone; it is stopped and its databases dropped when the test
// ends. The test is skipped only when the server cannot be installed.
func startMutualTLSTemporal(t *testing.T, certs testcerts.Files) string {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "temporal-postgres.sh"))
	require.NoError(t, err)
	admin, err := url.Parse(dbtest.AdminURL())
	require.NoError(t, err)
	base, err := stack.FreePortBase()
	require.NoError(t, err)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "tsbulk_mtls_" + hex.EncodeToString(b)
	// The script's own temporal CLI calls read Temporal's environment
	// configuration: the caller's must not point them elsewhere.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TEMPORAL_") {
			env = append(env, kv)
		}
	}
	env = append(env, "TEMPORAL_CONFIG_FILE="+os.DevNull,
		fmt.Sprintf("TEMPORAL_PG_PORT=%d", base), "TEMPORAL_PG_DB_PREFIX="+prefix,
		"TEMPORAL_PG_STATE_DIR="+filepath.Join(t.TempDir(), "temporal-pg"), "TEMPORAL_PG_LOG_LEVEL=warn",
		"TEMPORAL_PG_HOST="+admin.Hostname(), "TEMPORAL_PG_DB_PORT="+portOr(admin.Port(), "5432"),
		"TEMPORAL_PG_ADMIN_USER="+admin.User.Username(),
		// A small server: it shares PostgreSQL's connections with the
		// other tests.
		"TEMPORAL_PG_MAX_CONNS=5", "TEMPORAL_PG_VISIBILITY_MAX_CONNS=3",
		"TEMPORAL_PG_TLS_CERT="+certs.ServerCert, "TEMPORAL_PG_TLS_KEY="+certs.ServerKey,
		"TEMPORAL_PG_TLS_CA="+certs.CA, "TEMPORAL_PG_TLS_CLIENT_CERT="+certs.ClientCert,
		"TEMPORAL_PG_TLS_CLIENT_KEY="+certs.ClientKey, "TEMPORAL_PG_TLS_SERVER_NAME=localhost")
	if pw, ok := admin.User.Password(); ok {
		env = append(env, "PGPASSWORD="+pw)
	}
	run := func(timeout time.Duration, step string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, script, step)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("scripts/temporal-postgres.sh %s: %w\n%s", step, err, stderr.String())
		}
		return strings.TrimSpace(string(out)), nil
	}
	// go install the first time: several minutes.
	if _, err := run(30*time.Minute, "install"); err != nil {
		t.Skipf("the Temporal server v1.29.1 cannot be installed, so the test of mutual TLS cannot run: %v", err)
	}
	t.Cleanup(func() {
		if _, err := run(time.Minute, "stop"); err != nil {
			t.Errorf("stop the Temporal server: %v", err)
		}
		dropDatabases(t, prefix)
	})
	_, err = run(5*time.Minute, "setup")
	require.NoError(t, err)
	addr, err := run(5*time.Minute, "start")
	require.NoError(t, err)
	return addr
}

func portOr(port, def string) string {
	if port == "" {
		return def
	}
	return port
}

// dropDatabases drops what scripts/temporal-postgres.sh setup created for
// prefix: its two databases and its role.
func dropDatabases(t *testing.T, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbtest.AdminURL())
	if err != nil {
		t.Errorf("drop the Temporal server's databases %s*: %v", prefix, err)
		return
	}
	defer c.Close(ctx)
	for _, q := range []string{
		"DROP DATABASE IF EXISTS " + prefix + " WITH (FORCE)",
		"DROP DATABASE IF EXISTS " + prefix + "_visibility WITH (FORCE)",
		"DROP ROLE IF EXISTS " + prefix,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}
