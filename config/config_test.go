package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// withSecrets gives the ThingSpace secrets a worker needs: only the
// environment (or files) may hold them.
func withSecrets(t *testing.T) {
	t.Setenv("TSBULK_THINGSPACE_CLIENT_SECRET", "s")
	t.Setenv("TSBULK_THINGSPACE_PASSWORD", "p")
}

// loadYAML loads a configuration file holding body, which must load.
func loadYAML(t *testing.T, body string) *Config {
	t.Helper()
	cfg, err := Load(writeYAML(t, body))
	require.NoError(t, err)
	return cfg
}

// requireBothRefuse checks that the worker and the starter both refuse cfg
// at start, naming key.
func requireBothRefuse(t *testing.T, cfg *Config, key string) {
	t.Helper()
	for _, validate := range []func() error{cfg.ValidateWorker, cfg.ValidateStarter} {
		require.ErrorContains(t, validate(), key)
	}
}

const workerYAML = `
dev: true # the simulators, over http
database:
  url: postgres://postgres@127.0.0.1:5432/tsbulk?sslmode=disable
thingspace:
  base_url: http://127.0.0.1:8090
  client_id: app-key
  username: uws-user
  account: "0000123456-00001"
  # EXTRA
bulk:
  callback_timeout: 45m
  batch_size: 250
  default_site: WAREHOUSE-1
`

func TestFileThenEnvironmentOverrides(t *testing.T) {
	t.Setenv("TSBULK_THINGSPACE_CLIENT_SECRET", "from-env-secret")
	t.Setenv("TSBULK_THINGSPACE_PASSWORD", "from-env-password")
	t.Setenv("TSBULK_BULK_BATCH_SIZE", "500")
	cfg := loadYAML(t, workerYAML)
	require.NoError(t, cfg.ValidateWorker())
	require.Equal(t, "app-key", cfg.ThingSpace.ClientID, "from the file")
	require.Equal(t, 500, cfg.Bulk.BatchSize, "the environment overrides the file")
	require.Equal(t, 45*time.Minute, cfg.Bulk.CallbackTimeout)
	require.Equal(t, 24*time.Hour, cfg.Bulk.ConfirmDeadline, "default")
	require.Equal(t, "from-env-secret", cfg.ThingSpace.ClientSecret.Reveal())
	require.Equal(t, "0000123456-00001", cfg.ThingSpace.Account, "leading zeros kept")
}

func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(secret, []byte("file-secret\n"), 0o600))
	t.Setenv("TSBULK_THINGSPACE_PASSWORD", "pw")
	cfg := loadYAML(t, strings.Replace(workerYAML, "# EXTRA", "client_secret_file: "+secret, 1))
	require.Equal(t, "file-secret", cfg.ThingSpace.ClientSecret.Reveal())
}

func TestSecretsInTheFileAreRefused(t *testing.T) {
	_, err := Load(writeYAML(t, strings.Replace(workerYAML, "# EXTRA", "password: hunter2", 1)))
	require.Error(t, err)
	require.Contains(t, err.Error(), "thingspace.password must not be in the config file")
	require.Contains(t, err.Error(), "TSBULK_THINGSPACE_PASSWORD")
	require.NotContains(t, err.Error(), "hunter2")
}

// A database URL carrying a password is a secret like any other: refused in
// the file (without quoting it), accepted from the environment; a URL
// without password stays allowed in the file.
func TestDatabasePasswordInTheFileIsRefused(t *testing.T) {
	noPassword := "postgres://postgres@127.0.0.1:5432/tsbulk?sslmode=disable"
	for _, url := range []string{
		"postgres://tsbulk:hunter2@db.example:5432/tsbulk",
		"postgresql://tsbulk:hunter2@db.example/tsbulk?sslmode=require",
		"postgres://tsbulk@db.example/tsbulk?password=hunter2",
		"host=db.example user=tsbulk password=hunter2 dbname=tsbulk",
	} {
		_, err := Load(writeYAML(t, strings.Replace(workerYAML, noPassword, "'"+url+"'", 1)))
		require.ErrorContains(t, err, "database.url in the config file", url)
		require.ErrorContains(t, err, "TSBULK_DATABASE_URL", url)
		require.NotContains(t, err.Error(), "hunter2", url)
	}
	cfg := loadYAML(t, workerYAML)
	require.Equal(t, noPassword, cfg.Database.URL.Reveal())

	t.Setenv("TSBULK_DATABASE_URL", "postgres://tsbulk:hunter2@db.example:5432/tsbulk")
	cfg = loadYAML(t, strings.Replace(workerYAML, "  url: "+noPassword+"\n", "", 1))
	require.Equal(t, "postgres://tsbulk:hunter2@db.example:5432/tsbulk", cfg.Database.URL.Reveal(), "the environment may carry it")
	cfg = loadYAML(t, workerYAML)
	require.Equal(t, "postgres://tsbulk:hunter2@db.example:5432/tsbulk", cfg.Database.URL.Reveal(),
		"and override a URL without password in the file")
}

