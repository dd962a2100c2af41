package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/workflows"
)

// replay replays a workflow history against the workflow code of this
// build, as a deployed worker would: taken from the server (--workflow-id,
// optionally --run-id) or from a file exported with
// `temporal workflow show --output json` (--file). It prints OK, or the
// nondeterminism found, and exits non-zero on it: the check to run before
// deploying a workflow change while bulk changes are running.
func replay(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(errOut)
	path := fs.String("config", "", "YAML configuration file (for temporal.address and temporal.namespace)")
	workflowID := fs.String("workflow-id", "", "replay this workflow's history, fetched from the Temporal server")
	runID := fs.String("run-id", "", "the run to replay (default: the latest)")
	file := fs.String("file", "", "replay a history exported with `temporal workflow show --output json`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*workflowID == "") == (*file == "") {
		fmt.Fprintln(errOut, "worker replay: give --workflow-id ID [--run-id RUN] or --file history.json")
		return 2
	}
	r := worker.NewWorkflowReplayer()
	workflows.Register(r)
	quiet := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	what := *file
	var err error
	if *file != "" {
		err = r.ReplayWorkflowHistoryFromJSONFile(quiet, *file)
	} else {
		var hist *historypb.History
		hist, err = fetchHistory(ctx, *path, *workflowID, *runID)
		if err != nil {
			fmt.Fprintln(errOut, "worker replay:", err)
			return 1
		}
		what = fmt.Sprintf("workflow %s (%d events)", *workflowID, len(hist.GetEvents()))
		err = r.ReplayWorkflowHistory(quiet, hist)
	}
	if err != nil {
		fmt.Fprintf(out, "NONDETERMINISM in %s against this build:\n  %v\n", what, err)
		return 3
	}
	fmt.Fprintf(out, "OK: %s replays against this build\n", what)
	return 0
}

// fetchHistory reads a run's whole history from the server named by the
// configuration.
func fetchHistory(ctx context.Context, path, workflowID, runID string) (*historypb.History, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if cfg.Temporal.Address == "" {
		return nil, errors.New("temporal.address is required")
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tc, err := client.DialContext(
		dctx,
		client.Options{HostPort: cfg.Temporal.Address, Namespace: cfg.Temporal.Namespace,
			Logger: tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))},
	)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (temporal.address): %w", cfg.Temporal.Address, err)
	}
	defer tc.Close()
	hist := &historypb.History{}
	it := tc.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", workflowID, err)
		}
		hist.Events = append(hist.Events, ev)
	}
	if len(hist.Events) == 0 {
		return nil, fmt.Errorf("workflow %s has no history", workflowID)
	}
	return hist, nil
}
