// Package setup is what every command of the product does first: take the
// stop signals (Ctrl-C, and SIGTERM, which docker stop, systemd and
// Kubernetes send before they kill), and reach the two dependencies from
// the configuration: PostgreSQL (the store, migrations applied) and the
// Temporal server. The worker, the callback receiver, the starter and the
// tools use it. It holds no workflow code, so the operator's CLI links only
// what it needs.
package setup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	tlog "go.temporal.io/sdk/log"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
)

// DefaultTemporalAddress is the frontend reached when neither the
// configuration nor Temporal's environment configuration names one.
const DefaultTemporalAddress = "127.0.0.1:7233"

// Temporal connects to the Temporal server of TemporalOptions. With m, the
// SDK's metrics go to the process's Prometheus registry.
func Temporal(ctx context.Context, cfg *config.Config, m *metrics.Metrics, logger *slog.Logger) (client.Client, error) {
	opts, err := temporalOptions(cfg, m, logger)
	if err != nil {
		return nil, err
	}
	if err := useCodec(&opts, cfg, logger); err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := client.DialContext(dctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s, namespace %s, TLS %s: %w",
			opts.HostPort, opts.Namespace, tlsMode(opts), err)
	}
	return c, nil
}

// TemporalLazy is a client of the Temporal server of TemporalOptions that
// connects on its first call, not now: a process that can do its job
// without Temporal (the callback receiver stores callbacks) starts while
// the server is unreachable. A call made while it is unreachable fails,
// and the next call tries again.
func TemporalLazy(cfg *config.Config, m *metrics.Metrics, logger *slog.Logger) (client.Client, error) {
	opts, err := temporalOptions(cfg, m, logger)
	if err != nil {
		return nil, err
	}
	if err := useCodec(&opts, cfg, logger); err != nil {
		return nil, err
	}
	c, err := client.NewLazyClient(opts)
	if err != nil {
		return nil, fmt.Errorf("temporal client for %s, namespace %s: %w", opts.HostPort, opts.Namespace, err)
	}
	return c, nil
}

// TemporalOptions are the client options of every process of the product
// (worker, callback receiver, starter, tools): Temporal's own environment
// configuration, as every Temporal tool reads it (go.temporal.io/sdk/
// contrib/envconfig: the profile of the TOML file named by
// TEMPORAL_CONFIG_FILE, or ~/.config/temporalio/temporal.toml, chosen by
// TEMPORAL_PROFILE; then the TEMPORAL_* variables), with the product's
// temporal.* settings over it, setting by setting: the product's
// configuration is this deployment's own, reviewed with the rest of it,
// while the environment configuration is shared with every Temporal tool on
// the machine (an operator's shell, a CLI profile pointing elsewhere).
// What neither gives is 127.0.0.1:7233, namespace default, no TLS.
// A remote codec of the profile is not used: workers would call it on
// every replay.
func TemporalOptions(cfg *config.Config) (client.Options, error) {
	prof, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{})
	if err != nil {
		return client.Options{}, fmt.Errorf(
			"temporal environment configuration (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE, TEMPORAL_*): %w", err)
	}
	overlay(&prof, cfg.Temporal)
	if prof.Address == "" {
		prof.Address = DefaultTemporalAddress
	}
	if prof.Namespace == "" {
		prof.Namespace = "default"
	}
	opts, err := prof.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal TLS (temporal.tls.*, TEMPORAL_TLS_*): %w", err)
	}
	if prof.APIKey != "" && tlsMode(opts) == "off" && !cfg.Dev {
		return client.Options{}, errors.New("temporal: an API key is set (temporal.api_key or TEMPORAL_API_KEY) " +
			"with TLS turned off: it would cross the network in clear (allowed only in dev mode)")
	}
	return opts, nil
}

// overlay puts the product's Temporal settings that are set over prof.
func overlay(prof *envconfig.ClientConfigProfile, t config.Temporal) {
	if t.Address != "" {
		prof.Address = t.Address
	}
	if t.Namespace != "" {
		prof.Namespace = t.Namespace
	}
	if t.APIKey != "" {
		prof.APIKey = t.APIKey.Reveal()
	}
	if !t.TLS.Set() {
		return
	}
	// A copy: prof.TLS may be shared with the loaded file's profile.
	tc := envconfig.ClientConfigTLS{}
	if prof.TLS != nil {
		tc = *prof.TLS
	}
	// Any TLS setting here means TLS, unless enabled says otherwise
	// (config validation refuses files with enabled false).
	tc.Disabled = t.TLS.Enabled != nil && !*t.TLS.Enabled
	if t.TLS.CAFile != "" {
		tc.ServerCACertPath, tc.ServerCACertData = t.TLS.CAFile, nil
	}
	if t.TLS.CertFile != "" || t.TLS.KeyFile != "" {
		tc.ClientCertPath, tc.ClientCertData = t.TLS.CertFile, nil
		tc.ClientKeyPath, tc.ClientKeyData = t.TLS.KeyFile, nil
	}
	if t.TLS.ServerName != "" {
		tc.ServerName = t.TLS.ServerName
	}
	prof.TLS = &tc
}

// tlsMode is how opts reach the server: off, on (the server is verified),
// or mutual (the client presents a certificate too).
func tlsMode(opts client.Options) string {
	c := opts.ConnectionOptions.TLS
	switch {
	case c == nil || opts.ConnectionOptions.TLSDisabled:
		return "off"
	case len(c.Certificates) > 0 || c.GetClientCertificate != nil:
		return "mutual"
	default:
		return "on"
	}
}

// TemporalNamespace is the namespace the product's processes use, for
// links and messages: TemporalOptions' when they can be built, else the
// configured one, else default.
func TemporalNamespace(cfg *config.Config) string {
	if opts, err := TemporalOptions(cfg); err == nil {
		return opts.Namespace
	}
	if cfg.Temporal.Namespace != "" {
		return cfg.Temporal.Namespace
	}
	return "default"
}

func temporalOptions(cfg *config.Config, m *metrics.Metrics, logger *slog.Logger) (client.Options, error) {
	opts, err := TemporalOptions(cfg)
	if err != nil {
		return opts, err
	}
	opts.Logger = tlog.NewStructuredLogger(logger)
	if m != nil {
		h, err := m.TemporalHandler(logger)
		if err != nil {
			return opts, fmt.Errorf("temporal metrics: %w", err)
		}
		opts.MetricsHandler = h
	}
	attrs := []any{"address", opts.HostPort, "namespace", opts.Namespace, "tls", tlsMode(opts),
		"apiKey", opts.Credentials != nil}
	logger.Info("temporal connection", attrs...)
	if c := opts.ConnectionOptions.TLS; c != nil && c.InsecureSkipVerify && tlsMode(opts) != "off" {
		logger.Warn("temporal: the server's certificate is not verified (TEMPORAL_TLS_DISABLE_HOST_VERIFICATION)")
	}
	return opts, nil
}

// Store connects to PostgreSQL and checks that the schema is this build's
// (migrations are `worker migrate`'s job).
func Store(ctx context.Context, cfg *config.Config) (*db.Store, error) {
	return db.Open(ctx, cfg.Database.URL.Reveal(), cfg.Database.MaxConns)
}

// Explain turns start-up failures operators can fix into advice.
func Explain(err error) string {
	var unreachable *db.UnreachableError
	if errors.As(err, &unreachable) {
		return fmt.Sprintf(
			"%v\n\nPostgreSQL must be running and reachable (setting database.url, or TSBULK_DATABASE_URL).\n"+
				"On a development machine start it with:\n"+
				"    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
			err,
		)
	}
	return err.Error()
}
