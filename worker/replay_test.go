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

// Every recorded history replays against this build.
func TestReplayRecordedHistory(t *testing.T) {
	files, err := filepath.Glob("../workflows/testdata/histories/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		var out, errOut bytes.Buffer
		require.Equal(
			t,
			0,
			replay(context.Background(), []string{"--file", f}, &out, &errOut),
			"%s: %s%s",
			f,
			out.String(),
			errOut.String(),
		)
		require.Contains(t, out.String(), "OK: ")
	}
}

// A history that the current code would not produce (as if the workflow
// had been changed without a version) is reported, with a non-zero exit.
func TestReplayReportsNondeterminism(t *testing.T) {
	b, err := os.ReadFile("../workflows/testdata/histories/activate-callback-billing.json")
	require.NoError(t, err)
	changed := strings.Replace(string(b), `"name": "CreateBillingService"`, `"name": "CreateInvoice"`, 1)
	require.NotEqual(t, string(b), changed, "the history schedules CreateBillingService")
	path := filepath.Join(t.TempDir(), "changed.json")
	require.NoError(t, os.WriteFile(path, []byte(changed), 0o600))

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
