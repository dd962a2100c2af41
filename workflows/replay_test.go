package workflows_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/app"
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
			app.RegisterWorkflows(r)
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}
