package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/localstack"
	tssim "github.com/iot-ops/tsbulk/thingspace/simulator"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// A device workflow started by the current parent (protocol 1) records no
// version marker and, when its parent already read ThingSpace's answer, no
// read of its device change either: a suspend whose callback was stored
// before its workflow started costs 11 events, one that waits for its
// callback 17 (docs/benchmarks.md has the breakdown). With a window of 4,
// the first children wait for their callbacks and the later ones find them
// stored.
func TestDeviceWorkflowEventsPerSuspend(t *testing.T) {
	s := newStack(t, localstack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 300 * time.Millisecond, CompletionJitter: 300 * time.Millisecond,
			CallbackRetryInterval: 500 * time.Millisecond, Seed: 77},
		Config: func(c *config.Config) { c.Bulk.Window = 4 },
	})
	_, err := s.StartWorker()
	require.NoError(t, err)
	devs, file := suspendFile(t, s, "8914800701", 12)
	res := submit(t, s, file)
	out := waitBulk(t, s, res, 3*time.Minute)
	require.Equal(t, 12, out.Processed)

	ctx := context.Background()
	var waited, stored string
	for _, d := range devs {
		id := api.DeviceChangeWorkflowID(res.ID, d.ICCID)
		counts := map[enumspb.EventType]int{}
		markers := 0
		it := s.Client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		n := 0
		for it.HasNext() {
			e, err := it.Next()
			require.NoError(t, err)
			n++
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
