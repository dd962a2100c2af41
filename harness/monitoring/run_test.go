package monitoring

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// binDir holds the product's binaries, built once for the end-to-end run.
var binDir string

// e2eTests are the tests that need the end-to-end run (and so the build).
const e2eTests = "TestDashboardsUseExportedMetrics|TestRulesUseExportedMetrics"

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() && runsAny(e2eTests) {
		// Without -race, like the binaries operators run.
		os.Exit(stack.WithBinaries(func(dir string) int {
			binDir = dir
			return m.Run()
		}, "../../worker", "../../starter", "../../callback-receiver", "../cmd/thingspace-simulator",
			"../cmd/revio-simulator"))
	}
	os.Exit(m.Run())
}

// runsAny reports whether -run selects one of the tests (building the
// product for the file checks alone would cost a minute).
func runsAny(names string) bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	for _, name := range strings.Split(names, "|") {
		if ok, err := regexp.MatchString(f.Value.String(), name); err != nil || ok {
			return true
		}
	}
	return false
}

// Exported is what a real run exported: each metric name (a histogram's
// _bucket, _sum and _count series by their own names) with its label
// names, and a sample of the raw text of each target.
type Exported struct {
	Metrics map[string]map[string]bool
	// Targets are the scraped endpoints by Prometheus job name
	// (deploy/prometheus/prometheus.yml).
	Targets map[string]*expfmtFamilies
}

type expfmtFamilies struct {
	Families map[string]*dtoFamily
}

var (
	exportedOnce sync.Once
	exported     *Exported
	exportedErr  error
)

// exportedByRealRun runs one end-to-end bulk change (once per test
// binary) and returns what the worker, the callback receiver and the
// Temporal server exported meanwhile.
func exportedByRealRun(t *testing.T) *Exported {
	t.Helper()
	if testing.Short() {
		t.Skip("the end-to-end run starts the whole product; skipped with -short")
	}
	if binDir == "" {
		t.Fatal("the product's binaries were not built (TestMain)")
	}
	exportedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tsbulk-monitoring-")
		if err != nil {
			exportedErr = err
			return
		}
		exported, exportedErr = realRun(t, dir)
		if exportedErr != nil {
			exportedErr = fmt.Errorf("%w (logs in %s)", exportedErr, dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if exportedErr != nil {
		t.Fatal(exportedErr)
	}
	if exported == nil {
		t.Fatal("the end-to-end run stopped in an earlier test (see its failure)")
	}
	return exported
}

// The jobs of deploy/prometheus/prometheus.yml, which the run scrapes as
// Prometheus would.
const (
	jobWorker   = "tsbulk-worker"
	jobReceiver = "tsbulk-callback-receiver"
	jobTemporal = "temporal"
)

// realRun: the Temporal dev server with its metrics endpoint, the
// simulators, the callback receiver and a worker as separate processes, the
// demo's bulk change (every operation, PPU and Rev.io billing, a device
// ThingSpace does not know, a fifth of the callbacks dropped so that
// polling confirms some); the worker and the receiver are scraped all along
// (some gauges exist only while a bulk change is in flight), the Temporal
// server at the end.
func realRun(t *testing.T, dir string) (*Exported, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cli, err := stack.TemporalCLI()
	if err != nil {
		return nil, err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = stack.FreePort(); err != nil {
			return nil, err
		}
	}
	temporalMetrics := fmt.Sprintf("127.0.0.1:%d", ports[0])
	workerAdmin := fmt.Sprintf("127.0.0.1:%d", ports[1])
	receiverAdmin := fmt.Sprintf("127.0.0.1:%d", ports[2])
	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{Namespace: "default"},
		LogLevel:      "error",
		// The product makes no visibility call: one a second is the limit
		// the test's own burst runs into (service_errors_resource_exhausted).
		ExtraArgs: append([]string{"--metrics-port", fmt.Sprint(ports[0]),
			"--dynamic-config-value", "frontend.namespaceRPS.visibility=1"},
			api.DevServerSearchAttributeArgs()...),
		Stdout: io.Discard,
		Stderr: io.Discard,
	})
	if err != nil {
		return nil, fmt.Errorf("start the Temporal dev server: %w", err)
	}
	defer func() { _ = dev.Stop() }()

	creds := stack.Credentials{
		TSClientID: "mon-client-id", TSClientSecret: "mon-client-secret", TSUsername: "mon-user",
		TSPassword: "mon-password", Account: "0000123456-00001", CallbackUsername: "mon-listener",
		CallbackPassword: "mon-listener-password", RevioLogin: "INTEGRATIONS", RevioClientCode: "MON",
		RevioPassword: "mon-revio-password", RevioKey: "mon-revio-key",
	}
	dbURL := dbtest.NewURL(t)
	procs, err := stack.StartProcesses(ctx, stack.ProcessOptions{
		BinDir: binDir, LogDir: dir, Credentials: creds, Workers: 1,
		// Some callbacks dropped (confirmed by polling), some late: polling
		// confirms those first, and their callback's signal then finds the
		// device's workflow ended (a failed request in the receiver's SDK
		// metrics).
		ThingSpaceArgs: []string{"--seed-file", "../demo/devices.csv", "--completion-delay", "1s",
			"--completion-jitter", "2s", "--callback-retry-interval", "1s", "--drop-callback-rate", "0.2",
			"--late-callback-rate", "0.3", "--late-callback-delay", "20s", "--log-level", "warn"},
		Settings: map[string]string{
			"temporal.address":               dev.FrontendHostPort(),
			"temporal.namespace":             "default",
			"database.url":                   dbURL,
			"worker.listen":                  workerAdmin,
			"callbacks.admin_listen":         receiverAdmin,
			"approval.operations":            "none",
			"revio.disconnect_on_deactivate": "true",
			// High enough that the pacing after the 429s below (0.9 of the
			// limit for a window) does not slow the run.
			"limits.requests_per_hour":          "100000",
			"limits.activates_per_minute":       "1000",
			"bulk.callback_timeout":             "5s",
			"bulk.poll_interval":                "1s",
			"bulk.poll_max_interval":            "4s",
			"bulk.confirm_deadline":             "5m",
			"bulk.stall_check":                  "10s",
			"bulk.default_site":                 "MONITORING-SITE",
			"worker.reconcile_settle":           "3s",
			"worker.deadlock_detection_timeout": "30s",
			"log.level":                         "warn",
		},
	})
	if err != nil {
		return nil, err
	}
	defer procs.Stop()

	ex := &Exported{Metrics: map[string]map[string]bool{}, Targets: map[string]*expfmtFamilies{}}
	scrapeAll := func(targets map[string]string) error {
		for job, addr := range targets {
			fams, err := scrape(ctx, "http://"+addr+"/metrics")
			if err != nil {
				return fmt.Errorf("scrape %s (%s): %w", job, addr, err)
			}
			ex.add(job, fams)
		}
		return nil
	}
	product := map[string]string{jobWorker: workerAdmin, jobReceiver: receiverAdmin}
	if err := waitReady(ctx, "http://"+workerAdmin+"/readyz"); err != nil {
		return nil, fmt.Errorf("the worker is not ready: %w", err)
	}

	// ThingSpace answers the next requests 429 (the product waits their
	// Retry-After): its errors, throttling and budget gauges.
	if err := post(ctx, procs.ThingSpaceURL+"/admin/throttle-burst", `{"requests": 2, "retry_after": "1s"}`); err != nil {
		return nil, err
	}

	// The demo's file: the starter waits for the end and exits 1, since
	// one device is unknown to ThingSpace (as in `make run`).
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- procs.Run(ctx, "starter", &out, "starter", "submit", "--file", "../demo/bulk-change.csv",
			"--idempotency-key", "monitoring-e2e", "--wait")
	}()
	submitted := time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var submitErr error
