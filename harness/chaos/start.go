package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// startAll starts PostgreSQL, Temporal, the simulators, the callback
// receiver (registered with ThingSpace) and the two workers.
func (h *harness) startAll(ctx context.Context, w Workload) error {
	var err error
	if h.pg, err = StartPostgres(ctx, h.dir); err != nil {
		return err
	}
	h.log("PostgreSQL (private cluster) on 127.0.0.1:%d", h.pg.Port)
	// Assigned only on success: a nil *pgServer in the interface would
	// not be nil to teardown.
	if h.o.Temporal == "postgres" {
		s, err := startPGServer(ctx, h.o.Repo, h.dir, h.pg)
		if err != nil {
			return err
		}
		h.temporal = s
	} else {
		cli, err := stack.TemporalCLI()
		if err != nil {
			return err
		}
		d, err := startDevServer(ctx, cli, h.dir)
		if err != nil {
			return err
		}
		h.temporal = d
	}
	h.log("Temporal: %s", h.temporal.Describe())

	tsPort, err := freePort()
	if err != nil {
		return err
	}
	rvPort, err := freePort()
	if err != nil {
		return err
	}
	cbPort, err := freePort()
	if err != nil {
		return err
	}
	h.cbAddr = fmt.Sprintf("127.0.0.1:%d", cbPort)
	h.ts = &Proc{Name: "thingspace-simulator", Path: filepath.Join(h.o.BinDir, "thingspace-simulator"), Log: h.logPath("thingspace-simulator"),
		Env: append(cleanEnv(), "TS_SIM_CLIENT_SECRET="+h.sec.tsClientSecret, "TS_SIM_PASSWORD="+h.sec.tsPassword),
		Args: []string{"--listen", fmt.Sprintf("127.0.0.1:%d", tsPort), "--client-id", tsClientID, "--username", tsUser,
			"--account", account, "--completion-delay", "500ms", "--completion-jitter", "2s",
			"--callback-retry-interval", "1s", "--callback-max-attempts", "5", "--callback-timeout", "5s",
			"--callback-concurrency", "16", "--random-seed", strconv.FormatInt(h.o.Seed+1, 10), "--log-level", "warn"}}
	h.rv = &Proc{Name: "revio-simulator", Path: filepath.Join(h.o.BinDir, "revio-simulator"), Log: h.logPath("revio-simulator"),
		Env: append(cleanEnv(), "REVIO_SIM_PASSWORD="+h.sec.revioPassword, "REVIO_SIM_SUBSCRIPTION_KEY="+h.sec.revioKey),
		Args: []string{"--listen", fmt.Sprintf("127.0.0.1:%d", rvPort), "--login", revioLogin, "--client-code", revioClient,
			"--seed", strconv.FormatInt(h.o.Seed+2, 10)}}
	for _, p := range []*Proc{h.ts, h.rv} {
		if err := p.Start(); err != nil {
			return err
		}
	}
	hc := &http.Client{Timeout: 2 * time.Minute}
	h.tsAdmin = admin{base: fmt.Sprintf("http://127.0.0.1:%d", tsPort), hc: hc}
	h.rvAdmin = admin{base: fmt.Sprintf("http://127.0.0.1:%d", rvPort), hc: hc}
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", tsPort), fmt.Sprintf("127.0.0.1:%d", rvPort)} {
		if err := waitTCP(addr, time.Minute); err != nil {
			return err
		}
	}
	if err := h.tsAdmin.do(ctx, http.MethodPost, "/admin/devices", w.Seeds, nil); err != nil {
		return fmt.Errorf("seed the ThingSpace simulator: %w", err)
	}
	h.faults = &faultControl{ts: h.tsAdmin, revio: h.rvAdmin, stallFor: productHTTPTimeout + 2*time.Second}
	if !h.o.NoFaults {
		// Callback faults all along, as ThingSpace's delivery is
		// unreliable all along: dropped, duplicated, late, reordered.
		h.faults.base = tssim.Faults{
			DropCallbackRate:      0.08,
			DuplicateCallbackRate: 0.1,
			LateCallbackRate:      0.1,
			LateCallbackDelay:     6 * time.Second,
			ReorderCallbacks:      true,
		}
	}
	if err := h.faults.apply(ctx); err != nil {
		return err
	}

	env := h.productEnv(tsPort, rvPort)
	h.receiver = &Proc{Name: "callback-receiver", Path: filepath.Join(h.o.BinDir, "callback-receiver"), Log: h.logPath("callback-receiver"), Env: env}
	if err := h.receiver.Start(); err != nil {
		return err
	}
	if err := waitTCP(h.cbAddr, time.Minute); err != nil {
		return err
	}
	if err := h.runOnce(ctx, "register", filepath.Join(h.o.BinDir, "callback-receiver"), env, nil, "register"); err != nil {
		return err
	}
	for i := range h.workers {
		h.workers[i] = &Proc{Name: fmt.Sprintf("worker-%d", i+1), Path: filepath.Join(h.o.BinDir, "worker"),
			Log: h.logPath(fmt.Sprintf("worker-%d", i+1)), Env: env}
		if err := h.workers[i].Start(); err != nil {
			return err
		}
	}
	// The workers apply the migrations when they start; the run's own
	// connection reads progress and the final state.
	if h.pool, err = pgxpool.New(ctx, h.pg.URL("tsbulk")); err != nil {
		return err
	}
	h.log("simulators, callback receiver and 2 workers running")
	return nil
}

