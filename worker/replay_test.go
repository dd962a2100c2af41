package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const historiesDir = "../workflows/testdata/histories"

// Every recorded history replays against this build.
func TestReplayRecordedHistory(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var out, errOut bytes.Buffer
	code := replay(context.Background(), []string{"--dir", historiesDir}, &out, &errOut)
	require.Equal(t, 0, code, "%s%s", out.String(), errOut.String())
	require.Equal(t, len(files), countLines(out.String(), "OK: "), out.String())
	for _, f := range files {
		require.Contains(t, out.String(), "OK: "+f+" replays against this build\n")
	}
}

// A history that the current code would not produce (as if the workflow
// had been changed without a version) is reported, with a non-zero exit.
func TestReplayReportsNondeterminism(t *testing.T) {
	path := writeChangedHistory(t, t.TempDir(), "changed.json")

	var out, errOut bytes.Buffer
	code := replay(context.Background(), []string{"--file", path}, &out, &errOut)
	require.Equal(t, 3, code, out.String())
	require.Contains(t, out.String(), "NONDETERMINISM")
	require.Contains(t, out.String(), "CreateBillingService")
}

func TestReplayNeedsOneSource(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 2, replay(context.Background(), nil, &out, &errOut))
	require.Contains(t, errOut.String(), "--workflow-id")
}

// --dir goes on past a changed history, so that one run names every history
// a change breaks, and still fails.
func TestReplayDirReportsNondeterminism(t *testing.T) {
	dir := t.TempDir()
	// "a-" sorts the changed history first.
	changed := writeChangedHistory(t, dir, "a-changed.json")
	good, err := os.ReadFile(filepath.Join(historiesDir, "bulkchange.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b-good.json"), good, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a history"), 0o600))

	var out, errOut bytes.Buffer
	code := replay(context.Background(), []string{"--dir", dir}, &out, &errOut)
	require.Equal(t, 3, code, "%s%s", out.String(), errOut.String())
	require.Contains(t, out.String(), "NONDETERMINISM in "+changed+" against this build")
	require.Contains(t, out.String(), "CreateBillingService")
	require.Contains(t, out.String(), "OK: "+filepath.Join(dir, "b-good.json")+" replays against this build")
	require.Equal(t, 1, countLines(out.String(), "OK: "), out.String())
	require.NotContains(t, out.String(), "notes.txt")
}

// A folder without histories is a mistake, not a pass: nothing was checked.
func TestReplayDirWithoutHistories(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a history"), 0o600))
	var out, errOut bytes.Buffer
	require.Equal(t, 2, replay(context.Background(), []string{"--dir", dir}, &out, &errOut), out.String())
	require.Contains(t, errOut.String(), "--dir "+dir)
	require.Contains(t, errOut.String(), "*.json")
	require.Empty(t, out.String())
}

// writeChangedHistory writes, as dir/name, a recorded history that the
// current code would not produce (as if the workflow had been changed
// without a version), and returns its path.
func writeChangedHistory(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(historiesDir, "activate-callback-billing.json"))
	require.NoError(t, err)
	changed := strings.Replace(string(b), `"name": "CreateBillingService"`, `"name": "CreateInvoice"`, 1)
	require.NotEqual(t, string(b), changed, "the history schedules CreateBillingService")
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(changed), 0o600))
	return path
}

// countLines counts the lines of s that start with prefix.
func countLines(s, prefix string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func TestReplayTakesOneSourceOnly(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"--file", "history.json", "--dir", historiesDir}
	require.Equal(t, 2, replay(context.Background(), args, &out, &errOut))
	require.Contains(t, errOut.String(), "--dir DIR")
	require.Empty(t, out.String())
}

// A file that is not a history is an error reading it (exit 1), not a
// finding about the workflow code (3), with --file as with --dir.
func TestReplayFileThatIsNotAHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.json")
	require.NoError(t, os.WriteFile(path, []byte("not a history"), 0o600))
	var out, errOut bytes.Buffer
	require.Equal(t, 1, replay(context.Background(), []string{"--file", path}, &out, &errOut))
	require.Contains(t, errOut.String(), path)
	require.Empty(t, out.String())
}
