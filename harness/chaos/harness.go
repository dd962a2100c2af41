// Package chaos runs the whole product, every piece a real process, on a
// mixed bulk change while it kills and restarts those processes and makes
// ThingSpace and Rev.io misbehave on a schedule drawn from one seed; then
// it checks the invariants from what the simulators saw and what
// PostgreSQL holds. harness/cmd/chaos is its command (make chaos), and
// TestChaosShort runs a short version in make test.
//
// The run has its own PostgreSQL cluster (initdb in a temporary directory,
// as the postgres user), so that restarting it disturbs nothing else on the
// machine, and its own Temporal server (the dev server with a SQLite file,
// or the PostgreSQL-backed server of scripts/temporal-postgres.sh).
//
// Where things are: harness.go is a run from start to end; start.go starts
// the processes and configures the product; drive.go follows the bulk
// change and injects the schedule's faults (schedule.go, sims.go);
// check.go and invariants.go check the end state; report.go prints it.
package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
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
	// Stall and SendStall are the longest gaps without progress, and
	// without a batch sent (stalls.go); Submitted is when the starter
	// returned, the origin of the report's times.
	Stall, SendStall Stall
	Submitted        time.Time
	// Shards is the bulk change's tree: shards, their runs, and the worker
	// kills that met a shard continuing as new.
	Shards ShardStats
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
	// TSGatewayAfterApply: state changes ThingSpace applied and answered
	// 502/504 (counted in TS5xx too).
	TSGatewayAfterApply int
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
	ts, rv   *stack.Proc
	tsAdmin  admin
	rvAdmin  admin
	procs    *stack.Processes
	receiver *stack.Proc
	cbAddr   string
	workers  [2]*stack.Proc
	faults   *faultControl
	pool     *pgxpool.Pool
	bulkID   string
	injected map[Kind]int
	fired    []Fired
	mu       sync.Mutex
	// shards are the product's shard settings; armed counts the fates of
	// the kills armed for a shard's continue-as-new (drive's goroutine).
	shards ShardSettings
	armed  armedCounts
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
	h := &harness{o: o, sec: newSecrets(), injected: map[Kind]int{}, start: time.Now(), shards: shardSettingsFor(o.Devices)}
	h.log = func(format string, args ...any) {
		fmt.Fprintf(out, "[%6.1fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
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
	res.Submitted = submitted
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
	if res.Stall, res.SendStall, err = h.stalls(ctx, submitted); err != nil {
		return res, err
	}
	if len(res.Violations) > 0 {
		h.evidence(ctx, res)
	}
	return res, nil
}

// startAll starts PostgreSQL, Temporal, the simulators, the callback
// receiver (registered with ThingSpace) and the two workers.
// teardown stops everything the run started, last started first.
func (h *harness) teardown() {
	if h.pool != nil {
		h.pool.Close()
	}
	if h.procs != nil {
		h.procs.Stop()
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