// Outside dev mode ThingSpace, Rev.io and the callback URL registered with
// ThingSpace must be https, each refusal naming its setting; dev mode (the
// simulators) allows http.
func TestHTTPOnlyInDevMode(t *testing.T) {
	withSecrets(t)
	t.Setenv("TSBULK_CALLBACKS_PASSWORD", "cb")
	t.Setenv("TSBULK_REVIO_PASSWORD", "rp")
	t.Setenv("TSBULK_REVIO_SUBSCRIPTION_KEY", "rk")
	t.Setenv("TSBULK_REVIO_ENABLED", "true")
	t.Setenv("TSBULK_REVIO_LOGIN", "api")
	t.Setenv("TSBULK_REVIO_CLIENT_CODE", "C1")
	t.Setenv("TSBULK_REVIO_BASE_URL", "http://127.0.0.1:8091")
	t.Setenv("TSBULK_CALLBACKS_USERNAME", "ts")
	t.Setenv("TSBULK_CALLBACKS_PUBLIC_URL", "http://callbacks.example:9001/thingspace/callbacks")
	t.Setenv("TSBULK_WORKER_EMBED_CALLBACK_RECEIVER", "true")

	t.Setenv("TSBULK_DEV", "false")
	cfg := loadYAML(t, workerYAML)
	require.False(t, cfg.Dev)
	for name, validate := range map[string]func() error{"worker": cfg.ValidateWorker, "registration": cfg.ValidateRegistration} {
		err := validate()
		require.ErrorContains(t, err, "thingspace.base_url (TSBULK_THINGSPACE_BASE_URL): must be https", name)
		require.ErrorContains(t, err, "callbacks.public_url (TSBULK_CALLBACKS_PUBLIC_URL): must be https", name)
	}
	require.ErrorContains(t, cfg.ValidateWorker(), "revio.base_url (TSBULK_REVIO_BASE_URL): must be https")
	require.ErrorContains(t, cfg.ValidateReceiver(), "callbacks.public_url")

	t.Setenv("TSBULK_DEV", "true")
	cfg = loadYAML(t, workerYAML)
	require.NoError(t, cfg.ValidateWorker())
	require.NoError(t, cfg.ValidateRegistration())

	t.Setenv("TSBULK_DEV", "false")
	t.Setenv("TSBULK_THINGSPACE_BASE_URL", "https://thingspace.verizon.com")
	t.Setenv("TSBULK_REVIO_BASE_URL", "https://api.revioapi.com")
	t.Setenv("TSBULK_CALLBACKS_PUBLIC_URL", "https://callbacks.example/thingspace/callbacks")
	cfg = loadYAML(t, workerYAML)
	require.NoError(t, cfg.ValidateWorker())
	require.NoError(t, cfg.ValidateRegistration())

	t.Setenv("TSBULK_THINGSPACE_BASE_URL", "thingspace.verizon.com")
	require.ErrorContains(t, loadYAML(t, workerYAML).ValidateWorker(), "thingspace.base_url (TSBULK_THINGSPACE_BASE_URL): must be an https URL with a host")
}

func TestValidationNamesEverySetting(t *testing.T) {
	t.Setenv("TSBULK_BULK_WINDOW", "5000")
	t.Setenv("TSBULK_BULK_POLL_INTERVAL", "0s")
	cfg, err := Load("")
	require.NoError(t, err)
	err = cfg.ValidateWorker()
	require.Error(t, err)
	for _, key := range []string{"database.url", "thingspace.client_id", "thingspace.client_secret", "thingspace.password",
		"thingspace.account", "bulk.window", "bulk.poll_interval", "TSBULK_THINGSPACE_CLIENT_ID"} {
		require.Contains(t, err.Error(), key)
	}
}

