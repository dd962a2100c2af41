// Package integration runs the product end to end: the Temporal CLI's dev
// server, a fresh PostgreSQL database, the ThingSpace and Rev.io simulators
// over HTTP, the callback receiver and real workers.
package integration

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(0)
	}
	// The worker runs as its own process in the tests that kill it.
	os.Exit(stack.WithBinaries(func(dir string) int {
		binDir = dir
		return m.Run()
	}, "../../worker"))
}

func newStack(t *testing.T, opts stack.Options) *stack.Stack {
	t.Helper()
	// TSBULK_TEST_TEMPORAL_ADDRESS: run on that Temporal server (namespace
	// default), e.g. the PostgreSQL-backed one of scripts/temporal-postgres.sh,
	// instead of a dev server per test. The tests then share it, one at a
	// time: workflows and activities all use the one task queue.
	if addr := os.Getenv("TSBULK_TEST_TEMPORAL_ADDRESS"); addr != "" {
		if len(opts.DevServerArgs) > 0 {
			t.Skip(
				"needs a dev server of its own with lowered limits (DevServerArgs); TSBULK_TEST_TEMPORAL_ADDRESS is set",
			)
		}
		opts.TemporalAddress = addr
	}
	opts.DatabaseURL = dbtest.NewURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// newStackWithWorker is newStack with a worker running in this process,
// as most tests want.
func newStackWithWorker(t *testing.T, opts stack.Options) *stack.Stack {
	t.Helper()
	s := newStack(t, opts)
	_, err := s.StartWorker()
	require.NoError(t, err)
	return s
}

// simConfig is the ThingSpace simulator most tests run: each change
// completes after delay plus up to jitter, an undelivered callback is tried
// again every half second, and seed makes the run repeatable.
func simConfig(delay, jitter time.Duration, seed int64) tssim.Config {
	return tssim.Config{
		CompletionDelay:       delay,
		CompletionJitter:      jitter,
		CallbackRetryInterval: 500 * time.Millisecond,
		Seed:                  seed,
	}
}

// batching sets how many devices go in one ThingSpace request and how many
// device changes may be in flight at once.
func batching(size, window int) func(*config.Config) {
	return func(c *config.Config) {
		c.Bulk.BatchSize = size
		c.Bulk.Window = window
	}
}

// row is one line of a bulk change file.
type row map[string]string

// writeCSV writes rows with the given columns to a file in the test's
// temporary directory.
func writeCSV(t *testing.T, columns []string, rows []row) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bulk.csv")
	f, err := os.Create(path)
	require.NoError(t, err)
	w := csv.NewWriter(f)
	require.NoError(t, w.Write(columns))
	for _, r := range rows {
		rec := make([]string, len(columns))
		for i, c := range columns {
			rec[i] = r[c]
		}
		require.NoError(t, w.Write(rec))
	}
	w.Flush()
	require.NoError(t, w.Error())
	require.NoError(t, f.Close())
	return path
}

func options(s *stack.Stack) api.Options {
	return s.Config.BulkChangeOptions()
}

// submit submits a file through the same code path as `starter submit`.
func submit(t *testing.T, s *stack.Stack, file string) *submission.Result {
	t.Helper()
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	res, err := sub.Submit(context.Background(), submission.Request{
		File: file, Account: s.Config.ThingSpace.Account, BatchSize: s.Config.Bulk.BatchSize, Options: options(s),
		ActionsPerLinePerDay: s.Config.Limits.ActionsPerLinePerDay,
	})
	require.NoError(t, err)
	require.True(t, res.Created)
	return res
}

// waitBulk waits for the bulk change's workflow to end.
func waitBulk(t *testing.T, s *stack.Stack, res *submission.Result, timeout time.Duration) api.BulkChangeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out api.BulkChangeResult
	err := s.Client.GetWorkflow(ctx, res.WorkflowID, "").Get(ctx, &out)
	require.NoError(t, err, "bulk change %s did not finish: %s", res.ID, progressOf(s, res.WorkflowID))
	return out
}

// queryProgress asks a bulk change's workflow for its progress.
func queryProgress(s *stack.Stack, workflowID string) (api.Progress, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p api.Progress
	v, err := s.Client.QueryWorkflow(ctx, workflowID, "", api.ProgressQuery)
	if err == nil {
		err = v.Get(&p)
	}
	return p, err
}

func progress(s *stack.Stack, workflowID string) (api.Progress, bool) {
	p, err := queryProgress(s, workflowID)
	return p, err == nil
}

// awaitProgress waits, three minutes at most, until the bulk change's
// progress satisfies cond.
func awaitProgress(t *testing.T, s *stack.Stack, workflowID string, cond func(api.Progress) bool) {
	t.Helper()
	require.Eventually(t, func() bool { p, ok := progress(s, workflowID); return ok && cond(p) },
		3*time.Minute, 100*time.Millisecond)
}

// progressOf is the progress for a failure message, or why there is none.
func progressOf(s *stack.Stack, workflowID string) string {
	p, err := queryProgress(s, workflowID)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%+v", p)
}

// history reads a workflow's whole event history.
func history(t *testing.T, s *stack.Stack, workflowID string) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	it := s.Client.GetWorkflowHistory(context.Background(), workflowID, "", false,
		enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		events = append(events, e)
	}
	return events
}

