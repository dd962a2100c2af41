package activities_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// submitFrom runs SubmitFile on a file of the inbox, failing the test if
// it does not return within a few seconds (a FIFO must not hang it).
func submitFrom(t *testing.T, h *harness, inbox, file string) error {
	t.Helper()
	h.acts.Submissions = activities.SubmissionSettings{InboxDirs: []string{inbox}, Account: "0000123456-00001",
		BatchSize: 100, MaxFileBytes: 1 << 20}
	done := make(chan error, 1)
	go func() {
		_, err := h.env.ExecuteActivity(h.acts.SubmitFile, activities.SubmitFileInput{
			Input: api.SubmitInput{File: file, DefaultOperation: "suspend"}, WorkflowID: "submit-" + file, RunID: "r1"})
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: SubmitFile hangs", file)
		return nil
	}
}

// What the inbox holds besides regular files inside it (a directory, a
// FIFO, a link out, a file over the size bound, a line over the length
// bound) is refused at once, for good, with a message saying why, and
// nothing is written.
func TestSubmitFileRefusesWhatIsNotABulkChangeFile(t *testing.T) {
	h := newHarness(t)
	inbox, other := t.TempDir(), t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(inbox, "dir.csv"), 0o700))
	require.NoError(t, syscall.Mkfifo(filepath.Join(inbox, "fifo.csv"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(other, "secret.csv"), []byte("iccid\n"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(other, "secret.csv"), filepath.Join(inbox, "link.csv")))
	big := "iccid\n" + strings.Repeat("89148000001234567898\n", 60000)
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "big.csv"), []byte(big), 0o600))
	long := "iccid,service_plan\n89148000001234567898," + strings.Repeat("x", 70<<10) + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "long.csv"), []byte(long), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "devices.xlsx"), []byte("PK"), 0o600))

	for file, reason := range map[string]string{
		"dir.csv":      "is a directory",
		"fifo.csv":     "is a named pipe (FIFO)",
		"link.csv":     "not inside an inbox",
		"big.csv":      "the file is larger than 1048576 bytes",
		"long.csv":     "row 2: the line is longer than 65536 bytes",
		"devices.xlsx": "unsupported file type",
	} {
		err := submitFrom(t, h, inbox, file)
		ae := appError(t, err)
		require.True(t, ae.NonRetryable(), "%s: refused for good, not retried: %v", file, err)
		require.ErrorContains(t, err, reason, file)
	}
	bulks, err := h.store.ListBulkChanges(ctx(t), "", 10)
	require.NoError(t, err)
	require.Empty(t, bulks)
}

// A file with more problems than a failure message should carry fails with
// the first of them, their counts by field and where the whole report was
// written: beside the file, in the inbox.
func TestSubmitFileReportBesideTheFile(t *testing.T) {
	h := newHarness(t)
	inbox := t.TempDir()
	var b strings.Builder
	b.WriteString("iccid\n")
	for i := range 120 {
		fmt.Fprintf(&b, "8914800000%010d\n", i) // no valid check digit on most
	}
	b.WriteString("89148000001234567898\n89148000001234567898\n")
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "bad.csv"), []byte(b.String()), 0o600))
	h.acts.Submissions = activities.SubmissionSettings{InboxDirs: []string{inbox}, Account: "0000123456-00001",
		BatchSize: 100}
	_, err := h.env.ExecuteActivity(h.acts.SubmitFile, activities.SubmitFileInput{
		Input: api.SubmitInput{File: "bad.csv", DefaultOperation: "suspend"}, WorkflowID: "submit-bad", RunID: "r1"})
	ae := appError(t, err)
	require.True(t, ae.NonRetryable())
	msg := err.Error()
	require.Contains(t, msg, "row 2, field iccid")
	require.Contains(t, msg, "the first 50:")
	report := filepath.Join(inbox, "bad.csv.problems.txt")
	require.Contains(t, msg, "the whole report is in "+report)
	require.NotContains(t, msg, "row 123,", "the last problems are only in the report")
	whole, err := os.ReadFile(report)
	require.NoError(t, err)
	require.Contains(t, string(whole), "row 123, field iccid: ICCID 89148000001234567898 is already on row 122")
	require.Equal(t, countProblems(t, msg), strings.Count(string(whole), "\nrow "), "every problem is in the report")
}

// countProblems reads the total out of "has N problems".
func countProblems(t *testing.T, msg string) int {
	t.Helper()
	var n int
	i := strings.Index(msg, "bulk change file has ")
	require.GreaterOrEqual(t, i, 0, msg)
	_, err := fmt.Sscanf(msg[i:], "bulk change file has %d problems", &n)
	require.NoError(t, err)
	return n
}
