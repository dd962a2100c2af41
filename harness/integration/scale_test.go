package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Lowered server limits: the history size at which the server suggests
// continue-as-new, the size at which it terminates a run, and the pending
// children per workflow. A bulk change of any size must stay far inside
// them; with these values a run that grew with the number of devices
// (instead of continuing as new) would be terminated here.
const (
	suggestCANAt      = 300
	historyErrorAt    = 2000
	pendingChildLimit = 40
)

// TestHistoryAndChildrenStayBounded runs 800 devices with the server's
// limits lowered as docs/architecture.md describes. The parent continues as
// new when the server suggests it (StartsPerRun is set out of the way), the
// window stays under the pending-children limit, and no run of any
// workflow comes near the lowered history limit: the cost per run does not
// grow with the bulk change, so 100,000 devices are as safe as 800.
func TestHistoryAndChildrenStayBounded(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		DevServerArgs: []string{
			"--dynamic-config-value", fmt.Sprintf("limit.historyCount.suggestContinueAsNew=%d", suggestCANAt),
			"--dynamic-config-value", fmt.Sprintf("limit.historyCount.error=%d", historyErrorAt),
			"--dynamic-config-value", fmt.Sprintf("limit.numPendingChildExecutions.error=%d", pendingChildLimit),
		},
		ThingSpace: tssim.Config{CompletionDelay: 100 * time.Millisecond, CompletionJitter: 400 * time.Millisecond,
			CallbackRetryInterval: 300 * time.Millisecond},
		Config: func(c *config.Config) {
			c.Bulk.Window = pendingChildLimit - 10
			c.Bulk.StartsPerRun = 100000 // only the server's suggestion triggers continue-as-new
			c.Bulk.BatchSize = 200
		},
	})
	_, file := suspendFile(t, s, "8914800030", 800)
	res := submit(t, s, file)

	out := waitBulk(t, s, res, 15*time.Minute)

	require.Equal(t, 800, out.Processed)
	require.Greater(t, out.Progress.Runs, 2, "the parent continued as new when the server suggested it")
	parentMax, childMax, runs := historyLengths(t, s)
	require.Less(t, parentMax, int64(historyErrorAt/2), "longest parent run")
	require.Less(t, childMax, int64(100), "longest device workflow")
	t.Logf(
		"FIGURES scale: 800 devices, %d parent runs, longest parent run %d events, longest device workflow %d events (%d runs listed)",
		out.Progress.Runs,
		parentMax,
		childMax,
		runs,
	)
}

// historyLengths returns the longest history of a BulkChange run and of a
// DeviceChange run, from the server's visibility records.
func historyLengths(t *testing.T, s *stack.Stack) (parentMax, childMax int64, runs int) {
	t.Helper()
	ctx := context.Background()
	var token []byte
	for {
		resp, err := s.Client.ListWorkflow(
			ctx,
			&workflowservice.ListWorkflowExecutionsRequest{PageSize: 1000, NextPageToken: token},
		)
		require.NoError(t, err)
		for _, w := range resp.GetExecutions() {
			runs++
			n := w.GetHistoryLength()
			switch w.GetType().GetName() {
			case "BulkChange":
				parentMax = max(parentMax, n)
			case "DeviceChange":
				childMax = max(childMax, n)
			}
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return parentMax, childMax, runs
		}
	}
}

// A device workflow started by the current parent (protocol 1) records no
// version marker and, when its parent already read ThingSpace's answer, no
// read of its device change either: a suspend whose callback was stored
// before its workflow started costs 11 events, one that waits for its
// callback 17 (docs/benchmarks.md has the breakdown). With a window of 4,
// the first children wait for their callbacks and the later ones find them
// stored.
func TestDeviceWorkflowEventsPerSuspend(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(300*time.Millisecond, 300*time.Millisecond, 77),
		Config:     func(c *config.Config) { c.Bulk.Window = 4 },
	})
	devs, file := suspendFile(t, s, "8914800701", 12)
	res := submit(t, s, file)
	out := waitBulk(t, s, res, 3*time.Minute)
	require.Equal(t, 12, out.Processed)

	var waited, stored string
	for _, d := range devs {
		id := api.DeviceChangeWorkflowID(res.ID, d.ICCID)
		counts := map[enumspb.EventType]int{}
		markers := 0
		events := history(t, s, id)
		n := len(events)
		for _, e := range events {
			counts[e.GetEventType()]++
			if m := e.GetMarkerRecordedEventAttributes(); m != nil {
				require.Equal(t, "LocalActivity", m.GetMarkerName(), "%s: no version marker", id)
				markers++
			}
		}
		require.Zero(t, counts[enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES], id)
		switch {
		case counts[enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED] == 0 && markers == 1:
			// The answer came in the input: only the outcome is recorded.
			require.Equal(t, 11, n, id)
			stored = id
		case counts[enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED] == 0:
			// The callback was stored between the parent's read and the
			// child's start: the child read its change, and found it.
			require.Equal(t, 2, markers, "%s: the read and the outcome", id)
			require.LessOrEqual(t, n, 13, id)
		default:
			require.LessOrEqual(t, n, 17, id)
			waited = id
		}
	}
	require.NotEmpty(t, stored, "some children found their callback stored")
	require.NotEmpty(t, waited, "some children waited for their callback")
	recordHistory(t, s, stored, "suspend-answer-in-input")
	recordHistory(t, s, waited, "suspend-callback-awaited")
	recordHistory(t, s, res.WorkflowID, "bulkchange-protocol1")
	// The parent that goes on while its children's starts are confirmed
	// (version start-without-waiting).
	recordHistory(t, s, res.WorkflowID, "bulkchange-start-without-waiting")
}
