package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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

	creds := stack.Credentials{
		TSClientID: tsClientID, TSClientSecret: h.sec.tsClientSecret, TSUsername: tsUser, TSPassword: h.sec.tsPassword,
		Account: account, CallbackUsername: cbUser, CallbackPassword: h.sec.callbackPassword,
		RevioLogin: revioLogin, RevioClientCode: revioClient, RevioPassword: h.sec.revioPassword, RevioKey: h.sec.revioKey,
	}
	h.procs, err = stack.StartProcesses(ctx, stack.ProcessOptions{
		BinDir: h.o.BinDir, LogDir: h.dir, Credentials: creds, Workers: len(h.workers),
		ThingSpaceArgs: []string{"--completion-delay", "500ms", "--completion-jitter", "2s",
			"--callback-retry-interval", "1s", "--callback-max-attempts", "5", "--callback-timeout", "5s",
			"--callback-concurrency", "16", "--random-seed", strconv.FormatInt(h.o.Seed+1, 10), "--log-level", "warn"},
		RevioArgs:     []string{"--seed", strconv.FormatInt(h.o.Seed+2, 10)},
		Settings:      h.productSettings(),
		BeforeProduct: func(ctx context.Context, p *stack.Processes) error { return h.prepareSimulators(ctx, p, w) },
	})
	if err != nil {
		return err
	}
	h.ts, h.rv, h.receiver, h.cbAddr = h.procs.ThingSpace, h.procs.Revio, h.procs.Receiver, h.procs.CallbackAddr
	copy(h.workers[:], h.procs.Workers)
	// The stack ran `worker migrate` before the workers started; the run's own
	// connection reads progress and the final state.
	if h.pool, err = pgxpool.New(ctx, h.pg.URL("tsbulk")); err != nil {
		return err
	}
	h.log("simulators, callback receiver and %d workers running", len(h.workers))
	return nil
}

// prepareSimulators seeds the workload's devices and sets the faults that
// last the whole run, before the product starts.
func (h *harness) prepareSimulators(ctx context.Context, p *stack.Processes, w Workload) error {
	hc := &http.Client{Timeout: 2 * time.Minute}
	h.tsAdmin = admin{base: p.ThingSpaceURL, hc: hc}
	h.rvAdmin = admin{base: p.RevioURL, hc: hc}
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
	return h.faults.apply(ctx)
}

func (h *harness) logPath(name string) string { return h.procs.LogPath(name) }

// productSettings are the worker's, the receiver's and the starter's
// settings beyond the simulators' (which the stack sets): the product's,
// with the timings shortened as the integration tests do (callbacks
// awaited seconds, not 30 minutes).
func (h *harness) productSettings() map[string]string {
	sh := h.shards
	return map[string]string{
		"temporal.address": h.temporal.Address(), "temporal.namespace": "default",
		"database.url": h.pg.URL("tsbulk"), "database.max_conns": "10",
		"thingspace.http_timeout": productHTTPTimeout.String(), "thingspace.max_retries": "2",
		"callbacks.admin_listen": "127.0.0.1:0",
		// Rev.io's limit per account, as the product documents the setting;
		// it paces each worker on its own, so the two workers offer twice
		// that (finding 4 of docs/reliability.md). Kept so the run shows it.
		"revio.calls_per_minute": "500",
		// Shards on, small (shardSettingsFor): the bulk change runs as a
		// tree of several shards, each continuing as new several times.
		"bulk.shard_size": strconv.Itoa(sh.Size), "bulk.shards_at_once": strconv.Itoa(sh.AtOnce),
		"bulk.batch_size": "50", "bulk.window": "500", "bulk.starts_per_run": strconv.Itoa(sh.StartsPerRun),
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
	}
}

// submit submits the file with the starter, as an operator would.
func (h *harness) submit(ctx context.Context, file string) (string, error) {
	var out strings.Builder
	if err := h.procs.Run(ctx, "starter", &out, "starter",
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
