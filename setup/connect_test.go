package setup_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/testcerts"
	"github.com/iot-ops/tsbulk/setup"
)

// frontend is a stub of the Temporal frontend that records what clients
// send with GetSystemInfo, the first call of a client that connects.
type frontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	addr string
	// refuse, when set, answers every call PermissionDenied, as a server
	// refusing a key does.
	refuse bool

	mu    sync.Mutex
	auth  [][]string
	peers []string
}

func (f *frontend) GetSystemInfo(ctx context.Context, _ *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.auth = append(f.auth, md.Get("authorization"))
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			f.peers = append(f.peers, ti.State.PeerCertificates[0].Subject.CommonName)
		}
	}
	f.mu.Unlock()
	if f.refuse {
		return nil, status.Error(codes.PermissionDenied, "request unauthorized")
	}
	return &workflowservice.GetSystemInfoResponse{}, nil
}

func (f *frontend) calls() (auth [][]string, peers []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.auth...), append([]string(nil), f.peers...)
}

// startFrontend serves the stub on a loopback port, with TLS when tc is
// not nil.
func startFrontend(t *testing.T, tc *tls.Config, refuse bool) *frontend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var opts []grpc.ServerOption
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	srv := grpc.NewServer(opts...)
	f := &frontend{addr: ln.Addr().String(), refuse: refuse}
	workflowservice.RegisterWorkflowServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return f
}

// serverTLS is the stub's TLS: the test server certificate, and with
// mutual, a client certificate of the test CA required.
func serverTLS(t *testing.T, certs testcerts.Files, mutual bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	require.NoError(t, err)
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if mutual {
		pem, err := os.ReadFile(certs.CA)
		require.NoError(t, err)
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(pem))
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc
}

// isolate keeps Temporal's environment configuration of the machine
// running the tests out of them: no TEMPORAL_* variable, no TOML file.
func isolate(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "TEMPORAL_") || strings.HasPrefix(k, "TSBULK_") {
			// Set to be restored after the test, then unset: an empty
			// TEMPORAL_ADDRESS is not an unset one.
			t.Setenv(k, "")
			require.NoError(t, os.Unsetenv(k))
		}
	}
	// As the harness runs the product's processes: an empty file.
	t.Setenv("TEMPORAL_CONFIG_FILE", os.DevNull)
	// What the starter's validation needs besides Temporal (not used).
	t.Setenv("TSBULK_DATABASE_URL", "postgres://unused@127.0.0.1/unused")
	t.Setenv("TSBULK_BULK_DEFAULT_SITE", "SITE")
}

// loadConfig loads the product's configuration from the environment, as a
// process does.
func loadConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("")
	require.NoError(t, err)
	return cfg
}

// An API key (from temporal.api_key_file, over TEMPORAL_API_KEY) goes to
// the server as "authorization: Bearer <key>" over TLS, and appears in no
// log line and no error, even when the server refuses it.
func TestTemporalAPIKeyIsSentAsBearerAndNeverShown(t *testing.T) {
	isolate(t)
	certs, err := testcerts.Write(t.TempDir())
	require.NoError(t, err)
	const key = "tsbulk-test-api-key-Zx81"
	keyFile := filepath.Join(t.TempDir(), "temporal-api-key")
	require.NoError(t, os.WriteFile(keyFile, []byte(key+"\n"), 0o600))
	f := startFrontend(t, serverTLS(t, certs, false), false)
	t.Setenv("TEMPORAL_API_KEY", "the-environment-key")
	t.Setenv("TSBULK_TEMPORAL_ADDRESS", f.addr)
	t.Setenv("TSBULK_TEMPORAL_API_KEY_FILE", keyFile)
	t.Setenv("TSBULK_TEMPORAL_TLS_CA_FILE", certs.CA)
	cfg := loadConfig(t)
	require.NoError(t, cfg.ValidateStarter())

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := setup.Temporal(context.Background(), cfg, nil, logger)
	require.NoError(t, err)
	c.Close()
	auth, _ := f.calls()
	require.NotEmpty(t, auth)
	assert.Equal(t, []string{"Bearer " + key}, auth[0], "the product's key, over the environment's")
	assert.Contains(t, logs.String(), `"apiKey":true`)
	assert.Contains(t, logs.String(), `"tls":"on"`)

	refusing := startFrontend(t, serverTLS(t, certs, false), true)
	t.Setenv("TSBULK_TEMPORAL_ADDRESS", refusing.addr)
	cfg = loadConfig(t)
	_, err = setup.Temporal(context.Background(), cfg, nil, logger)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "request unauthorized")
	fmt.Fprintf(&logs, "%v %+v %#v", cfg, cfg.Temporal, cfg.Temporal)
	logger.Info("config", "temporal", cfg.Temporal)
	for _, shown := range []string{logs.String(), err.Error()} {
		assert.NotContains(t, shown, key)
		assert.NotContains(t, shown, "the-environment-key")
	}
}