func TestRevioSettingsCheckedOnlyWhenEnabled(t *testing.T) {
	withSecrets(t)
	cfg := loadYAML(t, workerYAML)
	require.NoError(t, cfg.ValidateWorker())
	cfg.Revio.Enabled = true
	cfg.Revio.Login = "someone@example.com"
	err := cfg.ValidateWorker()
	require.Error(t, err)
	require.Contains(t, err.Error(), "revio.login")
	require.Contains(t, err.Error(), "revio.subscription_key")
}

func TestSecretsNeverPrint(t *testing.T) {
	t.Setenv("TSBULK_THINGSPACE_CLIENT_SECRET", "very-secret-value")
	cfg, err := Load("")
	require.NoError(t, err)
	var b strings.Builder
	logger := slog.New(slog.NewJSONHandler(&b, nil))
	logger.Info("config", "thingspace", cfg.ThingSpace, "secret", cfg.ThingSpace.ClientSecret)
	fmt.Fprintf(&b, "%v %+v %#v %s", cfg.ThingSpace, cfg.ThingSpace, cfg.ThingSpace, cfg.ThingSpace.ClientSecret)
	require.NotContains(t, b.String(), "very-secret-value")
	require.Contains(t, b.String(), "[REDACTED]")
}

// The documented example must load and hold every setting's default.
func TestExampleFileMatchesDefaults(t *testing.T) {
	fromFile, err := Load("example.yaml")
	require.NoError(t, err)
	defaults, err := Load("")
	require.NoError(t, err)
	fromFile.Database.URL, defaults.Database.URL = "", ""
	require.Equal(t, defaults, fromFile)
}

// Default-site assignment is on by default, as in the predecessor; it then
// needs a site name, checked at start.
func TestDefaultSiteAssignmentNeedsASite(t *testing.T) {
	withSecrets(t)
	noSite := strings.Replace(workerYAML, "default_site: WAREHOUSE-1", "default_site: \"\"", 1)
	cfg := loadYAML(t, noSite)
	require.True(t, cfg.Bulk.DefaultSiteAssignment)
	requireBothRefuse(t, cfg, "bulk.default_site")
	t.Setenv("TSBULK_BULK_DEFAULT_SITE_ASSIGNMENT", "false")
	cfg = loadYAML(t, noSite)
	require.NoError(t, cfg.ValidateWorker())
	require.Equal(t, "", cfg.SiteForBulkChanges())
}

// Disconnecting Rev.io services needs Rev.io: the combination that cannot
// work is refused at start instead of failing every deactivation's billing.
func TestDisconnectOnDeactivateNeedsRevio(t *testing.T) {
	withSecrets(t)
	t.Setenv("TSBULK_REVIO_DISCONNECT_ON_DEACTIVATE", "true")
	requireBothRefuse(t, loadYAML(t, workerYAML), "revio.disconnect_on_deactivate")
}

// Approval is on for deactivations by default; the environment turns it off
// with "none" (an empty variable reads as unset) or lists operations.
func TestApprovalOperationsFromTheEnvironment(t *testing.T) {
	withSecrets(t)
	require.Equal(t, []string{"deactivate"}, loadYAML(t, workerYAML).Approval.Operations)

	t.Setenv("TSBULK_APPROVAL_OPERATIONS", "none")
	cfg := loadYAML(t, workerYAML)
	require.Empty(t, cfg.Approval.Operations)
	require.NoError(t, cfg.ValidateStarter())

	t.Setenv("TSBULK_APPROVAL_OPERATIONS", "deactivate,suspend")
	require.Equal(t, []string{"deactivate", "suspend"}, loadYAML(t, workerYAML).Approval.Operations)

	t.Setenv("TSBULK_APPROVAL_OPERATIONS", "deactivate,nothing")
	err := loadYAML(t, workerYAML).ValidateStarter()
	require.ErrorContains(t, err, "approval.operations")
	require.ErrorContains(t, err, `"nothing" is not an operation`)
}