func (h *harness) logPath(name string) string { return filepath.Join(h.dir, name+".log") }

// cleanEnv is the environment without the product's settings, so that the
// caller's TSBULK_* variables cannot change the run.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix+"_") {
			out = append(out, kv)
		}
	}
	return out
}

// productEnv is the configuration of the worker, the receiver and the
// starter: the product's settings, with the timings shortened as the
// integration tests do (callbacks awaited seconds, not 30 minutes).
func (h *harness) productEnv(tsPort, rvPort int) []string {
	kv := map[string]string{
		"temporal.address": h.temporal.Address(), "temporal.namespace": "default",
		"database.url": h.pg.URL("tsbulk"), "database.max_conns": "10",
		"thingspace.base_url": fmt.Sprintf("http://127.0.0.1:%d", tsPort), "thingspace.client_id": tsClientID,
		"thingspace.client_secret": h.sec.tsClientSecret, "thingspace.username": tsUser, "thingspace.password": h.sec.tsPassword,
		"thingspace.account": account, "thingspace.http_timeout": productHTTPTimeout.String(), "thingspace.max_retries": "2",
		"callbacks.enabled": "true", "callbacks.listen": h.cbAddr, "callbacks.path": cbPath, "callbacks.admin_listen": "127.0.0.1:0",
		"callbacks.public_url": "http://" + h.cbAddr + cbPath, "callbacks.username": cbUser, "callbacks.password": h.sec.callbackPassword,
		"revio.enabled": "true", "revio.base_url": fmt.Sprintf("http://127.0.0.1:%d", rvPort), "revio.login": revioLogin,
		"revio.client_code": revioClient, "revio.password": h.sec.revioPassword, "revio.subscription_key": h.sec.revioKey,
		// Rev.io's limit per account, as the product documents the setting;
		// it paces each worker on its own, so the two workers offer twice
		// that (finding 4 of docs/reliability.md). Kept so the run shows it.
		"revio.calls_per_minute": "500",
		"bulk.batch_size":        "50", "bulk.window": "500", "bulk.starts_per_run": "250",
		"bulk.callback_timeout": "8s", "bulk.confirm_deadline": "20m", "bulk.poll_interval": "1s", "bulk.poll_max_interval": "4s",
		"bulk.default_site": "CHAOS-SITE", "bulk.default_site_assignment": "true", "bulk.stall_check": "15s",
		"limits.requests_per_hour": "0", "limits.requests_window": "1h", "limits.activates_per_minute": "100",
		"limits.actions_per_line_per_day": "5",
		"worker.listen":                   "127.0.0.1:0", "worker.max_concurrent_activities": "100", "worker.reconcile_settle": "3s",
		"worker.deadlock_detection_timeout": "10s", "worker.workflow_task_pollers": "8", "worker.activity_task_pollers": "8",
		"log.level": "info", "log.format": "text",
		// The file has deactivations: without this the bulk change would wait
		// for a second operator's approval (the default) and never start.
		"approval.operations": "none",
		// The simulators answer plain http, allowed only in dev mode.
		"dev": "true",
	}
	env := cleanEnv()
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, config.EnvName(k)+"="+kv[k])
	}
	return env
}

// runOnce runs a one-shot command of the product, its output in the
// run's logs (they are scanned for secrets too).
func (h *harness) runOnce(ctx context.Context, name, path string, env []string, stdout io.Writer, args ...string) error {
	f, err := os.OpenFile(h.logPath(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Stderr = f
	cmd.Stdout = f
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(f, stdout)
	}
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(h.logPath(name))
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(path), strings.Join(args, " "), err, data)
	}
	return nil
}

// submit submits the file with the starter, as an operator would.
func (h *harness) submit(ctx context.Context, file string) (string, error) {
	var out strings.Builder
	env := h.workers[0].Env
	if err := h.runOnce(ctx, "starter", filepath.Join(h.o.BinDir, "starter"), env, &out,
		"submit", "--file", file, "--json", "--idempotency-key", "chaos-"+strconv.FormatInt(h.o.Seed, 10)); err != nil {
		return "", err
	}
	var r struct {
		ID string `json:"bulkChangeId"`
	}
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil || r.ID == "" {
		return "", fmt.Errorf("starter submit answered %q: %v", out.String(), err)
	}
	return r.ID, nil
}
