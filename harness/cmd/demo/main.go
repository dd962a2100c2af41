// Command demo runs the whole product on this machine (what `make run`
// does): the Temporal dev server with its Web UI, the ThingSpace and Rev.io
// simulators seeded with demo devices, the worker with the callback receiver,
// then submits a demo bulk change that uses every operation, shows its
// progress and results, and leaves everything up to be inspected in the Web
// UI until Ctrl-C.
//
// It expects the binaries in bin/ (make build) and PostgreSQL on
// 127.0.0.1:5432.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/setup"
	"github.com/iot-ops/tsbulk/workflows/api"
	"github.com/jackc/pgx/v5"
)

// Demo-only credentials: the simulators accept them. Real credentials
// never come from here.
var demoCredentials = stack.Credentials{
	TSClientID: "sim-client-id", TSClientSecret: "sim-client-secret", TSUsername: "sim-user", TSPassword: "sim-password",
	Account: "0000123456-00001", CallbackUsername: "demo-listener", CallbackPassword: "demo-listener-password",
	RevioLogin: "INTEGRATIONS", RevioClientCode: "DEMO", RevioPassword: "demo-revio-password", RevioKey: "demo-revio-key",
}

func main() {
	setup.ExitIfVersionRequested("demo")
	bin := flag.String("bin", "bin", "directory of the product's binaries")
	run := flag.String("run-dir", ".run", "directory for the demo's logs and Temporal database")
	admin := flag.String(
		"postgres",
		"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL server URL (the demo creates database tsbulk_demo)",
	)
	noWait := flag.Bool("exit", false, "stop everything after the demo bulk change instead of waiting for Ctrl-C")
	flag.Parse()
	ctx, stop := setup.OnSignal()
	defer stop()
	d := &demo{bin: *bin, dir: *run}
	err := d.run(ctx, *admin, !*noWait)
	d.stopAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo:", err)
		os.Exit(1)
	}
}

type demo struct {
	bin, dir string
	temporal *stack.Proc
	procs    *stack.Processes
}

func (d *demo) run(ctx context.Context, adminURL string, wait bool) error {
	logs := filepath.Join(d.dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	if err := ensureDatabase(ctx, adminURL, "tsbulk_demo"); err != nil {
		return err
	}
	for _, port := range []string{"7233", "8233", "8090", "8091", "9001", "9090"} {
		if inUse("127.0.0.1:" + port) {
			return fmt.Errorf("port %s is already in use (another demo still running?); stop it first", port)
		}
	}
	temporal := os.Getenv("TSBULK_TEMPORAL_CLI")
	if temporal == "" {
		temporal = "temporal"
	}
	step("starting the Temporal dev server (Web UI http://localhost:8233)")
	devArgs := append([]string{"server", "start-dev", "--ip", "127.0.0.1", "--port", "7233", "--ui-port", "8233",
		"--db-filename", filepath.Join(d.dir, "temporal.db"), "--log-level", "error"}, api.DevServerSearchAttributeArgs()...)
	d.temporal = &stack.Proc{Name: "temporal", Path: temporal, Args: devArgs, Env: os.Environ(),
		Log: filepath.Join(logs, "temporal.log")}
	if err := d.temporal.Start(); err != nil {
		return err
	}
	for _, addr := range []string{"127.0.0.1:7233", "127.0.0.1:8233"} {
		if err := stack.WaitTCP(addr, time.Minute); err != nil {
			return fmt.Errorf("the Temporal dev server did not come up (log: %s): %w", d.temporal.Log, err)
		}
	}
	step("starting the simulators (ThingSpace with the demo devices, some callbacks dropped to show the " +
		"polling fallback; Rev.io), the worker with the callback receiver on :9001, and registering the receiver")
	var err error
	d.procs, err = stack.StartProcesses(ctx, stack.ProcessOptions{
		BinDir: d.bin, LogDir: logs, Credentials: demoCredentials,
		ThingSpaceAddr: "127.0.0.1:8090", RevioAddr: "127.0.0.1:8091", CallbackAddr: "127.0.0.1:9001",
		ThingSpaceArgs: []string{"--seed-file", "harness/demo/devices.csv", "--completion-delay", "3s",
			"--completion-jitter", "6s", "--callback-retry-interval", "2s", "--drop-callback-rate", "0.2"},
		// The rest of the settings are the demo's file, as an operator's
		// deployment has its own.
		Env:           append(os.Environ(), "TSBULK_CONFIG=harness/demo/config.yaml"),
		Workers:       1,
		EmbedReceiver: true,
	})
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://127.0.0.1:9090/readyz", time.Minute); err != nil {
		return fmt.Errorf("the worker is not ready (log: %s): %w", d.procs.LogPath("worker"), err)
	}
	step(
		"submitting harness/demo/bulk-change.csv: activate (with PPU and Rev.io billing), suspend, restore, deactivate, inventory",
	)
	key := fmt.Sprintf("demo-%d", time.Now().Unix())
	err = d.procs.Run(ctx, "starter", os.Stdout, "starter", "submit", "--file", "harness/demo/bulk-change.csv",
		"--idempotency-key", key, "--wait")
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return err
	}
	// The demo file has one device ThingSpace does not know: the starter
	// exits 1 because that device failed, which is the expected outcome.
	fmt.Print(`
The demo bulk change has ended. Everything is still running:
  Web UI          http://localhost:8233  (workflows "bulk-change/<id>" and one "bulk-change/<id>/device/<iccid>" per device)
  status          bin/starter status <id>
  results         bin/starter results <id> --csv
  worker metrics  http://127.0.0.1:9090/metrics
  logs            ` + filepath.Join(d.dir, "logs") + `
To follow one device's activation, open its device workflow in the Web UI
(filter: WorkflowId STARTS_WITH "bulk-change/"): its history shows the
callback signal (or the timer that fell back to polling), the recorded
outcome and the Rev.io step. See README.md, "Following one device".
`)
	if !wait {
		return nil
	}
	fmt.Println("Press Ctrl-C to stop.")
	<-ctx.Done()
	fmt.Println("\nstopping...")
	return nil
}

func step(msg string) { fmt.Printf("==> %s\n", msg) }

// stopAll stops what the demo started, Temporal last.
func (d *demo) stopAll() {
	if d.procs != nil {
		d.procs.Stop()
	}
	if d.temporal != nil {
		d.temporal.Stop(10 * time.Second)
	}
}

// ensureDatabase creates the demo database when it does not exist, and
// explains what to do when PostgreSQL cannot be reached.
func ensureDatabase(ctx context.Context, adminURL, name string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return fmt.Errorf("PostgreSQL is not reachable (%v).\n"+
			"The demo keeps its data in PostgreSQL on 127.0.0.1:5432. Start it with:\n"+
			"    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", err)
	}
	defer conn.Close(ctx)
	var exists bool
	err = conn.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists)
	if err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(cctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil &&
			!strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return nil
}

func inUse(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("HTTP %d", resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return last
}
