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
	tlog "go.temporal.io/sdk/log"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
)

// Temporal connects to the Temporal server named by the configuration. With
// m, the SDK's metrics go to the process's Prometheus registry.
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
		return nil, fmt.Errorf("connect to Temporal at %s (temporal.address): %w", cfg.Temporal.Address, err)
	}
	return c, nil
}

// TemporalLazy is a client of the Temporal server named by the
// configuration that connects on its first call, not now: a process that
// can do its job without Temporal (the callback receiver stores callbacks)
// starts while the server is unreachable. A call made while it is
// unreachable fails, and the next call tries again.
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
		return nil, fmt.Errorf("temporal client for %s (temporal.address): %w", cfg.Temporal.Address, err)
	}
	return c, nil
}

func temporalOptions(cfg *config.Config, m *metrics.Metrics, logger *slog.Logger) (client.Options, error) {
	opts := client.Options{
		HostPort:  cfg.Temporal.Address,
		Namespace: cfg.Temporal.Namespace,
		Logger:    tlog.NewStructuredLogger(logger),
	}
	if m != nil {
		h, err := m.TemporalHandler(logger)
		if err != nil {
			return opts, fmt.Errorf("temporal metrics: %w", err)
		}
		opts.MetricsHandler = h
	}
	return opts, nil
}

// Store connects to PostgreSQL and applies the migrations.
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
