package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/luhn"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// temporalCLI runs the real temporal binary against the stack's server.
func temporalCLI(t *testing.T, s *stack.Stack, args ...string) (string, error) {
	t.Helper()
	cli, err := stack.TemporalCLI()
	require.NoError(t, err)
	args = append(args, "--address", s.Config.Temporal.Address, "--namespace", s.Config.Temporal.Namespace)
	out, err := exec.Command(cli, args...).CombinedOutput()
	return string(out), err
}

// executeSubmit runs SubmitBulkChange with the temporal CLI and returns its
// result, or the CLI's output when the workflow failed.
func executeSubmit(t *testing.T, s *stack.Stack, id, input string) (*api.SubmitResult, string) {
	t.Helper()
	out, err := temporalCLI(
		t,
		s,
		"workflow",
		"execute",
		"--task-queue",
		api.TaskQueue,
		"--type",
		api.SubmitBulkChangeWorkflowType,
		"--workflow-id",
		id,
		"--input",
		input,
		"--output",
		"json",
	)
	if err != nil {
		return nil, out
	}
	var v struct {
		Result json.RawMessage `json:"result"`
	}
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &v), out)
	var res api.SubmitResult
	require.NoError(t, json.Unmarshal(v.Result, &res), out)
	return &res, out
}

// A bulk change submitted with `temporal workflow execute --type
// SubmitBulkChange` names a file in the inbox; it is validated and written
// as `starter submit` would, and its workflow runs. Files outside the inbox,
// files with errors and inline PPU are refused clearly and write nothing.
func TestSubmitBulkChangeFromTheTemporalCLI(t *testing.T) {
	inbox := t.TempDir()
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(300*time.Millisecond, 0, 31),
		Config:     func(c *config.Config) { c.Submission.InboxDirs = []string{inbox} },
	})
	ctx := context.Background()

	_, file := suspendFile(t, s, "8914800701", 5)
	body, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "suspend.csv"), body, 0o600))

	res, out := executeSubmit(t, s, "submit-suspend", `{"file":"suspend.csv","idempotencyKey":"TICKET-7"}`)
	require.NotNil(t, res, out)
	require.True(t, res.Created)
	require.Equal(t, 5, res.Devices)
	var final api.BulkChangeResult
	require.NoError(t, s.Client.GetWorkflow(ctx, res.WorkflowID, "").Get(ctx, &final))
	require.Equal(t, 5, final.Processed)

	// The same idempotency key returns the same bulk change.
	again, out := executeSubmit(t, s, "submit-suspend-again", `{"file":"suspend.csv","idempotencyKey":"TICKET-7"}`)
	require.NotNil(t, again, out)
	require.False(t, again.Created)
	require.Equal(t, res.BulkChangeID, again.BulkChangeID)

	// Refused, each with a clear reason, and nothing written.
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "elsewhere.csv"), body, 0o600))
	require.NoError(t, os.Symlink(filepath.Join(other, "elsewhere.csv"), filepath.Join(inbox, "link.csv")))
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "bad.csv"), []byte("iccid,operation\n123,suspend\n"), 0o600))
	for _, c := range []struct{ input, reason string }{
		{`{"file":"../` + filepath.Base(other) + `/elsewhere.csv"}`, ".. is not allowed"},
		{`{"file":"` + filepath.Join(other, "elsewhere.csv") + `"}`, "not inside an inbox"},
		{`{"file":"link.csv"}`, "not inside an inbox"},
		{`{"file":"bad.csv"}`, "row 2, field iccid"},
		{`{"devices":[{"iccid":"89148000000000000011","operation":"activate","ppu_first_name":"Ada"}]}`, "may not carry PPU"},
	} {
		res, out := executeSubmit(t, s, "submit-refused", c.input)
		require.Nil(t, res, c.input)
		require.Contains(t, out, c.reason, c.input)
	}
	bulks, err := s.Store.ListBulkChanges(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, bulks, 1, "only the valid submission wrote a bulk change")
}

// A file of 200,000 rows, every ICCID bad, submitted through the submit
// workflow on the dev server fails the workflow for good with a message far
// under Temporal's 2 MB payload limit (the whole report is 8 MB): its first
// problems, the counts by field, and where the whole report was written,
// beside the file in the inbox. Nothing is written to the database.
func TestSubmitBulkChangeLargeBadFileReportIsBounded(t *testing.T) {
	inbox := t.TempDir()
	s := newStackWithWorker(t, stack.Options{
		Config: func(c *config.Config) { c.Submission.InboxDirs = []string{inbox} },
	})
	const rows = 200000
	var b strings.Builder
	b.WriteString("iccid,operation\n")
	for i := range rows {
		// 20 digits, check digit off by one: every row is a problem.
		body := fmt.Sprintf("8914800%012d", i)
		fmt.Fprintf(&b, "%s%c,suspend\n", body, '0'+(luhn.CheckDigit(body)-'0'+1)%10)
	}
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "bad.csv"), []byte(b.String()), 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cli, err := stack.TemporalCLI()
	require.NoError(t, err)
	out, err := exec.CommandContext(ctx, cli, "workflow", "execute", "--task-queue", api.TaskQueue,
		"--type", api.SubmitBulkChangeWorkflowType, "--workflow-id", "submit-200k-bad", "--input", `{"file":"bad.csv"}`,
		"--address", s.Config.Temporal.Address, "--namespace", s.Config.Temporal.Namespace).CombinedOutput()
	require.Error(t, err, "the submission fails")
	require.NoError(t, ctx.Err(), "the submission ended instead of retrying or timing out")
	msg := string(out)
	t.Logf("failure message: %d bytes", len(msg))
	require.Less(t, len(msg), 64<<10, "the failure carries a bounded report")
	require.Contains(t, msg, "bulk change file has 200000 problems (by field: iccid 200000)")
	require.Contains(t, msg, "row 2, field iccid: check digit is wrong")
	report := filepath.Join(inbox, "bad.csv.problems.txt")
	require.Contains(t, msg, "the whole report is in "+report)
	whole, err := os.ReadFile(report)
	require.NoError(t, err)
	require.Equal(t, rows, strings.Count(string(whole), "\nrow "), "every problem is in the report")
	require.Contains(t, string(whole), fmt.Sprintf("row %d, field iccid", rows+1))

	bulks, err := s.Store.ListBulkChanges(context.Background(), "", 10)
	require.NoError(t, err)
	require.Empty(t, bulks)
}
