// Command bench measures a bulk change end to end (make bench): the Temporal
// server (the CLI's dev server, or a running server given by
// -temporal-address), PostgreSQL, the worker as its own processes, and the
// ThingSpace simulator with realistic latencies and a requests-per-hour
// limit.
//
// Absolute figures do not carry from one host to another, so in the same
// run and against the same server it also measures what the figures are
// compared with:
//
//   - the floor (-floor, on by default): the least the design's shape costs,
//     a parent starting one child per device with the same window and
//     continue-as-new cadence, each child receiving one signal and reporting
//     by signal, no activities (package floor), on worker processes set up
//     like the product's;
//   - the baseline: what the predecessor did, one request per device, one
//     device after another, on a second account of the same simulator with
//     the same limit.
//
// It prints one table, with the ratios that carry between hosts.
//
//	bench [-devices 10000] [-limit 20000] [-floor] [-workers 1] [-temporal-address HOST:PORT] ...
//	bench floor-worker      (the floor's worker process; started by bench itself)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	historypb "go.temporal.io/api/history/v1"

	"github.com/iot-ops/tsbulk/app"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/localstack"
	"github.com/iot-ops/tsbulk/submission"
	tssim "github.com/iot-ops/tsbulk/thingspace/simulator"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	productAccount  = "0000123456-00001"
	baselineAccount = "0000123456-00002"
)

