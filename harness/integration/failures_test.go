package integration

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// waitRunning waits until a workflow exists and runs.
func waitRunning(t *testing.T, s *stack.Stack, workflowID string) {
	t.Helper()
	require.Eventually(t, func() bool {
		d, err := s.Client.DescribeWorkflow(context.Background(), workflowID, "")
		return err == nil &&
			d.RawResponse.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}, time.Minute, 100*time.Millisecond, "workflow %s running", workflowID)
}

// An operator terminates one device workflow (Web UI): the bulk change
// notices it once it has heard nothing for bulk.stall_check, records the
// device change ERROR DEVICE_WORKFLOW_ENDED, and finishes. Before, it
// waited forever.
func TestTerminatedDeviceWorkflowIsNoticed(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(3*time.Second, 0, 21),
		Config:     func(c *config.Config) { c.Bulk.StallCheck = 5 * time.Second },
	})
	devs, file := suspendFile(t, s, "8914800601", 5)
	res := submit(t, s, file)

	victim := api.DeviceChangeWorkflowID(res.ID, devs[2].ICCID)
	waitRunning(t, s, victim)
	require.NoError(t, s.Client.TerminateWorkflow(context.Background(), victim, "", "operator stopped it by hand"))

	out := waitBulk(t, s, res, 3*time.Minute)
	require.Equal(t, 4, out.Processed)
	require.Equal(t, 1, out.Errors)
	rows := results(t, s, res.ID)
	expectFinal(t, rows)
	require.EqualValues(t, change.DeviceWorkflowEnded, rows[devs[2].ICCID].ErrorCode)
	require.Contains(t, rows[devs[2].ICCID].ErrorMessage, "terminated")
	b := bulkChange(t, s, res.ID)
	require.EqualValues(t, change.BulkFinished, b.Status)
	recordHistory(t, s, res.WorkflowID, "bulkchange-child-terminated")
}

// The parent of a bulk change is terminated mid-way; the operator resumes
// it with the Temporal CLI command the README gives (what `starter
// resume-failed` runs). The new run reads where it stood from PostgreSQL:
// every device ends, none is sent twice.
func TestResumeFailedBulkChangeSendsNothingTwice(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(300*time.Millisecond, 2*time.Second, 22),
		Config:     batching(10, 8),
	})
	file, want := mixedFile(t, s, 15)
	res := submit(t, s, file)

	require.Eventually(t, func() bool {
		p, ok := progress(s, res.WorkflowID)
		return ok && p.Done() >= 20
	}, 3*time.Minute, 100*time.Millisecond)
	p, _ := progress(s, res.WorkflowID)
	require.Less(t, p.Done(), len(want), "terminated mid-way")
	require.NoError(t, s.Client.TerminateWorkflow(context.Background(), res.WorkflowID, "", "test: the parent dies"))
	t.Logf("parent terminated with %d/%d done, %d batches of %d sent", p.Done(), p.Total, p.BatchesSent, p.Batches)
	b := bulkChange(t, s, res.ID)
	require.EqualValues(t, change.BulkRunning, b.Status, "the database still says running")

	cli, err := stack.TemporalCLI()
	require.NoError(t, err)
	cmd := exec.Command(
		cli,
		"workflow",
		"start",
		"--address",
		s.Config.Temporal.Address,
		"--namespace",
		s.Config.Temporal.Namespace,
		"--task-queue",
		api.TaskQueue,
		"--type",
		api.BulkChangeWorkflowType,
		"--workflow-id",
		res.WorkflowID,
		"--id-reuse-policy",
		"AllowDuplicateFailedOnly",
		"--input",
		fmt.Sprintf(`{"bulkChangeId":%q,"recover":true}`, res.ID),
	)
	outb, err := cmd.CombinedOutput()
	require.NoError(t, err, "temporal workflow start: %s", outb)

	out := waitBulk(t, s, res, 5*time.Minute)
	wantErrors := assertOutcome(t, s, res.ID, want)
	require.Equal(t, wantErrors, out.Errors)
	require.Equal(t, len(want)-wantErrors, out.Processed)
	require.Equal(t, 1, out.Progress.Recovered)
}

// A second parent started by hand under another workflow ID is refused at
// once with a clear error instead of waiting forever for children that
// report elsewhere; the real one finishes.
func TestSecondParentUnderAnotherWorkflowIDIsRefused(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{ThingSpace: tssim.Config{Seed: 23}})
	_, file := suspendFile(t, s, "8914800602", 3)
	res := submit(t, s, file)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := s.Client.ExecuteWorkflow(
		ctx,
		client.StartWorkflowOptions{ID: "bulk-change-by-hand", TaskQueue: api.TaskQueue},
		api.BulkChangeWorkflowType,
		api.BulkChangeInput{BulkChangeID: res.ID},
	)
	require.NoError(t, err)
	err = run.Get(ctx, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "runs as workflow "+res.WorkflowID)

	out := waitBulk(t, s, res, 2*time.Minute)
	require.Equal(t, 3, out.Processed)
}