// results reads the bulk change's device changes, by ICCID.
func results(t *testing.T, s *stack.Stack, bulkID string) map[string]db.ResultRow {
	t.Helper()
	rows, err := s.Store.Results(context.Background(), bulkID)
	require.NoError(t, err)
	out := make(map[string]db.ResultRow, len(rows))
	for _, r := range rows {
		out[r.ICCID] = r
	}
	return out
}

// bulkChange reads a bulk change from the database.
func bulkChange(t *testing.T, s *stack.Stack, id string) *db.BulkChange {
	t.Helper()
	b, err := s.Store.GetBulkChange(context.Background(), id)
	require.NoError(t, err)
	return b
}

// waitForStatus waits for a bulk change to reach a status its workflow
// records without ending (SCHEDULED, AWAITING_APPROVAL).
func waitForStatus(t *testing.T, s *stack.Stack, id string, status change.BulkStatus) {
	t.Helper()
	require.Eventually(t, func() bool {
		b, err := s.Store.GetBulkChange(context.Background(), id)
		return err == nil && b.Status == status
	}, time.Minute, 200*time.Millisecond, "bulk change %s %s", id, status)
}

// countRows runs a SELECT count(*) query.
func countRows(t *testing.T, s *stack.Stack, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, s.Store.Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// confirmedByPoll counts a bulk change's device changes confirmed by the
// polling fallback rather than by a callback.
func confirmedByPoll(t *testing.T, s *stack.Stack, bulkID string) int {
	t.Helper()
	return countRows(t, s,
		`SELECT count(*) FROM device_changes WHERE bulk_change_id = $1 AND confirmed_by = 'poll'`, bulkID)
}

// expectFinal asserts every device change ended with an outcome and a
// reason for each error.
func expectFinal(t *testing.T, rows map[string]db.ResultRow) {
	t.Helper()
	for iccid, r := range rows {
		require.Contains(t, []change.Status{change.Processed, change.Failed}, r.Status, "device change of %s", iccid)
		if r.Status == change.Failed {
			require.NotEmpty(t, r.ErrorCode, "error of %s has a reason", iccid)
		}
	}
}

// simStats reads the ThingSpace simulator's counters over HTTP, as an
// operator of the demo would (GET /admin/stats).
func simStats(t *testing.T, s *stack.Stack) tssim.Stats {
	t.Helper()
	resp, err := http.Get(s.Config.ThingSpace.BaseURL + "/admin/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st tssim.Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

// simState is the simulator's state of a device.
func simState(t *testing.T, s *stack.Stack, iccid string) tssim.DeviceSnapshot {
	t.Helper()
	d, ok := s.TS.Device(iccid)
	require.True(t, ok, "simulator knows %s", iccid)
	return d
}

// stateChangeActions are the simulator's action names of state changes.
var stateChangeActions = []string{"activate", "suspend", "restore", "deactivate", "add"}

// changesSent counts the state-change requests ThingSpace accepted for a
// device.
func changesSent(st tssim.Stats, iccid string) int {
	n := 0
	for _, a := range stateChangeActions {
		n += st.AcceptedChanges[iccid][a]
	}
	return n
}

// workerProcess runs the worker binary against the stack.
type workerProcess struct {
	cmd *exec.Cmd
	log *strings.Builder
}

func startWorkerProcess(t *testing.T, s *stack.Stack) *workerProcess {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "worker"))
	cmd.Env = s.Env()
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	p := &workerProcess{cmd: cmd, log: &log}
	t.Cleanup(func() { p.kill() })
	return p
}

// kill ends the worker at once, as a crash or an OOM kill would.
func (p *workerProcess) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// suspendFile seeds n active devices and writes a file suspending them.
func suspendFile(t *testing.T, s *stack.Stack, prefix string, n int) ([]tssim.DeviceSeed, string) {
	t.Helper()
	devs := tssim.GenerateDevices(n, prefix, "active")
	require.NoError(t, s.TS.Seed(devs...))
	rows := make([]row, len(devs))
	for i, d := range devs {
		rows[i] = row{"iccid": d.ICCID, "operation": "suspend"}
	}
	return devs, writeCSV(t, []string{"iccid", "operation"}, rows)
}

// recordHistory exports a workflow's history with the Temporal CLI into
// workflows/testdata/histories/<name>.json, where the replay tests read it,
// when TSBULK_RECORD_HISTORIES is set (to record a new path; see
// docs/architecture.md, "Changing workflow code").
func recordHistory(t *testing.T, s *stack.Stack, workflowID, name string, runID ...string) {
	t.Helper()
	if os.Getenv("TSBULK_RECORD_HISTORIES") == "" {
		return
	}
	cli, err := stack.TemporalCLI()
	require.NoError(t, err)
	args := []string{"workflow", "show", "--address", s.Config.Temporal.Address,
		"--namespace", s.Config.Temporal.Namespace, "--workflow-id", workflowID, "--output", "json"}
	if len(runID) > 0 {
		// A run other than the latest (one that continued as new).
		args = append(args, "--run-id", runID[0])
	}
	out, err := exec.Command(cli, args...).Output()
	require.NoError(t, err)
	path := filepath.Join("..", "..", "workflows", "testdata", "histories", name+".json")
	require.NoError(t, os.WriteFile(path, out, 0o644))
	t.Logf("recorded the history of %s in %s", workflowID, path)
}