// Deactivations remove the device from ThingSpace's inventory by default,
// as the predecessor's did; the file or the environment may say otherwise.
func TestDeleteAfterDeactivationDefaultsToTrue(t *testing.T) {
	withSecrets(t)
	require.True(t, loadYAML(t, workerYAML).ThingSpace.DeleteAfterDeactivation)
	keep := strings.Replace(workerYAML, "# EXTRA", "delete_after_deactivation: false", 1)
	require.False(t, loadYAML(t, keep).ThingSpace.DeleteAfterDeactivation)
	t.Setenv("TSBULK_THINGSPACE_DELETE_AFTER_DEACTIVATION", "true")
	require.True(t, loadYAML(t, keep).ThingSpace.DeleteAfterDeactivation, "the environment overrides the file")
}

// The demo's configuration (make run) points at the simulators over http:
// it sets dev mode, and every process accepts it.
func TestDemoConfigIsValid(t *testing.T) {
	for _, k := range []string{"TSBULK_THINGSPACE_CLIENT_SECRET", "TSBULK_THINGSPACE_PASSWORD", "TSBULK_CALLBACKS_PASSWORD",
		"TSBULK_REVIO_PASSWORD", "TSBULK_REVIO_SUBSCRIPTION_KEY"} {
		t.Setenv(k, "demo")
	}
	cfg, err := Load("../harness/demo/config.yaml")
	require.NoError(t, err)
	require.True(t, cfg.Dev)
	require.NoError(t, cfg.ValidateWorker())
	require.NoError(t, cfg.ValidateReceiver())
	require.NoError(t, cfg.ValidateRegistration())
	require.NoError(t, cfg.ValidateStarter())
}

// The receiver's trust settings are checked at start, each problem named:
// networks entry by entry, the TLS files together and loadable, a
// positive concurrency cap.
func TestReceiverTrustSettings(t *testing.T) {
	t.Setenv("TSBULK_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tsbulk")
	t.Setenv("TSBULK_CALLBACKS_USERNAME", "listener")
	t.Setenv("TSBULK_CALLBACKS_PASSWORD", "s3cret")
	cfg, err := Load("")
	require.NoError(t, err)
	require.NoError(t, cfg.ValidateReceiver())
	require.Equal(t, 64, cfg.Callbacks.MaxConcurrent)
	require.Empty(t, cfg.Callbacks.AllowedSources, "any source by default")

	t.Setenv("TSBULK_CALLBACKS_ALLOWED_SOURCES", "192.0.2.0/24,2001:db8::1")
	t.Setenv("TSBULK_CALLBACKS_TRUSTED_PROXIES", "10.0.0.0/8")
	cfg, err = Load("")
	require.NoError(t, err)
	require.NoError(t, cfg.ValidateReceiver())
	nets, err := ParseNetworks("callbacks.allowed_sources", cfg.Callbacks.AllowedSources)
	require.NoError(t, err)
	require.Equal(t, "[192.0.2.0/24 2001:db8::1/128]", fmt.Sprint(nets))

	t.Setenv("TSBULK_CALLBACKS_ALLOWED_SOURCES", "192.0.2.0/24,192.0.2.300/32")
	t.Setenv("TSBULK_CALLBACKS_TRUSTED_PROXIES", "lb.internal")
	t.Setenv("TSBULK_CALLBACKS_MAX_CONCURRENT", "0")
	t.Setenv("TSBULK_CALLBACKS_TLS_CERT_FILE", "/nonexistent/cert.pem")
	cfg, err = Load("")
	require.NoError(t, err)
	err = cfg.ValidateReceiver()
	require.ErrorContains(t, err, `callbacks.allowed_sources (TSBULK_CALLBACKS_ALLOWED_SOURCES) entry 2: "192.0.2.300/32"`)
	require.ErrorContains(t, err, `callbacks.trusted_proxies (TSBULK_CALLBACKS_TRUSTED_PROXIES) entry 1: "lb.internal"`)
	require.ErrorContains(t, err, "callbacks.max_concurrent (TSBULK_CALLBACKS_MAX_CONCURRENT): must be at least 1")
	require.ErrorContains(t, err, "callbacks.tls_cert_file (TSBULK_CALLBACKS_TLS_CERT_FILE): goes with callbacks.tls_key_file: set both")

	t.Setenv("TSBULK_CALLBACKS_TLS_KEY_FILE", "/nonexistent/key.pem")
	cfg, err = Load("")
	require.NoError(t, err)
	require.ErrorContains(t, cfg.ValidateReceiver(), "callbacks.tls_cert_file (TSBULK_CALLBACKS_TLS_CERT_FILE): cannot be loaded")
}

