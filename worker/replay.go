package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/setup"
	"github.com/iot-ops/tsbulk/workflows"
)

// replay replays workflow histories against the workflow code of this
// build, as a deployed worker would: one taken from the server
// (--workflow-id, optionally --run-id), one exported with
// `temporal workflow show --output json` (--file), or every such export in
// a folder (--dir). It prints OK, or the nondeterminism found, and exits
// non-zero on it: the check to run before deploying a workflow change while
// bulk changes are running.
func replay(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(errOut)
	path := fs.String("config", "", "YAML configuration file (for the temporal.* settings)")
	workflowID := fs.String("workflow-id", "", "replay this workflow's history, fetched from the Temporal server")
	runID := fs.String("run-id", "", "the run to replay (default: the latest)")
	file := fs.String("file", "", "replay a history exported with `temporal workflow show --output json`")
	dir := fs.String("dir", "", "replay every *.json history in this folder, as --file does (not its subfolders)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	sources := 0
	for _, s := range []string{*workflowID, *file, *dir} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		fmt.Fprintln(errOut, "worker replay: give one of --workflow-id ID [--run-id RUN], --file history.json or --dir DIR")
		return 2
	}
	r, rerr := newReplayer(*path)
	if rerr != nil {
		fmt.Fprintln(errOut, "worker replay:", rerr)
		return 1
	}
	workflows.Register(r)
	quiet := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if *dir != "" {
		return replayDir(r, quiet, *dir, out, errOut)
	}
	var hist *historypb.History
	var what string
	var err error
	if *file != "" {
		what = *file
		hist, err = readHistory(*file)
	} else {
		hist, err = fetchHistory(ctx, *path, *workflowID, *runID)
		what = fmt.Sprintf("workflow %s (%d events)", *workflowID, len(hist.GetEvents()))
	}
	if err != nil {
		fmt.Fprintln(errOut, "worker replay:", err)
		return 1
	}
	return replayOne(r, quiet, what, hist, out)
}

// replayOne replays one history and says how it went: 0 when it replays, 3
// on nondeterminism, 1 when its payloads are encrypted and no keys are
// configured.
func replayOne(r worker.WorkflowReplayer, logger tlog.Logger, what string, hist *historypb.History, out io.Writer) int {
	err := r.ReplayWorkflowHistory(logger, hist)
	if needsKeys(err) {
		fmt.Fprintf(out, "CANNOT READ %s: %v\n", what, err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(out, "NONDETERMINISM in %s against this build:\n  %v\n", what, err)
		return 3
	}
	fmt.Fprintf(out, "OK: %s replays against this build\n", what)
	return 0
}

// replayDir replays every *.json history in dir, in name order. It goes on
// past a history that fails, so that one run names every history a change
// breaks. Nondeterminism (3) outranks a file it could not read (1): it is
// the finding that must stop the deploy.
func replayDir(r worker.WorkflowReplayer, logger tlog.Logger, dir string, out, errOut io.Writer) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintln(errOut, "worker replay:", err)
		return 1
	}
	var files []string
	for _, e := range entries {
		if ok, _ := filepath.Match("*.json", e.Name()); ok && !e.IsDir() {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		// Most likely the wrong folder: passing would let a deploy go
		// ahead with nothing checked.
		fmt.Fprintf(errOut, "worker replay: --dir %s holds no *.json history\n", dir)
		return 2
	}
	code := 0
	for _, f := range files {
		hist, err := readHistory(f)
		if err != nil {
			fmt.Fprintln(errOut, "worker replay:", err)
			code = max(code, 1)
			continue
		}
		code = max(code, replayOne(r, logger, f, hist, out))
	}
	return code
}

// readHistory reads a history exported with `temporal workflow show
// --output json`, apart from replaying it, so that an unreadable file is
// not reported as nondeterminism.
func readHistory(path string) (*historypb.History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return hist, nil
}

// fetchHistory reads a run's whole history from the server named by the
// configuration.
func fetchHistory(ctx context.Context, path, workflowID, runID string) (*historypb.History, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	// The same connection as the worker's (TLS, API key, Temporal's
	// environment configuration), quietly: only the history is wanted.
	tc, err := setup.Temporal(ctx, cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
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
