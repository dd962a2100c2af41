package app

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/iot-ops/tsbulk/callbacks"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/connect"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
)

// NewReceiver builds the callback receiver.
func NewReceiver(
	cfg *config.Config,
	store *db.Store,
	tc client.Client,
	m *metrics.Metrics,
	logger *slog.Logger,
) *callbacks.Receiver {
	return &callbacks.Receiver{
		Store: store, Temporal: tc, Username: cfg.Callbacks.Username, Password: cfg.Callbacks.Password.Reveal(),
		MaxBodyBytes: cfg.Callbacks.MaxBodyBytes, Metrics: m, Logger: logger,
	}
}

// RunReceiver runs the callback receiver process until ctx ends.
func RunReceiver(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	m := metrics.New()
	return connected(ctx, cfg, m, logger, func(store *db.Store, tc client.Client) error {
		return runReceiver(ctx, cfg, store, tc, m, logger, true)
	})
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
	store, err := connect.Store(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	tc, err := connect.Temporal(ctx, cfg, m, logger)
	if err != nil {
		return err
	}
	defer tc.Close()
	return fn(store, tc)
}

// runReceiver serves the callback endpoint, and its own admin endpoints when
// it runs as its own process (embedded in the worker, the worker's serve).
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
	rcv := NewReceiver(cfg, store, tc, m, logger)
	mux.Handle(cfg.Callbacks.Path, rcv.Handler())
	srv := &http.Server{Addr: cfg.Callbacks.Listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
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
				adminServer(cfg.Callbacks.AdminListen, m, readiness(store, tc)),
				logger,
				"callback receiver admin endpoints",
			)
		})
	}
	return g.Wait()
}