// Temporal's TLS settings and API key: empty by default (Temporal's
// environment configuration then decides), tls.enabled unset rather than
// false, the key only from the environment or a file.
func TestTemporalTLSAndAPIKeySettings(t *testing.T) {
	withSecrets(t)
	cfg := loadYAML(t, workerYAML)
	require.Equal(t, Temporal{}, cfg.Temporal, "nothing set: all from Temporal's environment configuration")

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api-key")
	require.NoError(t, os.WriteFile(keyFile, []byte("key-from-file\n"), 0o600))
	withTLS := workerYAML + `
temporal:
  address: tsbulk.a1b2c.tmprl.cloud:7233
  namespace: tsbulk.a1b2c
  api_key_file: ` + keyFile + `
  tls:
    enabled: true
    server_name: tsbulk.a1b2c.tmprl.cloud
`
	cfg = loadYAML(t, withTLS)
	require.Equal(t, "key-from-file", cfg.Temporal.APIKey.Reveal())
	require.NotNil(t, cfg.Temporal.TLS.Enabled)
	require.True(t, *cfg.Temporal.TLS.Enabled)
	require.Equal(t, "tsbulk.a1b2c.tmprl.cloud", cfg.Temporal.TLS.ServerName)
	require.NoError(t, cfg.ValidateWorker())

	t.Setenv("TSBULK_TEMPORAL_TLS_ENABLED", "false")
	noServerName := strings.Replace(withTLS, "    server_name: tsbulk.a1b2c.tmprl.cloud\n", "", 1)
	cfg = loadYAML(t, noServerName)
	require.False(t, *cfg.Temporal.TLS.Enabled, "the environment overrides the file")
	require.NoError(t, cfg.ValidateWorker(), "an API key in clear: allowed in dev mode (a local server)")
	cfg = loadYAML(t, strings.Replace(noServerName, "dev: true", "dev: false", 1))
	requireBothRefuse(t, cfg, "temporal.tls.enabled (TSBULK_TEMPORAL_TLS_ENABLED): is false with an API key")

	_, err := Load(writeYAML(t, workerYAML+"temporal:\n  api_key: hunter2\n"))
	require.ErrorContains(t, err, "temporal.api_key must not be in the config file")
	require.ErrorContains(t, err, "TSBULK_TEMPORAL_API_KEY")
	require.NotContains(t, err.Error(), "hunter2")
}

// The TLS files are checked at start: a certificate goes with its key, both
// load, the CA file holds certificates, and no file is given while TLS is
// turned off.
func TestTemporalTLSFilesAreChecked(t *testing.T) {
	withSecrets(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	t.Setenv("TSBULK_TEMPORAL_TLS_CERT_FILE", notPEM)
	requireBothRefuse(t, loadYAML(t, workerYAML), "temporal.tls.cert_file (TSBULK_TEMPORAL_TLS_CERT_FILE): goes with temporal.tls.key_file")
	t.Setenv("TSBULK_TEMPORAL_TLS_KEY_FILE", notPEM)
	requireBothRefuse(t, loadYAML(t, workerYAML), "temporal.tls.cert_file (TSBULK_TEMPORAL_TLS_CERT_FILE): cannot be loaded")
	t.Setenv("TSBULK_TEMPORAL_TLS_CERT_FILE", "")
	t.Setenv("TSBULK_TEMPORAL_TLS_KEY_FILE", "")

	t.Setenv("TSBULK_TEMPORAL_TLS_CA_FILE", notPEM)
	requireBothRefuse(t, loadYAML(t, workerYAML), "temporal.tls.ca_file (TSBULK_TEMPORAL_TLS_CA_FILE): holds no PEM certificate")
	t.Setenv("TSBULK_TEMPORAL_TLS_CA_FILE", filepath.Join(dir, "missing.pem"))
	requireBothRefuse(t, loadYAML(t, workerYAML), "temporal.tls.ca_file (TSBULK_TEMPORAL_TLS_CA_FILE): cannot be read")
	t.Setenv("TSBULK_TEMPORAL_TLS_ENABLED", "false")
	requireBothRefuse(t, loadYAML(t, workerYAML), "temporal.tls.enabled (TSBULK_TEMPORAL_TLS_ENABLED): is false while other temporal.tls settings are given")
}
