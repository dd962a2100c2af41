package process

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/iot-ops/tsbulk/callbacks"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/setup"
)

// NewReceiver builds the callback receiver: an endpoint per tenant of
// cfg.AllTenants(), at the tenant's callback path with its listener
// credentials (Receiver.Mount).
func NewReceiver(
	cfg *config.Config,
	store *db.Store,
	tc client.Client,
	m *metrics.Metrics,
	logger *slog.Logger,
) (*callbacks.Receiver, error) {
	allowed, err := config.ParseNetworks("callbacks.allowed_sources", cfg.Callbacks.AllowedSources)
	if err != nil {
		return nil, err
	}
	proxies, err := config.ParseNetworks("callbacks.trusted_proxies", cfg.Callbacks.TrustedProxies)
	if err != nil {
		return nil, err
	}
	rcv := &callbacks.Receiver{
		Store: store, Temporal: tc,
		MaxBodyBytes: cfg.Callbacks.MaxBodyBytes, AllowedSources: allowed, TrustedProxies: proxies,
		MaxConcurrent: cfg.Callbacks.MaxConcurrent, Metrics: m, Logger: logger,
	}
	for _, t := range cfg.AllTenants() {
		l := callbacks.Listener{Tenant: t.ID, Path: t.CallbackPath(cfg.Callbacks.Path),
			Username: t.Callbacks.Username, Password: t.Callbacks.Password.Reveal()}
		rcv.Listeners = append(rcv.Listeners, l)
		if t.ID == config.DefaultTenant {
			// For Handler, which serves the default tenant's endpoint
			// alone (as the harness's stack mounts it).
			rcv.Username, rcv.Password = l.Username, l.Password
		}
	}
	return rcv, nil
}

// receiverTLS is the receiver's TLS configuration when it serves HTTPS
// (callbacks.tls_cert_file and tls_key_file), nil when it does not.
func receiverTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.Callbacks.TLSCertFile == "" && cfg.Callbacks.TLSKeyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.Callbacks.TLSCertFile, cfg.Callbacks.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("callbacks.tls_cert_file and callbacks.tls_key_file: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// RunReceiver runs the callback receiver process until ctx ends. Its job
// is storing callbacks, which needs PostgreSQL only: it starts, answers and
// is ready while Temporal is unreachable, and the redelivery loop signals
// what it stored once Temporal answers. (The worker, which embeds the
// receiver, needs Temporal and dials it at start.)
func RunReceiver(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	m := metrics.New()
	store, err := setup.Store(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	tc, err := setup.TemporalLazy(cfg, m, logger)
	if err != nil {
		return err
	}
	defer tc.Close()
	// A SIGHUP sent to every process to reload the workers' tenants must
	// not kill the receiver (Go's default): it says what it does instead.
	defer reloadOnHangup(ctx, func() {
		logger.Warn("SIGHUP: the callback receiver reads its tenants at start: restart it to serve a tenant added or changed")
	})()
	return runReceiver(ctx, cfg, store, tc, m, logger, true)
}

// temporalDown is a readiness result that is not "not ready": the process
// does its job, and says what it is waiting for.
type temporalDown struct{}

func (temporalDown) Error() string {
	return "temporal is not reachable: callbacks are stored and signalled once it answers"
}

// receiverReadiness is the stand-alone receiver's: ready while PostgreSQL
// answers (a callback is answered once stored), Temporal reported beside
// it. The Temporal check is short: a probe that times out would call not
// ready what only lacks Temporal.
func receiverReadiness(store *db.Store, tc client.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := store.Pool.Ping(ctx); err != nil {
			slog.Default().Warn("not ready: postgres", "error", err)
			return errors.New("postgres is not reachable")
		}
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := tc.CheckHealth(tctx, &client.CheckHealthRequest{}); err != nil {
			slog.Default().Warn("temporal is not reachable; callbacks are stored meanwhile", "error", err)
			return temporalDown{}
		}
		return nil
	}
}

// connected opens the store and dials Temporal, runs fn with them, and
// closes both when it returns.
func connected(
	ctx context.Context,
	cfg *config.Config,
	m *metrics.Metrics,
	logger *slog.Logger,
	fn func(*db.Store, client.Client) error,
) error {
	store, err := setup.Store(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	tc, err := setup.Temporal(ctx, cfg, m, logger)
	if err != nil {
		return err
	}
	defer tc.Close()
	return fn(store, tc)
}

// runReceiver serves the tenants' callback endpoints, and its own admin
// endpoints when it runs as its own process (embedded in the worker, the
// worker's serve).
func runReceiver(
	ctx context.Context,
	cfg *config.Config,
	store *db.Store,
	tc client.Client,
	m *metrics.Metrics,
	logger *slog.Logger,
	admin bool,
) error {
	mux := http.NewServeMux()
	rcv, err := NewReceiver(cfg, store, tc, m, logger)
	if err != nil {
		return err
	}
	tlsCfg, err := receiverTLS(cfg)
	if err != nil {
		return err
	}
	if err := rcv.Mount(mux); err != nil {
		return err
	}
	srv := &http.Server{Addr: cfg.Callbacks.Listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, TLSConfig: tlsCfg}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(gctx, srv, logger, "callback receiver") })
	// Callbacks stored while Temporal did not answer are signalled once it
	// does.
	g.Go(func() error {
		rcv.Redeliver(gctx, 0)
		return nil
	})
	if admin {
		g.Go(func() error {
			return serve(
				gctx,
				adminServer(cfg.Callbacks.AdminListen, m, receiverReadiness(store, tc)),
				logger,
				"callback receiver admin endpoints",
			)
		})
	}
	return g.Wait()
}
