// Package chaos runs the whole product, every piece a real process, on a
// mixed bulk change while it kills and restarts those processes and makes
// ThingSpace and Rev.io misbehave on a schedule drawn from one seed; then
// it checks the invariants from what the simulators saw and what
// PostgreSQL holds. cmd/chaos is its command (make chaos), and
// TestChaosShort runs a short version in make test.
//
// The run has its own PostgreSQL cluster (initdb in a temporary directory,
// as the postgres user), so that restarting it disturbs nothing else on the
// machine, and its own Temporal server (the dev server with a SQLite file,
// or the PostgreSQL-backed server of scripts/temporal-postgres.sh).
package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/localstack"
	tssim "github.com/iot-ops/tsbulk/thingspace/simulator"
)

// Options configure a run.
type Options struct {
	Devices int
	Seed    int64
	Mix     Mix
	// NoFaults runs the same bulk change without any fault: the baseline
	// of the wall-time target.
	NoFaults bool
	// Temporal is "dev" (the CLI's dev server) or "postgres"
	// (scripts/temporal-postgres.sh on the run's PostgreSQL cluster).
	Temporal string
	BinDir   string // the product's binaries (make build)
	Repo     string // the repository root (scripts/)
	// Timeout bounds the wait for the bulk change to finish; past it the
	// run checks what it has and reports every device change not final.
	Timeout time.Duration
	// Keep keeps the run's directory (logs, databases) even when the run
	// passes; a run with violations always keeps it.
	Keep bool
	Out  io.Writer // progress lines; nil discards them
}

// Result is what a run found.
type Result struct {
	Options    Options
	Schedule   Schedule
	Injected   map[Kind]int // faults actually injected
	Wall       time.Duration
	Finished   bool // the bulk change ended before the timeout
	BulkID     string
	Observed   Observed
	Violations []Violation
	Workflows  int // workflow runs whose history was scanned
	Dir        string
	Counts     map[Category]int
	Temporal   string
}

// Observed are the faults as the simulators and the database saw them.
type Observed struct {
	TSRequests, TS5xx, TS429, TSLostAnswers, TSLogins, TSTokens int
	CallbacksDropped, CallbacksDuplicated, CallbacksLate        int
	CallbackAttemptsFailed                                      int
	RevioCalls, Revio5xx, Revio429, RevioStalledCreates         int
	RevioFound, Reconciled, ConfirmedByPoll, DeviceChanges      int
	// UnexpectedExits counts, per process, the exits the run did not cause
	// (each was restarted).
	UnexpectedExits map[string]int
}

// Secrets of the run: random, so that finding one anywhere is proof.
type secrets struct {
	tsClientSecret, tsPassword, callbackPassword, revioPassword, revioKey string
}

func newSecrets() secrets {
	r := func(prefix string) string {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		return prefix + hex.EncodeToString(b)
	}
	return secrets{r("tscs-"), r("tspw-"), r("cbpw-"), r("rvpw-"), r("rvkey-")}
}

func (s secrets) needles() []Needle {
	return []Needle{{"the ThingSpace client secret", s.tsClientSecret}, {"the ThingSpace password", s.tsPassword},
		{"the callback password", s.callbackPassword}, {"the Rev.io password", s.revioPassword},
		{"the Rev.io subscription key", s.revioKey}}
}

const (
	account     = tssim.DefaultAccount
	tsClientID  = "chaos-client"
	tsUser      = "chaos-user"
	cbUser      = "ts-callback"
	revioLogin  = "INTEGRATIONS"
	revioClient = "CHAOSCO"
	cbPath      = "/thingspace/callbacks"
	// productHTTPTimeout is the product's ThingSpace timeout; a lost answer
	// is held longer than it.
	productHTTPTimeout = 3 * time.Second
)

type harness struct {
	o        Options
	dir      string
	log      func(format string, args ...any)
	start    time.Time
	sec      secrets
	pg       *Postgres
	temporal Temporal
	ts, rv   *Proc
	tsAdmin  admin
	rvAdmin  admin
	receiver *Proc
	cbAddr   string
	workers  [2]*Proc
	faults   *faultControl
	pool     *pgxpool.Pool
	bulkID   string
	injected map[Kind]int
	mu       sync.Mutex
}