// An API key alone turns TLS on, as Temporal's tools do; with TLS turned
// off it is refused outside dev mode, and in dev mode (a local server) it
// is still sent.
func TestTemporalAPIKeyNeedsTLSOutsideDevMode(t *testing.T) {
	isolate(t)
	t.Setenv("TSBULK_TEMPORAL_API_KEY", "k")
	opts, err := setup.TemporalOptions(loadConfig(t))
	require.NoError(t, err)
	require.NotNil(t, opts.ConnectionOptions.TLS, "TLS on")
	require.False(t, opts.ConnectionOptions.TLSDisabled)

	t.Setenv("TEMPORAL_TLS", "false")
	_, err = setup.TemporalOptions(loadConfig(t))
	require.ErrorContains(t, err, "API key")
	require.ErrorContains(t, err, "TLS turned off")

	t.Setenv("TEMPORAL_TLS", "")
	t.Setenv("TSBULK_TEMPORAL_TLS_ENABLED", "false")
	cfg := loadConfig(t)
	require.ErrorContains(t, cfg.ValidateStarter(), "temporal.tls.enabled")
	_, err = setup.TemporalOptions(cfg)
	require.ErrorContains(t, err, "TLS turned off")

	f := startFrontend(t, nil, false)
	t.Setenv("TSBULK_DEV", "true")
	t.Setenv("TSBULK_TEMPORAL_ADDRESS", f.addr)
	cfg = loadConfig(t)
	require.NoError(t, cfg.ValidateStarter())
	c, err := setup.Temporal(context.Background(), cfg, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	c.Close()
	auth, _ := f.calls()
	require.NotEmpty(t, auth)
	assert.Equal(t, []string{"Bearer k"}, auth[0])
}

// A server requiring mutual TLS accepts the client certificate of
// temporal.tls.cert_file and refuses a client without one.
func TestTemporalMutualTLS(t *testing.T) {
	isolate(t)
	certs, err := testcerts.Write(t.TempDir())
	require.NoError(t, err)
	f := startFrontend(t, serverTLS(t, certs, true), false)
	t.Setenv("TSBULK_TEMPORAL_ADDRESS", f.addr)
	t.Setenv("TSBULK_TEMPORAL_TLS_CA_FILE", certs.CA)
	t.Setenv("TSBULK_TEMPORAL_TLS_SERVER_NAME", "localhost")
	quiet := slog.New(slog.DiscardHandler)

	_, err = setup.Temporal(context.Background(), loadConfig(t), nil, quiet)
	require.Error(t, err, "no client certificate")

	t.Setenv("TSBULK_TEMPORAL_TLS_CERT_FILE", certs.UntrustedCert)
	t.Setenv("TSBULK_TEMPORAL_TLS_KEY_FILE", certs.UntrustedKey)
	_, err = setup.Temporal(context.Background(), loadConfig(t), nil, quiet)
	require.Error(t, err, "a client certificate of another CA")

	t.Setenv("TSBULK_TEMPORAL_TLS_CERT_FILE", certs.ClientCert)
	t.Setenv("TSBULK_TEMPORAL_TLS_KEY_FILE", certs.ClientKey)
	cfg := loadConfig(t)
	require.NoError(t, cfg.ValidateStarter())
	c, err := setup.Temporal(context.Background(), cfg, nil, quiet)
	require.NoError(t, err)
	c.Close()
	_, peers := f.calls()
	require.Equal(t, []string{testcerts.ClientName}, peers, "only the trusted client got through")
}

// The product's settings win over Temporal's environment configuration
// setting by setting; what they leave empty comes from it (the TOML
// profile, overridden by TEMPORAL_* variables); what neither gives is
// 127.0.0.1:7233 and namespace default without TLS.
func TestTemporalOptionsPrecedence(t *testing.T) {
	isolate(t)
	certs, err := testcerts.Write(t.TempDir())
	require.NoError(t, err)
	opts, err := setup.TemporalOptions(loadConfig(t))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7233", opts.HostPort)
	assert.Equal(t, "default", opts.Namespace)
	assert.Nil(t, opts.ConnectionOptions.TLS)
	assert.Nil(t, opts.Credentials)

	toml := filepath.Join(t.TempDir(), "temporal.toml")
	require.NoError(t, os.WriteFile(toml, []byte(fmt.Sprintf(`
[profile.default]
address = "default-profile:7233"

[profile.prod]
address = "prod.tmprl.example:7233"
namespace = "prod-ns"
[profile.prod.tls]
client_cert_path = %q
client_key_path = %q
server_name = "prod.tmprl.example"
`, certs.ClientCert, certs.ClientKey)), 0o600))
	t.Setenv("TEMPORAL_CONFIG_FILE", toml)
	t.Setenv("TEMPORAL_PROFILE", "prod")
	opts, err = setup.TemporalOptions(loadConfig(t))
	require.NoError(t, err)
	assert.Equal(t, "prod.tmprl.example:7233", opts.HostPort, "from the profile")
	assert.Equal(t, "prod-ns", opts.Namespace)
	require.NotNil(t, opts.ConnectionOptions.TLS)
	assert.Len(t, opts.ConnectionOptions.TLS.Certificates, 1, "the profile's client certificate")
	assert.Equal(t, "prod.tmprl.example", opts.ConnectionOptions.TLS.ServerName)

	t.Setenv("TEMPORAL_NAMESPACE", "env-ns")
	t.Setenv("TEMPORAL_ADDRESS", "env-host:7233")
	opts, err = setup.TemporalOptions(loadConfig(t))
	require.NoError(t, err)
	assert.Equal(t, "env-host:7233", opts.HostPort, "TEMPORAL_ADDRESS over the profile")
	assert.Equal(t, "env-ns", opts.Namespace)

	t.Setenv("TSBULK_TEMPORAL_ADDRESS", "product-host:7233")
	t.Setenv("TSBULK_TEMPORAL_TLS_SERVER_NAME", "product-host")
	t.Setenv("TSBULK_TEMPORAL_TLS_CA_FILE", certs.CA)
	opts, err = setup.TemporalOptions(loadConfig(t))
	require.NoError(t, err)
	assert.Equal(t, "product-host:7233", opts.HostPort, "temporal.address over TEMPORAL_ADDRESS")
	assert.Equal(t, "env-ns", opts.Namespace, "still the environment's: not set in the product")
	tc := opts.ConnectionOptions.TLS
	require.NotNil(t, tc)
	assert.Equal(t, "product-host", tc.ServerName)
	assert.NotNil(t, tc.RootCAs, "temporal.tls.ca_file")
	assert.Len(t, tc.Certificates, 1, "the profile's client certificate, not replaced")
	assert.Equal(t, "env-ns", setup.TemporalNamespace(loadConfig(t)))

	// The product turns TLS off over the profile's (a local server for a
	// test, while the shell's profile points at the cloud).
	t.Setenv("TSBULK_TEMPORAL_TLS_SERVER_NAME", "")
	t.Setenv("TSBULK_TEMPORAL_TLS_CA_FILE", "")
	t.Setenv("TSBULK_TEMPORAL_TLS_ENABLED", "false")
	opts, err = setup.TemporalOptions(loadConfig(t))
	require.NoError(t, err)
	assert.True(t, opts.ConnectionOptions.TLSDisabled)

	t.Setenv("TEMPORAL_PROFILE", "missing")
	_, err = setup.TemporalOptions(loadConfig(t))
	require.ErrorContains(t, err, "TEMPORAL_PROFILE", "a named profile that is not there is an error")
}
