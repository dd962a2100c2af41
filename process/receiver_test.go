package process

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/nettest"
	"github.com/iot-ops/tsbulk/metrics"
)

// The stand-alone receiver is ready while PostgreSQL answers: it stores
// callbacks, whatever Temporal's state, which /readyz reports beside.
func TestReceiverReadyWithoutTemporal(t *testing.T) {
	tc, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:7"}) // nothing listens there
	require.NoError(t, err)
	defer tc.Close()
	srv := httptest.NewServer(adminServer("", metrics.New(), receiverReadiness(dbtest.New(t), tc)).Handler)
	defer srv.Close()

	code, body := nettest.Get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ready; temporal is not reachable: callbacks are stored and signalled once it answers\n", body)

	pool, err := pgxpool.New(context.Background(), "postgres://u@127.0.0.1:9/x?connect_timeout=2")
	require.NoError(t, err)
	defer pool.Close()
	down := httptest.NewServer(adminServer("", metrics.New(), receiverReadiness(&db.Store{Pool: pool}, tc)).Handler)
	defer down.Close()
	code, body = nettest.Get(t, down.URL+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: postgres is not reachable\n", body)
}

// With callbacks.tls_cert_file and tls_key_file the receiver serves HTTPS,
// TLS 1.2 at least, and nothing in plain HTTP.
func TestReceiverServesHTTPS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := &config.Config{Callbacks: config.Callbacks{
		Listen: nettest.FreeAddr(t), Path: "/thingspace/callbacks", Username: "listener", Password: "s3cret-listener",
		MaxBodyBytes: 1 << 20, MaxConcurrent: 4, TLSCertFile: certFile, TLSKeyFile: keyFile,
	}}
	tc, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:7"})
	require.NoError(t, err)
	defer tc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runReceiver(ctx, cfg, dbtest.New(t), tc, metrics.New(), slog.New(slog.DiscardHandler), false)
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	url := "https://" + cfg.Callbacks.Listen + cfg.Callbacks.Path
	post := func(tlsCfg *tls.Config) (*http.Response, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		return c.Post(url, "application/json", strings.NewReader(`{"username":"listener","password":"wrong"}`))
	}
	var resp *http.Response
	require.Eventually(t, func() bool {
		resp, err = post(&tls.Config{RootCAs: pool})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "answers over TLS")
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the handler behind TLS")
	require.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)

	_, err = post(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11})
	require.Error(t, err, "TLS 1.1 refused")
	resp, err = post(&tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12})
	require.NoError(t, err, "TLS 1.2 accepted")
	_ = resp.Body.Close()

	plain, err := http.Post("http://"+cfg.Callbacks.Listen+cfg.Callbacks.Path, "application/json",
		strings.NewReader(`{}`))
	require.NoError(t, err)
	_ = plain.Body.Close()
	require.Equal(t, http.StatusBadRequest, plain.StatusCode, "plain HTTP is not served")
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their files and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "receiver test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile, pool
}

// The receiver serves each tenant of the configuration at its callback
// path, with its listener credentials; the callbacks are stored as the
// tenant's. With named tenants only, callbacks.path itself is no tenant's.
func TestReceiverServesEveryTenantAtItsPath(t *testing.T) {
	for _, withDefault := range []bool{true, false} {
		t.Run(map[bool]string{true: "default and acme", false: "acme only"}[withDefault], func(t *testing.T) {
			cfg := &config.Config{Callbacks: config.Callbacks{
				Listen: nettest.FreeAddr(t), Path: "/thingspace/callbacks", Username: "listener",
				Password: "s3cret-listener", MaxBodyBytes: 1 << 20, MaxConcurrent: 4,
			}, Tenants: []config.Tenant{{ID: "acme", ThingSpace: config.TenantThingSpace{Accounts: []string{"acct-acme"}},
				Callbacks: config.TenantCallbacks{Username: "acme-listener", Password: "acme-s3cret"}}}}
			if withDefault {
				cfg.ThingSpace.Account = "acct-default"
			}
			store := dbtest.New(t)
			tc, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:7"})
			require.NoError(t, err)
			defer tc.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- runReceiver(ctx, cfg, store, tc, metrics.New(), slog.New(slog.DiscardHandler), false)
			}()
			defer func() {
				cancel()
				require.NoError(t, <-done)
			}()

			base := "http://" + cfg.Callbacks.Listen + cfg.Callbacks.Path
			post := func(url, user, pass, requestID string) int {
				body := `{"username":"` + user + `","password":"` + pass + `","requestId":"` + requestID +
					`","deviceIds":[{"id":"89148000001234567895","kind":"iccid"}],"status":"Success"}`
				resp, err := http.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					return 0
				}
				_ = resp.Body.Close()
				return resp.StatusCode
			}
			const defaultReq, acmeReq = "5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f70", "7c1e2d3f-4a5b-4c6d-8e7f-901a2b3c4d5e"
			require.Eventually(t, func() bool {
				return post(base+"/acme", "acme-listener", "acme-s3cret", acmeReq) == http.StatusOK
			}, 10*time.Second, 50*time.Millisecond, "acme's callback at acme's path")
			require.Equal(t, http.StatusUnauthorized, post(base+"/acme", "listener", "s3cret-listener", defaultReq))
			if withDefault {
				require.Equal(t, http.StatusOK, post(base, "listener", "s3cret-listener", defaultReq))
				require.Equal(t, http.StatusUnauthorized, post(base, "acme-listener", "acme-s3cret", acmeReq))
			} else {
				require.Equal(t, http.StatusNotFound, post(base, "listener", "s3cret-listener", defaultReq),
					"no default tenant: callbacks.path is not served")
			}

			rows, err := store.Pool.Query(ctx, `SELECT request_id || ' ' || tenant FROM callbacks ORDER BY id`)
			require.NoError(t, err)
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			want := []string{acmeReq + " acme"}
			if withDefault {
				want = append(want, defaultReq+" default")
			}
			require.Equal(t, want, got)
		})
	}
}