wait:
	for {
		select {
		case submitErr = <-done:
			break wait
		case <-tick.C:
			if err := scrapeAll(product); err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("the bulk change did not end: %w", ctx.Err())
		}
	}
	t.Logf("the bulk change ended after %s", time.Since(submitted).Round(time.Second))
	var exit *exec.ExitError
	if submitErr != nil && !errors.As(submitErr, &exit) {
		return nil, submitErr
	}
	if !strings.Contains(out.String(), "FINISHED") {
		return nil, fmt.Errorf("the demo bulk change did not finish:\n%s", out.String())
	}
	// The late callbacks come after their device's workflow ended.
	late := func() bool {
		f := ex.Targets[jobReceiver].Families["tsbulk_callback_signals_total"]
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "workflow_not_running" && m.GetCounter().GetValue() > 0 {
					return true
				}
			}
		}
		return false
	}
	for deadline := time.Now().Add(time.Minute); !late(); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, errors.New("no late callback reached the receiver within a minute")
		}
		if err := scrapeAll(product); err != nil {
			return nil, err
		}
	}
	t.Logf("a late callback found its workflow ended %s after the submission", time.Since(submitted).Round(time.Second))
	// Visibility calls over the server's limit: refused, and counted.
	for range 10 {
		lctx, lcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, _ = dev.Client().ListWorkflow(lctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default"})
		lcancel()
	}
	if err := scrapeAll(product); err != nil {
		return nil, err
	}
	if err := scrapeAll(map[string]string{jobTemporal: temporalMetrics}); err != nil {
		return nil, err
	}
	return ex, nil
}

func post(ctx context.Context, url, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: HTTP %d: %s", url, resp.StatusCode, b)
	}
	return nil
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(time.Minute)
	var last error = errors.New("no answer")
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("HTTP %d", resp.StatusCode)
		} else {
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

// scrape reads a /metrics endpoint in the Prometheus text format.
func scrape(ctx context.Context, url string) (map[string]*dtoFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// add records the families one scrape of job returned, a histogram's and a
// summary's series under the names Prometheus stores them by.
func (ex *Exported) add(job string, fams map[string]*dtoFamily) {
	if ex.Targets[job] == nil {
		ex.Targets[job] = &expfmtFamilies{Families: map[string]*dtoFamily{}}
	}
	for name, f := range fams {
		ex.Targets[job].Families[name] = f
		// The series Prometheus stores, with the label each adds.
		names := map[string]string{name: ""}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names = map[string]string{name + "_bucket": "le", name + "_sum": "", name + "_count": ""}
		case dto.MetricType_SUMMARY:
			names = map[string]string{name: "quantile", name + "_sum": "", name + "_count": ""}
		}
		for n, extra := range names {
			labels := ex.Metrics[n]
			if labels == nil {
				labels = map[string]bool{}
				ex.Metrics[n] = labels
			}
			// Prometheus adds these to every series it scrapes.
			labels["job"], labels["instance"] = true, true
			if extra != "" {
				labels[extra] = true
			}
			for _, m := range f.GetMetric() {
				for _, lp := range m.GetLabel() {
					labels[lp.GetName()] = true
				}
			}
		}
	}
}

// dump writes what was exported, for a reader of a failure.
func (ex *Exported) dump(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "exported.txt")
	var b strings.Builder
	for _, n := range sortedKeys(ex.Metrics) {
		fmt.Fprintf(&b, "%s {%s}\n", n, strings.Join(sortedKeys(ex.Metrics[n]), ","))
	}
	_ = os.WriteFile(p, []byte(b.String()), 0o644)
	return p
}