// ThingSpace is down when the bulk change starts: it waits, showing the
// retried authentication check with its last error, and carries on when
// ThingSpace is back. Only refused credentials fail a bulk change.
func TestThingSpaceOutageAtStartWaits(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{ThingSpace: tssim.Config{Seed: 24}})
	_, file := suspendFile(t, s, "8914800603", 3)
	s.TS.SetFaults(tssim.Faults{ErrorRate: 1})
	res := submit(t, s, file)

	var last string
	require.Eventually(t, func() bool {
		d, err := s.Client.DescribeWorkflow(context.Background(), res.WorkflowID, "")
		if err != nil {
			return false
		}
		for _, pa := range d.RawResponse.GetPendingActivities() {
			if pa.GetActivityType().GetName() == "CheckThingSpaceAuth" && pa.GetAttempt() >= 3 {
				last = pa.GetLastFailure().GetMessage()
				return true
			}
		}
		return false
	}, 2*time.Minute, 500*time.Millisecond, "the authentication check is retried")
	require.Contains(t, last, "HTTP 5", "the last error shows why it waits: %s", last)
	p, ok := progress(s, res.WorkflowID)
	require.True(t, ok)
	require.EqualValues(t, "checking_thingspace", p.Phase)

	s.TS.SetFaults(tssim.Faults{})
	out := waitBulk(t, s, res, 3*time.Minute)
	require.Equal(t, 3, out.Processed)
	require.Zero(t, out.Errors)
}

// A Rev.io disconnection that failed is retried by billing-retry as a
// disconnection (it used to run the service creation, fail for good and
// overwrite the error).
func TestBillingRetryRunsTheStepThatFailed(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(200*time.Millisecond, 0, 25),
		Config: func(c *config.Config) {
			c.Revio.DisconnectOnDeactivate = true
			c.Revio.RetryFor = 20 * time.Second // the failing step gives up in seconds
		},
	})
	ctx := context.Background()

	// Activate three devices with billing: three Rev.io services.
	devs := tssim.GenerateDevices(3, "8914800604", "preactive")
	require.NoError(t, s.TS.Seed(devs...))
	var rows []row
	for i, d := range devs {
		rows = append(rows, activationRow(d, i, true))
	}
	act := submit(t, s, writeCSV(t, activationColumns, rows))
	out := waitBulk(t, s, act, 3*time.Minute)
	require.Equal(t, 3, out.Processed)
	require.Len(t, s.Revio.Services(), 3)

	// Deactivate them while Rev.io refuses every call (429: each attempt
	// waits only its one-second Retry-After, so the step fails quickly).
	s.Revio.SetFaults(revsim.Faults{RateLimitRate: 1})
	var deact []row
	for _, d := range devs {
		deact = append(deact, row{"iccid": d.ICCID, "operation": "deactivate"})
	}
	res := submit(t, s, writeCSV(t, []string{"iccid", "operation"}, deact))
	out = waitBulk(t, s, res, 4*time.Minute)
	require.Equal(t, 3, out.Processed, "the deactivations stand")
	for _, r := range results(t, s, res.ID) {
		require.EqualValues(t, change.BillingError, r.BillingStatus)
	}

	s.Revio.SetFaults(revsim.Faults{})
	run, err := s.Client.ExecuteWorkflow(
		ctx,
		client.StartWorkflowOptions{ID: api.BillingRetryWorkflowID(res.ID, time.Now()),
			TaskQueue: api.TaskQueue},
		api.BillingRetryWorkflowType,
		api.BillingRetryInput{BulkChangeID: res.ID},
	)
	require.NoError(t, err)
	var retry api.BillingRetryResult
	require.NoError(t, run.Get(ctx, &retry))
	require.Equal(t, 3, retry.Disconnected)
	require.Zero(t, retry.Failed)
	for _, r := range results(t, s, res.ID) {
		require.EqualValues(t, change.BillingDisconnected, r.BillingStatus)
	}
	for _, svc := range s.Revio.Services() {
		require.NotEmpty(t, svc.DisconnectedDate, "service %d disconnected", svc.ServiceID)
	}
	require.Len(t, s.Revio.Services(), 3, "no service created by the retry")
}