type options struct {
	devices         int
	limit           int
	latency         time.Duration
	jitter          time.Duration
	completion      time.Duration
	completionJit   time.Duration
	mix             map[string]int
	baseline        string
	baselineSample  int
	bin             string
	adminDB         string
	batch           int
	window          int
	floor           bool
	floorOrder      string
	floorPageWait   bool
	floorCompare    bool
	floorDelay      time.Duration
	floorJitter     time.Duration
	product         bool
	temporalAddress string
	workers         int
	cache           int
	cpuProfileDir   string
	breakdown       bool
	childSample     int
	source          string
	verifyEvents    bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == floorWorkerArg {
		os.Exit(runFloorWorker())
	}
	var o options
	var mix string
	flag.IntVar(&o.devices, "devices", 10000, "devices in the bulk change")
	flag.IntVar(&o.limit, "limit", 20000, "ThingSpace requests per hour per account (both the product and the baseline)")
	flag.DurationVar(&o.latency, "latency", 150*time.Millisecond, "ThingSpace answer latency")
	flag.DurationVar(&o.jitter, "latency-jitter", 100*time.Millisecond, "random extra answer latency")
	flag.DurationVar(&o.completion, "callback-delay", 2*time.Second, "time from an accepted request to the device's callback")
	flag.DurationVar(&o.completionJit, "callback-jitter", 4*time.Second, "random extra callback delay")
	flag.StringVar(&mix, "mix", "activate=40,suspend=20,restore=15,deactivate=15,inventory=10", "operations mix, percent")
	flag.StringVar(&o.baseline, "baseline", "auto", "full: the baseline changes every device; sample: the first -baseline-sample devices, extrapolated; off; auto: full up to 10,000 devices")
	flag.IntVar(&o.baselineSample, "baseline-sample", 2000, "devices the sampled baseline changes")
	flag.StringVar(&o.bin, "bin", "bin", "directory of the product's binaries (make build)")
	flag.StringVar(&o.adminDB, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server; the benchmark creates and drops its own database")
	flag.IntVar(&o.batch, "batch-size", 10000, "devices per ThingSpace request (capped at ThingSpace's maximum per operation)")
	flag.IntVar(&o.window, "window", 500, "device workflows in flight per bulk change (the floor's too)")
	flag.BoolVar(&o.floor, "floor", true, "also run the floor in the same run, against the same server: the design's shape without activities (-floor=false: not)")
	flag.StringVar(&o.floorOrder, "floor-order", "before", "run the floor before the product, after it, or around it (before and after: a drift of the host's load shows, and the ratio uses both)")
	flag.BoolVar(&o.floorPageWait, "floor-page-wait", false, "the floor starts children as BulkChange does: 200 at a time, waiting for every start of a page (measures what that costs)")
	flag.BoolVar(&o.floorCompare, "floor-compare", false, "also run, right after the floor, the floor starting children as BulkChange does (-floor-page-wait): what waiting for each page's starts costs, in the same run")
	flag.DurationVar(&o.floorDelay, "floor-signal-delay", 0, "time from a floor child's start to its callback signal (0: at once, as for most product devices, whose callback is stored before their workflow starts)")
	flag.DurationVar(&o.floorJitter, "floor-signal-jitter", 0, "random extra floor signal delay")
	flag.BoolVar(&o.product, "product", true, "run the product (-product=false: the floor only)")
	flag.StringVar(&o.temporalAddress, "temporal-address", "", "a running Temporal server (namespace default), such as the PostgreSQL-backed one of `make temporal-postgres-up` (127.0.0.1:7243); default: a dev server of the benchmark's own")
	flag.IntVar(&o.workers, "workers", 1, "worker processes (the product's, and as many for the floor)")
	flag.IntVar(&o.cache, "cache", 0, "worker.sticky_cache_size of the worker processes (0: the worker's default)")
	flag.StringVar(&o.cpuProfileDir, "cpuprofile", "", "directory where each worker process writes its CPU profile (go tool pprof -top BIN FILE)")
	flag.BoolVar(&o.breakdown, "breakdown", true, "read histories after the run: events per device by type, the parent's workflow tasks and child starts")
	flag.IntVar(&o.childSample, "child-sample", 20, "device workflows per operation whose histories the breakdown reads")
	flag.BoolVar(&o.verifyEvents, "verify-events", false, "check the history events visibility reports against each run's own record (slow: one call per workflow)")
	flag.StringVar(&o.source, "source", "", "the source measured, for the table (default: the working directory's git commit and its changed files)")
	flag.Parse()
	var err error
	if o.mix, err = parseMix(mix); err != nil {
		fail(err)
	}
	if o.baseline == "auto" {
		o.baseline = "full"
		if o.devices > 10000 {
			o.baseline = "sample"
		}
	}
	if o.floorOrder != "before" && o.floorOrder != "after" && o.floorOrder != "around" {
		fail(fmt.Errorf("-floor-order: before, after or around, not %q", o.floorOrder))
	}
	if o.workers < 1 || (!o.product && !o.floor) {
		fail(fmt.Errorf("nothing to run: -workers must be at least 1, and -product or -floor on"))
	}
	if err := run(o); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func parseMix(s string) (map[string]int, error) {
	out := map[string]int{}
	total := 0
	for _, part := range strings.Split(s, ",") {
		op, pct, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(pct)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("-mix: %q is not op=percent", part)
		}
		out[op] = n
		total += n
	}
	if total != 100 {
		return nil, fmt.Errorf("-mix adds up to %d%%, not 100%%", total)
	}
	return out, nil
}

// seedState is the state a device must be in for the operation.
var seedState = map[string]string{"activate": "preactive", "suspend": "active", "restore": "suspend", "deactivate": "active", "inventory": ""}

var opOrder = []string{"activate", "suspend", "restore", "deactivate", "inventory"}

// plan makes the devices of one account: per operation its share, seeded
// in the state the operation needs.
func plan(o options, prefix string, account string) (rows [][2]string, seeds []tssim.DeviceSeed) {
	for i, op := range opOrder {
		n := o.devices * o.mix[op] / 100
		if i == len(opOrder)-1 {
			n = o.devices - len(rows)
		}
		devs := tssim.GenerateDevices(n, fmt.Sprintf("%s%d", prefix, i), seedState[op])
		for _, d := range devs {
			rows = append(rows, [2]string{d.ICCID, op})
			if seedState[op] != "" {
				d.Account = account
				seeds = append(seeds, d)
			}
		}
	}
	return rows, seeds
}

// runResult is everything one invocation measured.
type runResult struct {
	o          options
	server     string
	commit     string
	product    *phaseResult
	out        api.BulkChangeResult
	ts         tssim.Stats
	unfinished int
	// floor is the floor's figures: its one run, or both runs together
	// (-floor-order around), which floors lists apart.
	floor  *phaseResult
	floors []*phaseResult
	// pageWait is the floor starting children as BulkChange does
	// (-floor-compare).
	pageWait *phaseResult
	base     baselineResult
}

// phaseResult is what one side (product or floor) cost.
type phaseResult struct {
	name     string
	label    string // which run of that side, when there are several
	devices  int
	wall     time.Duration
	cost     cost
	usage    usage
	events   historyTotals
	samples  []progressSample
	inFlight float64 // mean in flight
	runs     int
	parent   *parentTiming
	parentBD *breakdown
	childBD  []breakdown
	children *childTiming
	// check: events of the sampled children read from their histories, and
	// as visibility reports them (which historyStats adds up).
	check [2]int64
}

func (p *phaseResult) perSecond() float64 { return float64(p.devices) / p.wall.Seconds() }

func (p *phaseResult) eventsPerDevice() float64 { return float64(p.events.events) / float64(p.devices) }

func (p *phaseResult) workerCPUPerDevice() time.Duration {
	return p.usage.cpu / time.Duration(p.devices)
}

func (p *phaseResult) serverCPUPerDevice() time.Duration {
	return p.cost.server / time.Duration(p.devices)
}

// meanInFlight is the mean of the in-flight samples taken while devices
// were still being started or awaited.
func meanInFlight(devices int, samples []progressSample) float64 {
	n, sum := 0, 0
	for _, s := range samples {
		if s.done < devices {
			n++
			sum += s.inFlight
		}
	}
	return float64(sum) / float64(max(n, 1))
}

// combine adds up runs of one side: throughput is all devices over all
// wall time, costs per device are totals over all devices.
func combine(ps []*phaseResult) *phaseResult {
	if len(ps) == 1 {
		return ps[0]
	}
	c := &phaseResult{name: ps[0].name, label: "all its runs"}
	for _, p := range ps {
		c.inFlight += p.inFlight * p.wall.Seconds()
		c.devices += p.devices
		c.wall += p.wall
		c.runs += p.runs
		c.usage.procs = max(c.usage.procs, p.usage.procs)
		c.usage.maxRSSKB = max(c.usage.maxRSSKB, p.usage.maxRSSKB)
		c.usage.cpu += p.usage.cpu
		c.events.events += p.events.events
		c.events.runs += p.events.runs
		c.events.largest = max(c.events.largest, p.events.largest)
		c.cost.wall += p.cost.wall
		c.cost.server += p.cost.server
		c.cost.self += p.cost.self
		c.cost.pgProduct += p.cost.pgProduct
		c.cost.pgServer += p.cost.pgServer
		c.cost.hostBusy += p.cost.hostBusy * p.cost.wall.Seconds()
	}
	c.cost.hostBusy /= max(c.cost.wall.Seconds(), 1e-9)
	c.inFlight /= max(c.wall.Seconds(), 1e-9)
	c.cost.loadStart, c.cost.loadEnd = ps[0].cost.loadStart, ps[len(ps)-1].cost.loadEnd
	return c
}

func run(o options) error {
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, o.adminDB)
	if err != nil {
		return err
	}
	defer admin.Close()
	dbURL, dbName, drop, err := scratchDatabase(ctx, o.adminDB)
	if err != nil {
		return err
	}
	defer drop()
	r := runResult{o: o, commit: o.source}
	if r.commit == "" {
		r.commit = sourceState()
	}
	r.server = "Temporal CLI dev server (SQLite in memory), started by the benchmark"
	if o.temporalAddress != "" {
		r.server = "Temporal server at " + o.temporalAddress
	}
	fmt.Printf("starting: %s; simulator (answers %s+%s, callbacks %s+%s, limit %d requests/h per account); load %s\n",
		r.server, o.latency, o.jitter, o.completion, o.completionJit, o.limit, loadAvg())
	s, err := localstack.Start(ctx, localstack.Options{
		DatabaseURL:     dbURL,
		TemporalAddress: o.temporalAddress,
		ThingSpace: tssim.Config{
			Accounts:        []string{productAccount, baselineAccount},
			CompletionDelay: o.completion, CompletionJitter: o.completionJit, CallbackRetryInterval: 30 * time.Second,
			CallbackConcurrency: 32,
			Limits:              tssim.Limits{RequestsPerHour: o.limit, ActionsPerLinePerDay: -1},
			Faults:              tssim.Faults{Latency: o.latency, LatencyJitter: o.jitter},
		},
		Config: func(c *config.Config) {
			c.Limits.RequestsPerHour = o.limit
			c.Limits.ActivatesPerMinute = 100
			c.Limits.ActionsPerLinePerDay = 0
			c.Bulk.BatchSize = o.batch
			c.Bulk.Window = o.window
			c.Bulk.CallbackTimeout = 2 * time.Minute
			c.Bulk.ConfirmDeadline = time.Hour
			c.Bulk.PollInterval = 30 * time.Second
			c.Bulk.PollMaxInterval = 2 * time.Minute
			c.Revio.Enabled = false
			c.Worker.MaxConcurrentActivities = 200
			c.Worker.StickyCacheSize = o.cache
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	defer s.Close()

	m := &meter{pgProduct: newPGCPU(admin, dbName)}
	defer m.pgProduct.close()
	if port := portOf(s.Config.Temporal.Address); port > 0 {
		if m.serverPID, err = listenerPID(port); err != nil {
			fmt.Println("  (the Temporal server's CPU is not measured:", err, ")")
		}
	}
	if o.temporalAddress != "" {
		// Its persistence: the databases scripts/temporal-postgres.sh creates.
		m.pgServer = newPGCPU(admin, "temporal", "temporal_visibility")
		defer m.pgServer.close()
	}

	rows, seeds := plan(o, "891480090", productAccount)
	bRows, bSeeds := plan(o, "891480091", baselineAccount)
	if err := s.TS.Seed(append(seeds, bSeeds...)...); err != nil {
		return err
	}
	s.TS.ResetStats()

	// The baseline starts first and runs beside the floor and the product
	// alike (it is one HTTP request at a time: light).
	baseDone := make(chan baselineResult, 1)
	if o.baseline != "off" {
		n := len(bRows)
		if o.baseline == "sample" {
			n = min(n, o.baselineSample)
		}
		go func() { baseDone <- runBaseline(ctx, s, sampleRows(bRows, n), o) }()
	}

	runFloorPhase := func() error {
		if !o.floor {
			return nil
		}
		label := o.floorOrder
		if o.floorOrder == "around" {
			label = "before"
			if len(r.floors) > 0 {
				label = "after"
			}
		}
		p, err := runFloor(ctx, s, o, m, o.floorPageWait, label+" the product")
		if err != nil {
			return err
		}
		r.floors = append(r.floors, p)
		r.floor = combine(r.floors)
		if o.floorCompare && r.pageWait == nil {
			r.pageWait, err = runFloor(ctx, s, o, m, true, "pages of 200 waited for, as BulkChange starts children")
		}
		return err
	}
	if o.floorOrder != "after" {
		if err := runFloorPhase(); err != nil {
			return err
		}
	}
	if o.product {
		if err := runProduct(ctx, s, o, m, rows, &r); err != nil {
			return err
		}
	}
	if o.floorOrder != "before" {
		if err := runFloorPhase(); err != nil {
			return err
		}
	}
	if o.baseline != "off" {
		fmt.Println("waiting for the baseline to finish...")
		r.base = <-baseDone
		if r.base.err != nil {
			return r.base.err
		}
	}
	printTable(r)
	return nil
}

func runProduct(ctx context.Context, s *localstack.Stack, o options, m *meter, rows [][2]string, r *runResult) error {
	file, err := writeFile(rows)
	if err != nil {
		return err
	}
	defer os.Remove(file)
	procs, err := startWorkers("worker", filepath.Join(o.bin, "worker"), nil, s.Env(), o)
	if err != nil {
		return fmt.Errorf("start worker (run `make build` first): %w", err)
	}
	fmt.Printf("product: submitting %d devices (%s) to %d worker process(es); load %s\n", o.devices, mixText(o.mix), o.workers, loadAvg())
	r0 := m.read()
	start := time.Now()
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	res, err := sub.Submit(ctx, submission.Request{File: file, Account: productAccount, BatchSize: o.batch,
		Options: benchOptions(s, o)})
	if err != nil {
		stopWorkers(procs)
		return err
	}
	query := func(ctx context.Context) (progressSample, bool) {
		v, err := s.Client.QueryWorkflow(ctx, res.WorkflowID, "", api.ProgressQuery)
		var p api.Progress
		if err != nil || v.Get(&p) != nil {
			return progressSample{}, false
		}
		return progressSample{done: p.Done(), inFlight: p.InFlight, runs: p.Runs}, true
	}
	sampling := startSampling("product", o.devices, start, query, procs)
	err = s.Client.GetWorkflow(ctx, res.WorkflowID, "").Get(ctx, &r.out)
	wall := time.Since(start)
	r1 := m.read()
	samples := sampling.stop()
	u := stopWorkers(procs)
	if err != nil {
		return fmt.Errorf("bulk change: %w", err)
	}
	p := &phaseResult{name: "product", devices: o.devices, wall: wall, cost: costBetween(r0, r1), usage: u, samples: samples,
		inFlight: meanInFlight(o.devices, samples), runs: r.out.Progress.Runs}
	r.product = p
	r.ts = s.TS.Stats(time.Hour)
	prefix := res.WorkflowID
	if p.events, err = historyStats(ctx, s.Client, prefix, o.devices+p.runs); err != nil {
		return err
	}
	if o.verifyEvents {
		total, runs, err := describeTotal(ctx, s.Client, prefix)
		if err != nil {
			return err
		}
		fmt.Printf("product: visibility says %d events in %d runs; the runs' own records %d events in %d distinct runs\n",
			p.events.events, p.events.runs, total, runs)
	}
	if err := s.Store.Pool.QueryRow(ctx, `SELECT count(*) FROM device_changes WHERE status NOT IN ('PROCESSED', 'ERROR')`).Scan(&r.unfinished); err != nil {
		return err
	}
	fmt.Printf("product: %d devices in %s (%.1f/s); load %s\n", o.devices, wall.Round(time.Second), p.perSecond(), loadAvg())
	if !o.breakdown {
		return nil
	}
	if err := parentBreakdown(ctx, s, prefix, p); err != nil {
		return err
	}
	byOp := map[string][]string{}
	for _, row := range rows {
		byOp[row[1]] = append(byOp[row[1]], api.DeviceChangeWorkflowID(res.ID, row[0]))
	}
	var all [][]*historypb.HistoryEvent
	for _, op := range opOrder {
		var hs [][]*historypb.HistoryEvent
		// Spread over the operation's devices: the first of a batch wait
		// for their callback, later ones find it stored.
		for _, id := range spread(byOp[op], o.childSample) {
			h, err := history(ctx, s.Client, id, "")
			if err != nil {
				return err
			}
			hs = append(hs, h)
			v, err := visibilityLength(ctx, s.Client, id)
			if err != nil {
				return err
			}
			p.check[0] += int64(len(h))
			p.check[1] += v
		}
		if len(hs) > 0 {
			p.childBD = append(p.childBD, newBreakdown(op+" device workflow", hs, float64(len(hs))))
			all = append(all, hs...)
		}
	}
	ct := analyseChildren(all)
	p.children = &ct
	return nil
}

// parentBreakdown reads every run of a parent: its events per device by
// type, and its workflow tasks and child starts.
func parentBreakdown(ctx context.Context, s *localstack.Stack, workflowID string, p *phaseResult) error {
	ids, err := runIDs(ctx, s.Client, workflowID)
	if err != nil {
		return err
	}
	var hs [][]*historypb.HistoryEvent
	for _, id := range ids {
		h, err := history(ctx, s.Client, workflowID, id)
		if err != nil {
			return err
		}
		hs = append(hs, h)
	}
	bd := newBreakdown("parent, per device", hs, float64(p.devices))
	p.parentBD = &bd
	pt := analyseParent(hs)
	p.parent = &pt
	return nil
}

// spread picks n elements evenly spaced.
func spread[T any](all []T, n int) []T {
	if n >= len(all) {
		return all
	}
	out := make([]T, 0, n)
	for i := range n {
		out = append(out, all[i*len(all)/n])
	}
	return out
}

func sampleRows(rows [][2]string, n int) [][2]string {
	if n >= len(rows) {
		return rows
	}
	// Keep the mix: every k-th device.
	out := make([][2]string, 0, n)
	step := float64(len(rows)) / float64(n)
	for i := 0; i < n; i++ {
		out = append(out, rows[int(float64(i)*step)])
	}
	return out
}

func mixText(mix map[string]int) string {
	var parts []string
	for _, op := range opOrder {
		if mix[op] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d%%", op, mix[op]))
		}
	}
	return strings.Join(parts, ", ")
}

func writeFile(rows [][2]string) (string, error) {
	f, err := os.CreateTemp("", "bench-*.csv")
	if err != nil {
		return "", err
	}
	defer f.Close()
	fmt.Fprintln(f, "iccid,operation,service_plan,mdn_zip_code")
	for _, r := range rows {
		if r[1] == "activate" {
			fmt.Fprintf(f, "%s,%s,m2m_4G,98801\n", r[0], r[1])
		} else {
			fmt.Fprintf(f, "%s,%s,,\n", r[0], r[1])
		}
	}
	return f.Name(), nil
}

// progressSample is one reading of a parent's progress query, with the
// worker processes' resident memory at that moment.
type progressSample struct {
	at       time.Duration
	done     int
	inFlight int
	runs     int
	rssKB    int64 // all worker processes together
}

type sampling struct {
	stopc   chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []progressSample
}

// startSampling reads the parent's progress every 2 seconds (in flight is
// averaged over these) and prints it every 15.
func startSampling(name string, total int, start time.Time, query func(context.Context) (progressSample, bool), procs []*workerProc) *sampling {
	sp := &sampling{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		lastPrint := time.Now()
		for {
			select {
			case <-sp.stopc:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ps, ok := query(ctx)
			cancel()
			if !ok {
				continue
			}
			ps.at = time.Since(start)
			for _, p := range procs {
				if kb, err := procRSS(p.cmd.Process.Pid); err == nil {
					ps.rssKB += kb
				}
			}
			sp.mu.Lock()
			sp.samples = append(sp.samples, ps)
			sp.mu.Unlock()
			if time.Since(lastPrint) >= 15*time.Second {
				lastPrint = time.Now()
				fmt.Printf("  %-7s %6s  %d/%d done, %d in flight, run %d (%.1f devices/s), worker RSS %d MiB, load %s\n", name,
					ps.at.Round(time.Second), ps.done, total, ps.inFlight, ps.runs, float64(ps.done)/ps.at.Seconds(), ps.rssKB/1024, loadAvg())
			}
		}
	}()
	return sp
}

func (sp *sampling) stop() []progressSample {
	close(sp.stopc)
	<-sp.done
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.samples
}

// workerProc is a worker run as its own process, so that its memory and
// CPU can be measured apart from the simulators and the server.
type workerProc struct {
	cmd *exec.Cmd
}

type usage struct {
	procs    int
	maxRSSKB int64         // the largest peak of one process
	cpu      time.Duration // all processes together
}

// startWorkers starts o.workers processes of path with args; each writes
// its CPU profile to -cpuprofile's directory when set.
func startWorkers(kind, path string, args []string, env []string, o options) ([]*workerProc, error) {
	var procs []*workerProc
	for i := 1; i <= o.workers; i++ {
		cmd := exec.Command(path, args...)
		cmd.Env = env
		if o.cpuProfileDir != "" {
			cmd.Env = append(append([]string(nil), env...),
				app.CPUProfileEnv+"="+filepath.Join(o.cpuProfileDir, fmt.Sprintf("%s-%d.pprof", kind, i)))
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			stopWorkers(procs)
			return nil, err
		}
		procs = append(procs, &workerProc{cmd: cmd})
	}
	return procs, nil
}

func stopWorkers(procs []*workerProc) usage {
	u := usage{procs: len(procs)}
	for _, w := range procs {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range procs {
		_ = w.cmd.Wait()
		if ru, ok := w.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			u.maxRSSKB = max(u.maxRSSKB, ru.Maxrss)
			u.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return u
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// sourceState names the source measured: the commit, and the files changed
// since (other work in the tree is part of what was measured).
func sourceState() string {
	head, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	n := len(strings.Fields(strings.ReplaceAll(string(st), "\n", " "))) / 2
	if n == 0 {
		return strings.TrimSpace(string(head))
	}
	return fmt.Sprintf("%s with %d changed files", strings.TrimSpace(string(head)), n)
}

// scratchDatabase creates the benchmark's database and returns its URL, its
// name and a function that drops it.
func scratchDatabase(ctx context.Context, adminURL string) (string, string, func(), error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", "", nil, fmt.Errorf("PostgreSQL is not reachable (%v); start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("tsbulk_bench_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", nil, err
	}
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return "", "", nil, err
	}
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	return url, name, func() {
		c, err := pgx.Connect(context.Background(), adminURL)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(context.Background())
		}
	}, nil
}

// benchOptions are the bulk change's settings: the stack's, with the
// benchmark's window, callbacks on and no billing or default site (the
// benchmark measures the state changes).
func benchOptions(s *localstack.Stack, o options) api.Options {
	opts := s.Config.BulkChangeOptions()
	opts.CallbacksEnabled = true
	opts.Window = o.window
	opts.DefaultSite = ""
	opts.BillingEnabled = false
	opts.DisconnectBillingOnDeactivate = false
	return opts
}

// sortedKeys returns a map's keys in order.
func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
