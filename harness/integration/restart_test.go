package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// TestWorkerKilledMidBulkChange kills the worker process (SIGKILL) in the
// middle of a bulk change, starts a new one, and expects the same outcome
// as an undisturbed run: every device in its final state and exactly one
// state-change request per device change at ThingSpace.
func TestWorkerKilledMidBulkChange(t *testing.T) {
	s := newStack(t, stack.Options{
		ThingSpace: simConfig(time.Second, 3*time.Second, 7),
		Config: func(c *config.Config) {
			c.Bulk.BatchSize = 25
			c.Bulk.Window = 60
			c.Bulk.StartsPerRun = 80 // several continue-as-new runs, so the kill may land near one
		},
	})
	file, want := mixedFile(t, s, 100)
	w1 := startWorkerProcess(t, s)
	res := submit(t, s, file)

	// Kill once a good part, but not all, of the bulk change is done.
	require.Eventually(t, func() bool {
		p, ok := progress(s, res.WorkflowID)
		return ok && p.Done() >= 120
	}, 5*time.Minute, 200*time.Millisecond, "progress before the kill; worker log:\n%s", w1.log)
	p, _ := progress(s, res.WorkflowID)
	require.Less(t, p.Done(), len(want), "the kill must land mid-way")
	w1.kill()
	t.Logf("worker killed with %d/%d device changes done, %d in flight", p.Done(), p.Total, p.InFlight)

	time.Sleep(3 * time.Second) // callbacks keep arriving (the receiver runs apart) while no worker runs
	w2 := startWorkerProcess(t, s)
	out := waitBulk(t, s, res, 10*time.Minute)
	_ = w2

	wantErrors := assertOutcome(t, s, res.ID, want)
	require.Equal(t, wantErrors, out.Errors)
	require.Equal(t, len(want)-wantErrors, out.Processed)
}

// TestLostAnswersAreReconciledNotResent makes ThingSpace apply a third of
// the state-change requests but answer them only after the client gave up
// (the outcome is unknown to the worker). The retried activity checks the
// devices at ThingSpace and sends nothing twice.
func TestLostAnswersAreReconciledNotResent(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{
			CompletionDelay:       200 * time.Millisecond,
			CallbackRetryInterval: 500 * time.Millisecond,
			Seed:                  11,
			Faults:                tssim.Faults{TimeoutRate: 0.35, StallFor: 6 * time.Second},
		},
		Config: func(c *config.Config) {
			c.ThingSpace.HTTPTimeout = 2 * time.Second
			c.Bulk.BatchSize = 10
		},
	})
	file, want := mixedFile(t, s, 40)

	res := submit(t, s, file)
	out := waitBulk(t, s, res, 10*time.Minute)

	wantErrors := assertOutcome(t, s, res.ID, want)
	require.Equal(t, wantErrors, out.Errors)
	reconciled := countRows(t, s,
		`SELECT count(*) FROM thingspace_requests WHERE bulk_change_id = $1 AND error_code = 'RECONCILED'`, res.ID)
	require.Greater(t, reconciled, 0, "some answers were lost and reconciled")
	t.Logf("%d of %d requests had their answer lost and were reconciled", reconciled, len(want)/10)
}

// TestWorkerKilledDuringACallIsNoticedByHeartbeat kills the worker while a
// batch's state-change request waits for ThingSpace's answer. The call
// heartbeats (activities.KeepAlive), so Temporal gives it to the next
// worker when the heartbeat times out, not when its three-minute
// start-to-close timeout does; the retry finds the changes applied and
// sends nothing twice.
func TestWorkerKilledDuringACallIsNoticedByHeartbeat(t *testing.T) {
	s := newStack(t, stack.Options{
		ThingSpace: tssim.Config{
			CompletionDelay:       200 * time.Millisecond,
			CallbackRetryInterval: 500 * time.Millisecond,
			// Every state change applied, its answer held for 90 s.
			Faults: tssim.Faults{TimeoutRate: 1, StallFor: 90 * time.Second},
		},
		Config: func(c *config.Config) { c.ThingSpace.HTTPTimeout = 2 * time.Minute },
	})
	devs, file := suspendFile(t, s, "8914800000000077", 5)
	w1 := startWorkerProcess(t, s)
	res := submit(t, s, file)

	// The batch is in flight and has heartbeated.
	ctx := context.Background()
	require.Eventually(t, func() bool {
		d, err := s.Client.DescribeWorkflow(ctx, res.WorkflowID, "")
		if err != nil {
			return false
		}
		for _, a := range d.RawResponse.GetPendingActivities() {
			if a.GetActivityType().GetName() == activities.SendBatchActivity && a.GetLastHeartbeatTime() != nil {
				return true
			}
		}
		return false
	}, 3*time.Minute, 500*time.Millisecond, "SendBatch in flight with a heartbeat; worker log:\n%s", w1.log)
	w1.kill()
	s.TS.SetFaults(tssim.Faults{})
	startWorkerProcess(t, s)
	out := waitBulk(t, s, res, 5*time.Minute)
	require.Equal(t, len(devs), out.Processed)

	// The attempt that completed the batch was started after the killed
	// worker's attempt timed out by its heartbeat (retries leave no event of
	// their own: the started event carries the previous attempt's failure).
	var retriedAfter []enumspb.TimeoutType
	for _, ev := range history(t, s, res.WorkflowID) {
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && a.GetAttempt() > 1 {
			retriedAfter = append(retriedAfter, a.GetLastFailure().GetTimeoutFailureInfo().GetTimeoutType())
		}
	}
	require.Equal(t, []enumspb.TimeoutType{enumspb.TIMEOUT_TYPE_HEARTBEAT}, retriedAfter,
		"one call retried, after the killed worker's attempt timed out by its heartbeat")
	st := s.TS.Stats(0)
	for _, d := range devs {
		require.Equal(t, 1, changesSent(st, d.ICCID), "state changes sent for %s", d.ICCID)
		require.Equal(t, "suspend", simState(t, s, d.ICCID).State)
	}
}
