package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// TestPollerStaysUnderTheSignalLimit: every device handed to polling
// signals its account's poller, and the server refuses the signals of a run
// beyond history.maximumSignalsPerExecution (10,000 by default, 50 here).
// With callbacks lost, 120 polled devices (and one more that stays pending,
// so the poller never runs out of work and stops by itself) are all
// confirmed promptly: the poller continues as new after 40 signals, and the
// devices whose signal was refused register again on the next run. A
// poller that only continued as new every 200 cycles left them waiting for
// minutes.
func TestPollerStaysUnderTheSignalLimit(t *testing.T) {
	const signalLimit, perRun, n = 50, 40, 120
	devs := tssim.GenerateDevices(n+1, "8914800071", "active")
	keeper := devs[n].ICCID
	s := newStackWithWorker(t, stack.Options{
		DevServerArgs: []string{
			"--dynamic-config-value", fmt.Sprintf("history.maximumSignalsPerExecution=%d", signalLimit),
		},
		ThingSpace: tssim.Config{
			CompletionDelay: 200 * time.Millisecond, CompletionJitter: 300 * time.Millisecond,
			CompletionDelayFor: map[string]time.Duration{keeper: 30 * time.Minute},
			Faults:             tssim.Faults{DropCallbackRate: 1},
		},
		Config: func(c *config.Config) {
			c.Bulk.CallbackTimeout = 2 * time.Second
			c.Bulk.PollInterval = time.Second
			c.Bulk.PollMaxInterval = 2 * time.Second
			c.Bulk.ConfirmDeadline = time.Hour
			c.Worker.PollerSignalsPerRun = perRun
		},
	})
	require.NoError(t, s.TS.Seed(devs...))
	rows := make([]row, len(devs))
	for i, d := range devs {
		rows[i] = row{"iccid": d.ICCID, "operation": "suspend"}
	}
	res := submit(t, s, writeCSV(t, []string{"iccid", "operation"}, rows))

	processed := func() int {
		return countRows(t, s, `SELECT count(*) FROM device_changes
			WHERE bulk_change_id = $1 AND status = 'PROCESSED' AND confirmed_by = 'poll'`, res.ID)
	}
	deadline := time.Now().Add(90 * time.Second)
	for processed() < n && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	require.Equal(t, n, processed(), "devices confirmed by polling within 90 s")
	require.Zero(t, countRows(t, s, `SELECT count(*) FROM device_changes
		WHERE bulk_change_id = $1 AND iccid = $2 AND status = 'PROCESSED'`, res.ID, keeper),
		"the device kept pending is still polled")

	// The run that took the burst continued as new on its signals (the
	// history recorded for the replay tests).
	pollerID := api.AccountPollerWorkflowID(s.Config.ThingSpace.Account)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = '%s'", pollerID), PageSize: 100,
	})
	require.NoError(t, err)
	require.Greater(t, len(list.Executions), 1, "poller runs")
	first := list.Executions[0]
	for _, e := range list.Executions {
		if e.GetStartTime().AsTime().Before(first.GetStartTime().AsTime()) {
			first = e
		}
	}
	recordHistory(t, s, pollerID, "account-poller-signal-limit", first.GetExecution().GetRunId())
}