// Run runs the product on a mixed bulk change of o.Devices devices with the
// faults of o.Mix, drawn from o.Seed, and checks the invariants.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if o.Devices < 1 {
		return nil, errors.New("devices must be at least 1")
	}
	if o.Temporal == "" {
		o.Temporal = "dev"
	}
	if o.Temporal != "dev" && o.Temporal != "postgres" {
		return nil, fmt.Errorf("temporal must be dev or postgres, not %q", o.Temporal)
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Minute
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	h := &harness{o: o, sec: newSecrets(), injected: map[Kind]int{}, start: time.Now()}
	h.log = func(format string, args ...any) {
		fmt.Fprintf(out, "[%6.1fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
	}
	for _, b := range []string{"worker", "starter", "callback-receiver", "thingspace-simulator", "revio-simulator"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return nil, fmt.Errorf("the product's binaries are needed in %s (make build): %w", o.BinDir, err)
		}
	}
	if h.dir, err = os.MkdirTemp("", "tsbulk-chaos-"); err != nil {
		return nil, err
	}
	w := NewWorkload(o.Devices, o.Seed)
	sched := Schedule{Seed: o.Seed}
	if !o.NoFaults {
		sched = NewSchedule(o.Seed, o.Mix)
	}
	res = &Result{Options: o, Schedule: sched, Injected: h.injected, Dir: h.dir, Counts: w.Count()}
	defer func() {
		h.teardown()
		if err == nil && len(res.Violations) == 0 && !o.Keep {
			_ = os.RemoveAll(h.dir)
			res.Dir = ""
		}
	}()
	// The run's own account of what it did, beside the processes' logs.
	if f, err := os.Create(filepath.Join(h.dir, "chaos.log")); err == nil {
		defer f.Close()
		out = io.MultiWriter(out, f)
	}
	h.log("run directory %s", h.dir)
	if err := h.startAll(ctx, w); err != nil {
		return res, err
	}
	res.Temporal = h.temporal.Describe()
	file := filepath.Join(h.dir, "bulk-change.csv")
	if err := w.WriteCSV(file); err != nil {
		return res, err
	}

	h.log("submitting %d devices (bin/starter submit)", len(w.Devices))
	submitted := time.Now()
	if h.bulkID, err = h.submit(ctx, file); err != nil {
		return res, err
	}
	res.BulkID = h.bulkID
	h.log("bulk change %s submitted", h.bulkID)
	res.Finished, err = h.drive(ctx, sched)
	res.Wall = time.Since(submitted)
	if err != nil {
		return res, err
	}
	h.log("bulk change ended after %s; checking", res.Wall.Round(time.Second))
	if err := h.faults.clear(ctx); err != nil {
		return res, err
	}
	if err := h.check(ctx, w, res); err != nil {
		return res, err
	}
	if len(res.Violations) > 0 {
		h.evidence(ctx, res)
	}
	return res, nil
}

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
		cli, err := localstack.TemporalCLI()
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
		h.faults.base = tsFaults{DropCallbackRate: 0.08, DuplicateCallbackRate: 0.1, LateCallbackRate: 0.1,
			LateCallbackDelay: "6s", ReorderCallbacks: true}
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
		"revio.calls_per_minute": "500",
		"bulk.batch_size":        "50", "bulk.window": "500", "bulk.starts_per_run": "250",
		"bulk.callback_timeout": "8s", "bulk.confirm_deadline": "20m", "bulk.poll_interval": "1s", "bulk.poll_max_interval": "4s",
		"bulk.default_site": "CHAOS-SITE", "bulk.default_site_assignment": "true", "bulk.stall_check": "15s",
		"limits.requests_per_hour": "0", "limits.requests_window": "1h", "limits.activates_per_minute": "100",
		"limits.actions_per_line_per_day": "5",
		"worker.listen":                   "127.0.0.1:0", "worker.max_concurrent_activities": "100", "worker.reconcile_settle": "3s",
		"worker.deadlock_detection_timeout": "10s", "worker.workflow_task_pollers": "8", "worker.activity_task_pollers": "8",
		"log.level": "info", "log.format": "text",
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

// progress reads where the bulk change stands from PostgreSQL.
func (h *harness) progress(ctx context.Context) (Progress, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var p Progress
	var status string
	err := h.pool.QueryRow(ctx, `
		SELECT b.status,
			(SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id),
			(SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status <> 'PENDING'),
			(SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status IN ('PROCESSED', 'ERROR'))
		FROM bulk_changes b WHERE b.id = $1`, h.bulkID).Scan(&status, &p.Total, &p.Submitted, &p.Final)
	return p, status, err
}

