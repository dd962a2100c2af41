// Command bench measures a bulk change end to end (make bench): the real
// Temporal dev server, PostgreSQL, the worker as its own process, and the
// ThingSpace simulator with realistic latencies and a requests-per-hour
// limit. In the same run, on a second account of the same simulator with the
// same limit, a baseline does what the predecessor did: one request per
// device, one device after another. It prints one table.
//
//	bench [-devices 10000] [-limit 20000] [-mix activate=40,suspend=20,...]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/stack"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/thingspace"
	tssim "github.com/iot-ops/tsbulk/thingspace/simulator"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	productAccount  = "0000123456-00001"
	baselineAccount = "0000123456-00002"
)

type options struct {
	devices        int
	limit          int
	latency        time.Duration
	jitter         time.Duration
	completion     time.Duration
	completionJit  time.Duration
	mix            map[string]int
	baseline       string
	baselineSample int
	bin            string
	adminDB        string
	batch          int
	window         int
}

func main() {
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
	flag.IntVar(&o.window, "window", 500, "device workflows in flight per bulk change")
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

func run(o options) error {
	ctx := context.Background()
	dbURL, drop, err := scratchDatabase(ctx, o.adminDB)
	if err != nil {
		return err
	}
	defer drop()
	fmt.Printf("starting: Temporal dev server, simulator (answers %s+%s, callbacks %s+%s, limit %d requests/h per account)\n",
		o.latency, o.jitter, o.completion, o.completionJit, o.limit)
	s, err := stack.Start(ctx, stack.Options{
		DatabaseURL: dbURL,
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
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	defer s.Close()

	rows, seeds := plan(o, "891480090", productAccount)
	bRows, bSeeds := plan(o, "891480091", baselineAccount)
	if err := s.TS.Seed(append(seeds, bSeeds...)...); err != nil {
		return err
	}
	file, err := writeFile(rows)
	if err != nil {
		return err
	}
	defer os.Remove(file)
	s.TS.ResetStats()

	worker, err := startWorker(s, o.bin)
	if err != nil {
		return err
	}
	baseDone := make(chan baselineResult, 1)
	if o.baseline != "off" {
		n := len(bRows)
		if o.baseline == "sample" {
			n = min(n, o.baselineSample)
		}
		go func() { baseDone <- runBaseline(ctx, s, sampleRows(bRows, n), o) }()
	}

	fmt.Printf("submitting %d devices (%s)\n", o.devices, mixText(o.mix))
	start := time.Now()
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	res, err := sub.Submit(ctx, submission.Request{File: file, Account: productAccount, BatchSize: o.batch,
		Options: benchOptions(s, o)})
	if err != nil {
		return err
	}
	var out api.BulkChangeResult
	progressDone := make(chan struct{})
	go reportProgress(s, res.WorkflowID, start, progressDone)
	err = s.Client.GetWorkflow(ctx, res.WorkflowID, "").Get(ctx, &out)
	close(progressDone)
	wall := time.Since(start)
	if err != nil {
		return fmt.Errorf("bulk change: %w", err)
	}
	usage := worker.stop()
	st := s.TS.Stats(time.Hour)
	events, largest, err := historyStats(ctx, s)
	if err != nil {
		return err
	}
	var unfinished int
	if err := s.Store.Pool.QueryRow(ctx, `SELECT count(*) FROM device_changes WHERE status NOT IN ('PROCESSED', 'ERROR')`).Scan(&unfinished); err != nil {
		return err
	}
	var base baselineResult
	if o.baseline != "off" {
		fmt.Println("waiting for the baseline to finish...")
		base = <-baseDone
		if base.err != nil {
			return base.err
		}
	}
	printTable(o, out, wall, st, events, largest, usage, base, unfinished)
	return nil
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

func reportProgress(s *stack.Stack, workflowID string, start time.Time, done <-chan struct{}) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := s.Client.QueryWorkflow(ctx, workflowID, "", api.ProgressQuery)
		cancel()
		if err != nil {
			continue
		}
		var p api.Progress
		if v.Get(&p) == nil {
			el := time.Since(start)
			fmt.Printf("  %6s  %d/%d done, %d in flight, run %d (%.1f devices/s)\n", el.Round(time.Second), p.Done(), p.Total,
				p.InFlight, p.Runs, float64(p.Done())/el.Seconds())
		}
	}
}

// historyStats adds up the history events of every workflow run and finds
// the longest run.
func historyStats(ctx context.Context, s *stack.Stack) (total int64, largest int64, err error) {
	var token []byte
	for {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1000, NextPageToken: token})
		if err != nil {
			return 0, 0, err
		}
		for _, w := range resp.GetExecutions() {
			total += w.GetHistoryLength()
			largest = max(largest, w.GetHistoryLength())
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return total, largest, nil
		}
	}
}

// workerProc is the worker, run as its own process so that its memory and
// CPU can be measured apart from the simulators and the dev server.
type workerProc struct {
	cmd *exec.Cmd
}

type usage struct {
	maxRSSKB int64
	cpu      time.Duration
}

func startWorker(s *stack.Stack, bin string) (*workerProc, error) {
	cmd := exec.Command(filepath.Join(bin, "worker"))
	cmd.Env = s.Env()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker (run `make build` first): %w", err)
	}
	return &workerProc{cmd: cmd}, nil
}

