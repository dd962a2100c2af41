// Package app wires the product's processes from their configuration: the
// worker (workflows and activities, optionally with the callback receiver)
// and the callback receiver on its own. The commands in worker/ and
// callback-receiver/ are thin wrappers around it, and the integration
// tests and the benchmark run the same code.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
)

// adminServer serves /healthz (the process runs), /readyz (its
// dependencies answer) and /metrics.
func adminServer(addr string, m *metrics.Metrics, ready func(context.Context) error) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		err := ready(ctx)
		var down temporalDown
		var degraded readyButDegraded
		if errors.As(err, &down) || errors.As(err, &degraded) {
			_, _ = w.Write([]byte("ready; " + err.Error() + "\n"))
			return
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", m.Handler())
	return &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// serve runs srv until ctx ends, then shuts it down gracefully.
func serve(ctx context.Context, srv *http.Server, logger *slog.Logger, what string) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", what, srv.Addr, err)
	}
	logger.Info(what+" listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate is in TLSConfig
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// readyButDegraded is a readiness result that is not "not ready": the
// process does its job, and says which part of it waits (one tenant's
// refused credentials).
type readyButDegraded struct{ msg string }

func (d readyButDegraded) Error() string { return d.msg }

// readiness checks the process's dependencies. /readyz is read by load
// balancers, probes and whoever reaches the admin port: it says which
// dependency is down and nothing more, since a driver's error names hosts,
// ports, users and databases; the detail goes to the process's log. extra
// checks (the worker's ThingSpace credentials) run after PostgreSQL's, and
// their errors are shown as they are; a readyButDegraded one is reported
// once every other check has passed.
func readiness(store *db.Store, tc client.Client, extra ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := store.Pool.Ping(ctx); err != nil {
			slog.Default().Warn("not ready: postgres", "error", err)
			return errors.New("postgres is not reachable")
		}
		var note error
		for _, check := range extra {
			err := check(ctx)
			var degraded readyButDegraded
			switch {
			case errors.As(err, &degraded):
				note = err
			case err != nil:
				return err
			}
		}
		if _, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			slog.Default().Warn("not ready: temporal", "error", err)
			return errors.New("temporal is not reachable")
		}
		return note
	}
}

// ApplyWorkerProcessSettings applies the settings the SDK holds once per
// process, which must be set before any worker is created: the sticky
// workflow cache size (worker.sticky_cache_size; 0 keeps the SDK's default).
func ApplyWorkerProcessSettings(cfg *config.Config) {
	if n := cfg.Worker.StickyCacheSize; n > 0 {
		worker.SetStickyWorkflowCacheSize(n)
	}
}

// CPUProfileEnv names a file the worker process writes its CPU profile to,
// from start to stop (the benchmark sets it to show where a worker's CPU
// goes: go tool pprof -top bin/worker FILE).
const CPUProfileEnv = "TSBULK_CPUPROFILE"

// StartCPUProfile starts the CPU profile named by TSBULK_CPUPROFILE, if
// any; the returned function stops it and writes the file.
func StartCPUProfile(logger *slog.Logger) func() {
	path := os.Getenv(CPUProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		logger.Error("no CPU profile", "file", path, "error", err)
		if f != nil {
			_ = f.Close()
		}
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