// drive follows the bulk change to its end, injecting the schedule's
// faults as its progress reaches them and restarting any process that
// ended without being killed (a supervisor's job). It reports whether the
// bulk change ended before the timeout.
func (h *harness) drive(ctx context.Context, sched Schedule) (bool, error) {
	deadline := time.Now().Add(h.o.Timeout)
	next := 0
	var last Progress
	lastLog := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		p, status, err := h.progress(ctx)
		if err == nil {
			last = p
			if status == "FINISHED" || status == "FAILED" {
				h.log("bulk change %s: %d/%d final", status, p.Final, p.Total)
				return true, nil
			}
		}
		for next < len(sched.Events) && sched.Events[next].At <= last.Fraction() {
			e := sched.Events[next]
			next++
			if err := h.inject(ctx, e); err != nil {
				return false, fmt.Errorf("inject %s: %w", e.Kind, err)
			}
		}
		if err := h.supervise(ctx); err != nil {
			return false, err
		}
		if time.Since(lastLog) > 15*time.Second {
			h.log("progress %.0f%%: %d submitted, %d final of %d", last.Fraction()*100, last.Submitted, last.Final, last.Total)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			h.log("gave up waiting after %s: %d/%d final", h.o.Timeout, last.Final, last.Total)
			return false, nil
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// supervise restarts a product process that ended on its own; the
// simulators hold their state in memory and cannot be restarted.
func (h *harness) supervise(ctx context.Context) error {
	for _, p := range append([]*Proc{h.receiver}, h.workers[:]...) {
		if !p.Running() {
			h.log("%s ended on its own (see %s); restarting it", p.Name, p.Log)
			if err := p.Start(); err != nil {
				return err
			}
		}
	}
	for _, p := range []*Proc{h.ts, h.rv} {
		if !p.Running() {
			return fmt.Errorf("%s ended on its own (see %s)", p.Name, p.Log)
		}
	}
	if d, ok := h.temporal.(*devServer); ok && !d.proc.Running() {
		h.log("the Temporal dev server ended on its own (see %s); restarting it", d.proc.Log)
		return d.start(ctx)
	}
	return nil
}

func (h *harness) inject(ctx context.Context, e Event) error {
	h.log("fault %s", e)
	h.mu.Lock()
	h.injected[e.Kind]++
	h.mu.Unlock()
	switch e.Kind {
	case KillWorkers:
		for _, w := range h.workers {
			w.Kill()
		}
		sleepCtx(ctx, e.Down)
		for _, w := range h.workers {
			if err := w.Start(); err != nil {
				return err
			}
		}
	case KillOneWorker:
		w := h.workers[e.Worker%len(h.workers)]
		w.Kill()
		sleepCtx(ctx, e.Down)
		return w.Start()
	case KillReceiver:
		h.receiver.Kill()
		sleepCtx(ctx, e.Down)
		if err := h.receiver.Start(); err != nil {
			return err
		}
		return waitTCP(h.cbAddr, time.Minute)
	case RestartTemporal:
		return h.temporal.Restart(ctx, e.Down)
	case RestartPostgres:
		if err := h.pg.Crash(ctx); err != nil {
			return err
		}
		sleepCtx(ctx, e.Down)
		return h.pg.Start(ctx)
	case TS5xx, TSLostAnswers, Revio5xx, Revio429, RevioLateCreates:
		return h.faults.window(ctx, e.Kind, e.Down)
	case TSSessionExpiry:
		return h.tsAdmin.do(ctx, http.MethodPost, "/admin/sessions/expire", nil, nil)
	case TSTokenExpiry:
		return h.tsAdmin.do(ctx, http.MethodPost, "/admin/oauth/expire", nil, nil)
	case TS429Burst:
		return h.tsAdmin.do(ctx, http.MethodPost, "/admin/throttle-burst",
			map[string]any{"requests": e.N, "retry_after": e.Down.String()}, nil)
	default:
		return fmt.Errorf("unknown fault kind %q", e.Kind)
	}
	return nil
}

// teardown stops everything the run started, last started first.
func (h *harness) teardown() {
	if h.pool != nil {
		h.pool.Close()
	}
	for _, p := range []*Proc{h.workers[0], h.workers[1], h.receiver, h.ts, h.rv} {
		if p != nil {
			p.Stop(10 * time.Second)
		}
	}
	if h.temporal != nil {
		h.temporal.Stop()
	}
	if h.pg != nil {
		h.pg.Stop()
	}
}

// temporalClient connects to the run's Temporal server.
func (h *harness) temporalClient(ctx context.Context) (client.Client, error) {
	return client.DialContext(ctx, client.Options{HostPort: h.temporal.Address(), Namespace: "default", Logger: quietLogger{}})
}
