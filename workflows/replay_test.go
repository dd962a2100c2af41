package workflows_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/workflows"
)

// TestReplayRecordedHistories replays histories recorded from real runs
// (the demo, exported with `temporal workflow show --output json`) against
// the current workflow code. A change to a workflow that would break
// running bulk changes fails here; such a change needs workflow.GetVersion.
// See docs/architecture.md, "Changing workflow code".
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			workflows.Register(r)
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}

// TestHistoriesCarryNoSecretsOrPPU checks the recorded histories (from the
// demo, whose file has PPU data and whose processes had secrets) for any of
// them: workflow inputs, results and signals carry ids, states and MSISDNs.
func TestHistoriesCarryNoSecretsOrPPU(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	require.NoError(t, err)
	demo, err := os.ReadFile("../harness/demo/bulk-change.csv")
	require.NoError(t, err)
	forbidden := []string{
		"sim-password",
		"sim-client-secret",
		"demo-listener-password",
		"demo-revio-password",
		"demo-revio-key",
		// The integration stack's credentials and PPU (histories recorded
		// from integration tests).
		"cb-secret-for-tests",
		"revio-secret-for-tests",
		"revio-key-for-tests",
		"Analytical Way",
		"Bletchley Park",
		"Cobol Ct",
		"Byron",
		"Turing",
		"Hopper",
	}
	lines := strings.Split(string(demo), "\n")
	header := strings.Split(lines[0], ",")
	for _, line := range lines[1:] {
		cells := strings.Split(line, ",")
		for i, col := range header {
			if strings.HasPrefix(col, "ppu_") && i < len(cells) && len(cells[i]) > 3 && col != "ppu_country" &&
				col != "ppu_state" {
				forbidden = append(forbidden, cells[i])
			}
		}
	}
	require.Greater(t, len(forbidden), 10)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, s := range forbidden {
			require.NotContains(t, string(b), s, "%s carries %q", f, s)
		}
	}
}
