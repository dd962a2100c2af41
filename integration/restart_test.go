package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/stack"
	tssim "github.com/iot-ops/tsbulk/thingspace/simulator"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// TestWorkerKilledMidBulkChange kills the worker process (SIGKILL) in the
// middle of a bulk change, starts a new one, and expects the same outcome
// as an undisturbed run: every device in its final state and exactly one
// state-change request per device change at ThingSpace.
func TestWorkerKilledMidBulkChange(t *testing.T) {
	s := newStack(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: time.Second, CompletionJitter: 3 * time.Second,
			CallbackRetryInterval: 500 * time.Millisecond, Seed: 7},
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
	s := newStack(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 200 * time.Millisecond, CallbackRetryInterval: 500 * time.Millisecond, Seed: 11,
			Faults: tssim.Faults{TimeoutRate: 0.35, StallFor: 6 * time.Second}},
		Config: func(c *config.Config) {
			c.ThingSpace.HTTPTimeout = 2 * time.Second
			c.Bulk.BatchSize = 10
		},
	})
	_, err := s.StartWorker()
	require.NoError(t, err)
	file, want := mixedFile(t, s, 40)

	res := submit(t, s, file)
	out := waitBulk(t, s, res, 10*time.Minute)

	wantErrors := assertOutcome(t, s, res.ID, want)
	require.Equal(t, wantErrors, out.Errors)
	var reconciled int
	require.NoError(t, s.Store.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM thingspace_requests WHERE bulk_change_id = $1 AND error_code = 'RECONCILED'`, res.ID).Scan(&reconciled))
	require.Greater(t, reconciled, 0, "some answers were lost and reconciled")
	t.Logf("%d of %d requests had their answer lost and were reconciled", reconciled, len(want)/10)
}

func progress(s *stack.Stack, workflowID string) (api.Progress, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := s.Client.QueryWorkflow(ctx, workflowID, "", api.ProgressQuery)
	if err != nil {
		return api.Progress{}, false
	}
	var p api.Progress
	return p, v.Get(&p) == nil
}
