package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/workflows/api"
	"go.temporal.io/sdk/client"
)

// Temporal is the run's Temporal server.
type Temporal interface {
	Address() string
	// Restart stops the server, leaves it down for down, and starts it
	// again on the same address with the same state.
	Restart(ctx context.Context, down time.Duration) error
	Stop()
	Describe() string
}

// devServer is `temporal server start-dev` with its state in a SQLite file,
// so that it keeps every workflow across its restart, on fixed ports.
type devServer struct {
	proc *stack.Proc
	addr string
}

func startDevServer(ctx context.Context, cli, dir string) (*devServer, error) {
	port, err := stack.FreePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := stack.FreePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := stack.FreePort()
	if err != nil {
		return nil, err
	}
	d := &devServer{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	d.proc = &stack.Proc{Name: "temporal-dev-server", Path: cli, Log: filepath.Join(dir, "temporal.log"), Env: os.Environ(),
		Args: []string{"server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", strconv.Itoa(port),
			"--http-port", strconv.Itoa(httpPort), "--metrics-port", strconv.Itoa(metricsPort),
			"--db-filename", filepath.Join(dir, "temporal.db"), "--log-level", "warn",
			"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true"}}
	// The product's search attributes, which its workflows set.
	d.proc.Args = append(d.proc.Args, api.DevServerSearchAttributeArgs()...)
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// devServerStarts is how many times start tries before it gives up.
const devServerStarts = 3

// start starts the dev server and waits until it serves. The CLI picks the
// ports of its internal services afresh at every start, and on a busy
// machine one of them may be taken by then (seen: "bind: address already
// in use" for the history service, then a panic): a server that exits
// before serving is started again, with other ports.
func (d *devServer) start(ctx context.Context) error {
	var err error
	for range devServerStarts {
		if err = d.proc.Start(); err != nil {
			return err
		}
		if err = waitTemporal(ctx, d.addr, 2*time.Minute, d.proc.Running); err == nil || d.proc.Running() {
			return err
		}
	}
	return fmt.Errorf("the Temporal dev server exited at each of %d starts (see %s): %w", devServerStarts, d.proc.Log, err)
}

func (d *devServer) Address() string { return d.addr }

func (d *devServer) Describe() string { return "dev server (SQLite file), " + d.addr }

// Restart stops the dev server as an orchestrator would (SIGTERM, so that
// SQLite is closed cleanly; SIGKILL after 20 s) and starts it again.
func (d *devServer) Restart(ctx context.Context, down time.Duration) error {
	d.proc.Stop(20 * time.Second)
	sleepCtx(ctx, down)
	return d.start(ctx)
}

func (d *devServer) Stop() { d.proc.Stop(20 * time.Second) }

// pgServer is the Temporal server on PostgreSQL that production runs,
// managed by scripts/temporal-postgres.sh, on the run's own PostgreSQL
// cluster with its own database prefix and ports.
type pgServer struct {
	script string
	env    []string
	addr   string
	log    string
}

func startPGServer(ctx context.Context, repo, dir string, pg *Postgres) (*pgServer, error) {
	script := filepath.Join(repo, "scripts", "temporal-postgres.sh")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("-temporal postgres needs %s: %w", script, err)
	}
	base, err := stack.FreePortBase()
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "temporal-pg")
	s := &pgServer{script: script, addr: fmt.Sprintf("127.0.0.1:%d", base), log: filepath.Join(state, "temporal.log"),
		env: append(os.Environ(), "TEMPORAL_PG_PORT="+strconv.Itoa(base), "TEMPORAL_PG_DB_PREFIX=chaos_temporal",
			"TEMPORAL_PG_STATE_DIR="+state, "TEMPORAL_PG_HOST=127.0.0.1", "TEMPORAL_PG_DB_PORT="+strconv.Itoa(pg.Port),
			"TEMPORAL_PG_LOG_LEVEL=warn")}
	for _, step := range []string{"install", "setup", "start"} {
		if _, err := s.run(ctx, step); err != nil {
			return nil, err
		}
	}
	if err := waitTemporal(ctx, s.addr, 2*time.Minute, nil); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *pgServer) run(ctx context.Context, step string) (string, error) {
	cmd := exec.CommandContext(ctx, s.script, step)
	cmd.Env = s.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/temporal-postgres.sh %s: %w\n%s", step, err, stderr.String())
	}
	return string(out), nil
}

func (s *pgServer) Address() string { return s.addr }

func (s *pgServer) Describe() string { return "Temporal server v1.29.1 on PostgreSQL, " + s.addr }

func (s *pgServer) Restart(ctx context.Context, down time.Duration) error {
	if _, err := s.run(ctx, "stop"); err != nil {
		return err
	}
	sleepCtx(ctx, down)
	if _, err := s.run(ctx, "start"); err != nil {
		return err
	}
	return waitTemporal(ctx, s.addr, 2*time.Minute, nil)
}

func (s *pgServer) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = s.run(ctx, "stop")
}

// waitTemporal waits until the frontend serves namespace default. alive,
// when not nil, says whether the server's process still runs: waiting for
// one that has exited would only run into the timeout.
func waitTemporal(ctx context.Context, addr string, timeout time.Duration, alive func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		if alive != nil && !alive() {
			return fmt.Errorf("the Temporal server for %s exited before serving: %v", addr, last)
		}
		c, err := client.DialContext(ctx, client.Options{HostPort: addr, Namespace: "default", Logger: quietLogger{}})
		if err == nil {
			_, err = c.ListWorkflow(ctx, listRequest("", nil))
			c.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		sleepCtx(ctx, 500*time.Millisecond)
	}
	return fmt.Errorf("the Temporal server at %s did not serve namespace default within %s: %v", addr, timeout, last)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