func (w *workerProc) stop() usage {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	_ = w.cmd.Wait()
	ru, ok := w.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return usage{}
	}
	return usage{maxRSSKB: ru.Maxrss, cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
}

type baselineResult struct {
	devices  int
	requests int
	wall     time.Duration
	failed   int
	err      error
}

// runBaseline changes the devices one after another with one request each,
// as the predecessor did, within the same limit (enforced by the same
// limiter, on its own account).
func runBaseline(ctx context.Context, s *stack.Stack, rows [][2]string, o options) baselineResult {
	c := s.Config.ThingSpace
	lim := &ratelimit.Limiter{Pool: s.Store.Pool, Rules: ratelimit.Rules(o.limit, time.Hour, 100), DefaultAccount: baselineAccount,
		MaxWait: 24 * time.Hour}
	ts, err := thingspace.New(thingspace.Config{BaseURL: c.BaseURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret.Reveal(),
		Username: c.Username, Password: c.Password.Reveal(), AccountName: baselineAccount, Limiter: lim})
	if err != nil {
		return baselineResult{err: err}
	}
	res := baselineResult{devices: len(rows)}
	start := time.Now()
	for _, r := range rows {
		ref := []thingspace.DeviceRef{thingspace.ICCIDRef(r[0], "")}
		var err error
		switch r[1] {
		case "activate":
			_, err = ts.Activate(ctx, thingspace.ActivateRequest{Devices: ref, ServicePlan: "m2m_4G", MdnZipCode: "98801"})
		case "suspend":
			_, err = ts.Suspend(ctx, thingspace.ActionRequest{Devices: ref})
		case "restore":
			_, err = ts.Restore(ctx, thingspace.ActionRequest{Devices: ref})
		case "deactivate":
			_, err = ts.Deactivate(ctx, thingspace.DeactivateRequest{Devices: ref, ReasonCode: "FF"})
		case "inventory":
			_, err = ts.AddDevices(ctx, thingspace.AddRequest{DevicesToAdd: ref})
		}
		res.requests++
		if err != nil {
			res.failed++
		}
	}
	res.wall = time.Since(start)
	return res
}

func printTable(o options, out api.BulkChangeResult, wall time.Duration, st tssim.Stats, events, largest int64, u usage, b baselineResult, unfinished int) {
	req := st.RequestsPerAccount[productAccount]
	n := float64(o.devices)
	row := func(k, v string) { fmt.Printf("| %-44s | %-44s |\n", k, v) }
	fmt.Println()
	fmt.Printf("| %-44s | %-44s |\n", "measure", "value")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 46), strings.Repeat("-", 46))
	row("devices", fmt.Sprintf("%d (%d processed, %d errors, %d unfinished)", o.devices, out.Processed, out.Errors, unfinished))
	row("operations mix", mixText(o.mix))
	row("wall time", wall.Round(time.Second).String())
	row("devices per second", fmt.Sprintf("%.1f", n/wall.Seconds()))
	row("ThingSpace requests", fmt.Sprintf("%d (%.4f per device)", req, float64(req)/n))
	row("highest requests in any rolling hour", fmt.Sprintf("%d (limit %d)", st.MaxRequestsInWindow[productAccount], o.limit))
	row("Temporal history events", fmt.Sprintf("%d (%.1f per device)", events, float64(events)/n))
	row("largest single workflow run", fmt.Sprintf("%d events", largest))
	row("worker peak memory (RSS)", fmt.Sprintf("%.0f MiB", float64(u.maxRSSKB)/1024))
	row("worker CPU", fmt.Sprintf("%.1f s (%.2f ms per device)", u.cpu.Seconds(), float64(u.cpu.Milliseconds())/n))
	if b.devices > 0 {
		label := "baseline wall time (one request per device)"
		bw := b.wall
		if b.devices < o.devices {
			bw = time.Duration(float64(b.wall) * n / float64(b.devices))
			label = fmt.Sprintf("baseline wall time, extrapolated from %d", b.devices)
		}
		row(label, fmt.Sprintf("%s (%d requests, %d refused)", bw.Round(time.Second), b.requests, b.failed))
		row("baseline / product wall time", fmt.Sprintf("%.1fx", bw.Seconds()/wall.Seconds()))
		row("baseline at the predecessor's 1,000 req/h", fmt.Sprintf("at least %s", (time.Duration(n/1000*float64(time.Hour))).Round(time.Minute)))
	}
	byOutcome := make([]string, 0, len(out.Progress.ByOutcome))
	for k, v := range out.Progress.ByOutcome {
		byOutcome = append(byOutcome, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(byOutcome)
	fmt.Printf("\noutcomes: %s; parent runs: %d\n", strings.Join(byOutcome, ", "), out.Progress.Runs)
}

// scratchDatabase creates the benchmark's database and returns its URL and
// a function that drops it.
func scratchDatabase(ctx context.Context, adminURL string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL is not reachable (%v); start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("tsbulk_bench_%d", time.Now().Unix())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	return url, func() {
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
func benchOptions(s *stack.Stack, o options) api.Options {
	opts := s.Config.BulkChangeOptions()
	opts.CallbacksEnabled = true
	opts.Window = o.window
	opts.DefaultSite = ""
	opts.BillingEnabled = false
	opts.DisconnectBillingOnDeactivate = false
	return opts
}
