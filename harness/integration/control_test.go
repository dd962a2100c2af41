package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// stateChangeRequests counts the state-change requests ThingSpace saw.
func stateChangeRequests(s *stack.Stack) int {
	st := s.TS.Stats(time.Hour)
	n := 0
	for _, action := range []string{"activate", "suspend", "restore", "deactivate", "add"} {
		n += st.Requests["POST /api/m2m/v1/devices/actions/"+action]
	}
	return n
}

var updateTimeout = 2 * time.Minute

// operatorUpdate sends an operator's request as `starter` does; it returns
// the bulk change's answer or the validator's refusal.
func operatorUpdate(
	t *testing.T,
	s *stack.Stack,
	workflowID, name string,
	req api.OperatorRequest,
) (api.OperatorResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), updateTimeout)
	defer cancel()
	h, err := s.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: workflowID, UpdateName: name,
		Args: []any{req}, WaitForStage: client.WorkflowUpdateStageCompleted})
	var res api.OperatorResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	return res, err
}

// acceptedUpdate sends an operator's request the bulk change must accept.
func acceptedUpdate(
	t *testing.T,
	s *stack.Stack,
	workflowID, name string,
	req api.OperatorRequest,
) api.OperatorResult {
	t.Helper()
	res, err := operatorUpdate(t, s, workflowID, name, req)
	require.NoError(t, err)
	return res
}

// Paused in the middle of 2,000 devices: ThingSpace sees no state-change
// request until it is resumed, also across a worker restart while paused;
// after the resume every device ends as it would have, each sent once.
func TestPauseResumeMidBulkChange(t *testing.T) {
	s := newStack(t, stack.Options{
		ThingSpace: simConfig(200*time.Millisecond, time.Second, 41),
		Config:     batching(100, 200),
	})
	w := startWorkerProcess(t, s)
	devs, file := suspendFile(t, s, "8914800801", 2000)
	res := submit(t, s, file)

	awaitProgress(t, s, res.WorkflowID, func(p api.Progress) bool { return p.BatchesSent >= 3 })
	paused := acceptedUpdate(t, s, res.WorkflowID, api.PauseUpdate,
		api.OperatorRequest{By: "alice", Reason: "checking the file"})
	require.Equal(t, change.BulkPaused, paused.Status)
	sentAtPause := stateChangeRequests(s)
	p, _ := progress(s, res.WorkflowID)
	require.Less(t, p.BatchesSent, p.Batches, "paused mid-way")
	t.Logf("paused with %d of %d batches sent, %d/%d done", p.BatchesSent, p.Batches, p.Done(), p.Total)

	time.Sleep(5 * time.Second)
	w.kill()
	w = startWorkerProcess(t, s)
	time.Sleep(5 * time.Second)
	require.Equal(t, sentAtPause, stateChangeRequests(s), "no state change sent while paused")
	_, err := operatorUpdate(t, s, res.WorkflowID, api.PauseUpdate, api.OperatorRequest{By: "bob"})
	require.ErrorContains(t, err, "already paused (by alice")
	// A mistyped request names the ones there are, and changes nothing.
	_, err = operatorUpdate(t, s, res.WorkflowID, "resum", api.OperatorRequest{By: "bob"})
	require.ErrorContains(t, err, "unknown update resum")
	require.ErrorContains(t, err, api.ResumeUpdate)
	b := bulkChange(t, s, res.ID)
	require.EqualValues(t, change.BulkPaused, b.Status)

	acceptedUpdate(t, s, res.WorkflowID, api.ResumeUpdate, api.OperatorRequest{By: "alice", Reason: "file is fine"})
	out := waitBulk(t, s, res, 10*time.Minute)
	require.Equal(t, 2000, out.Processed)
	st := s.TS.Stats(time.Hour)
	for _, d := range devs {
		require.Equal(t, 1, changesSent(st, d.ICCID), "sent once: %s", d.ICCID)
	}
	audited := countRows(t, s, `SELECT count(*) FROM m2m_log WHERE bulk_change_id = $1
		AND service = 'operator' AND operation IN ('pause', 'resume')`, res.ID)
	require.Equal(t, 2, audited, "who paused and resumed, and why, is in the audit log")
	_ = w
}

// Cancelled mid-way: no device is left in flight, CANCELLED and finished
// add up to the total, and ThingSpace sees no request after the cancel.
func TestCancelMidBulkChange(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(300*time.Millisecond, time.Second, 42),
		Config:     batching(50, 50),
	})
	_, file := suspendFile(t, s, "8914800802", 600)
	res := submit(t, s, file)

	awaitProgress(t, s, res.WorkflowID, func(p api.Progress) bool { return p.BatchesSent >= 2 })
	// Through the raw temporal CLI, as an operator without the starter.
	cliOut, err := temporalCLI(t, s, "workflow", "update", "execute", "--workflow-id", res.WorkflowID,
		"--name", api.CancelUpdate, "--input", `{"by":"alice","reason":"wrong customer"}`, "--output", "json")
	require.NoError(t, err, cliOut)
	var cancelled struct {
		Result api.OperatorResult `json:"result"`
	}
	require.NoError(t, json.Unmarshal([]byte(cliOut[strings.Index(cliOut, "{"):]), &cancelled), cliOut)
	require.Equal(t, change.BulkCancelled, cancelled.Result.Status, cliOut)
	sentAtCancel := stateChangeRequests(s)

	out := waitBulk(t, s, res, 5*time.Minute)
	require.Equal(t, change.BulkCancelled, out.Status)
	require.Equal(t, sentAtCancel, stateChangeRequests(s), "nothing sent after the cancel")
	require.Greater(t, out.Cancelled, 0)
	require.Equal(t, 600, out.Processed+out.Errors+out.Cancelled)
	counts, err := s.Store.CountStatuses(context.Background(), res.ID)
	require.NoError(t, err)
	require.Zero(
		t,
		counts.ByStatus[change.Sending]+counts.ByStatus[change.Pending]+counts.ByStatus[change.Sent],
		"nothing left in flight",
	)
	require.Equal(t, out.Cancelled, counts.ByStatus[change.Cancelled])
	b := bulkChange(t, s, res.ID)
	require.EqualValues(t, change.BulkCancelled, b.Status)
	require.Equal(t, out.Cancelled, b.Cancelled)

	_, err = operatorUpdate(t, s, res.WorkflowID, api.PauseUpdate, api.OperatorRequest{By: "bob"})
	require.Error(t, err, "a finished bulk change takes no request")
	cliOut, err = temporalCLI(t, s, "workflow", "update", "execute", "--workflow-id", res.WorkflowID,
		"--name", api.CancelUpdate, "--input", `{"by":"bob"}`)
	require.Error(t, err, "cancel twice, through the CLI: %s", cliOut)
}

// A re-drive sends only the failed lines (of the codes asked); asking again
// returns the same bulk change.
func TestRedriveFailedLines(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(200*time.Millisecond, 0, 43),
	})
	ctx := context.Background()
	ok := tssim.GenerateDevices(10, "8914800803", "active")
	notFound := tssim.GenerateDevices(3, "8914800804", "active")
	for i := range notFound {
		notFound[i].FailWith = "UnifiedWebService.REQUEST_FAILED.DeviceNotFound"
	}
	wrongState := tssim.GenerateDevices(2, "8914800805", "suspend") // a suspend of a suspended device fails
	require.NoError(t, s.TS.Seed(append(append(ok, notFound...), wrongState...)...))
	var rows []row
	for _, d := range append(append(ok, notFound...), wrongState...) {
		rows = append(rows, row{"iccid": d.ICCID, "operation": "suspend"})
	}
	res := submit(t, s, writeCSV(t, []string{"iccid", "operation"}, rows))
	out := waitBulk(t, s, res, 3*time.Minute)
	require.Equal(t, 10, out.Processed)
	require.Equal(t, 5, out.Errors)
	before := s.TS.Stats(time.Hour)

	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	req := submission.RedriveRequest{
		Original:             res.ID,
		Codes:                []string{"REQUEST_FAILED.DeviceNotFound"},
		SubmittedBy:          "alice",
		BatchSize:            100,
		Options:              options(s),
		ActionsPerLinePerDay: 5,
	}
	re, err := sub.Redrive(ctx, req)
	require.NoError(t, err)
	require.True(t, re.Created)
	require.Equal(t, 3, re.BulkChange.Total, "only the lines that failed with that code")
	reOut := waitBulk(t, s, re, 3*time.Minute)
	require.Equal(t, 3, reOut.Errors, "ThingSpace still does not know them")
	after := s.TS.Stats(time.Hour)
	for _, d := range notFound {
		require.Equal(t, changesSent(before, d.ICCID)+1, changesSent(after, d.ICCID), "re-driven: %s", d.ICCID)
	}
	for _, d := range append(ok, wrongState...) {
		require.Equal(t, changesSent(before, d.ICCID), changesSent(after, d.ICCID), "not re-driven: %s", d.ICCID)
	}

	again, err := sub.Redrive(ctx, req)
	require.NoError(t, err)
	require.False(t, again.Created)
	require.Equal(t, re.ID, again.ID)
	redrives, err := s.Store.Redrives(ctx, res.ID)
	require.NoError(t, err)
	require.Len(t, redrives, 1, "linked from the original")
	require.Equal(t, res.ID, re.BulkChange.RedriveOf, "and back")
}

// Scheduled: nothing is sent before its time, then it runs; cancelled while
// it waits, nothing is ever sent.
func TestScheduledBulkChange(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 200 * time.Millisecond, Seed: 44},
	})
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	schedule := func(prefix string, at time.Time) *submission.Result {
		_, file := suspendFile(t, s, prefix, 5)
		opts := options(s)
		opts.NotBefore = at
		res, err := sub.Submit(
			context.Background(),
			submission.Request{File: file, Account: s.Config.ThingSpace.Account,
				BatchSize: 100, Options: opts},
		)
		require.NoError(t, err)
		return res
	}

	later := schedule("8914800806", time.Now().Add(15*time.Second))
	never := schedule("8914800807", time.Now().Add(time.Hour))
	waitForStatus(t, s, never.ID, change.BulkScheduled)
	_, err := operatorUpdate(t, s, never.WorkflowID, api.PauseUpdate, api.OperatorRequest{By: "alice"})
	require.ErrorContains(t, err, "has not started (SCHEDULED)")
	acceptedUpdate(t, s, never.WorkflowID, api.CancelUpdate, api.OperatorRequest{By: "alice", Reason: "not this week"})
	outNever := waitBulk(t, s, never, time.Minute)
	require.Equal(t, change.BulkCancelled, outNever.Status)
	require.Equal(t, 5, outNever.Cancelled)
	recordHistory(t, s, never.WorkflowID, "bulkchange-scheduled-cancelled")

	time.Sleep(time.Until(later.BulkChange.CreatedAt.Add(10 * time.Second)))
	require.Zero(t, stateChangeRequests(s), "nothing sent before the start time")
	out := waitBulk(t, s, later, 2*time.Minute)
	require.Equal(t, 5, out.Processed)
	require.Equal(t, 1, stateChangeRequests(s), "one request carried the 5 devices, after the start time")
}

// Four eyes: a bulk change with deactivations waits for another operator's
// approval; the submitter's own is refused; nothing is sent before; an
// approval that does not come in time cancels it.
func TestApprovalBeforeDeactivation(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 200 * time.Millisecond, Seed: 45},
	})
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	deactivations := func(prefix string, expires time.Duration) *submission.Result {
		devs := tssim.GenerateDevices(4, prefix, "active")
		require.NoError(t, s.TS.Seed(devs...))
		var rows []row
		for _, d := range devs {
			rows = append(rows, row{"iccid": d.ICCID, "operation": "deactivate"})
		}
		res, err := sub.Submit(
			context.Background(),
			submission.Request{File: writeCSV(t, []string{"iccid", "operation"}, rows),
				Account: s.Config.ThingSpace.Account, BatchSize: 100, Options: options(s), SubmittedBy: "alice",
				Approval: submission.NewApprovalRule([]string{"deactivate"}, 1, expires)},
		)
		require.NoError(t, err)
		return res
	}

	res := deactivations("8914800808", time.Hour)
	waitForStatus(t, s, res.ID, change.BulkAwaitingApproval)
	_, err := operatorUpdate(t, s, res.WorkflowID, api.ApproveUpdate, api.OperatorRequest{By: "alice"})
	require.ErrorContains(t, err, "alice submitted this bulk change")
	time.Sleep(2 * time.Second)
	require.Zero(t, stateChangeRequests(s), "nothing sent before the approval")
	acceptedUpdate(t, s, res.WorkflowID, api.ApproveUpdate, api.OperatorRequest{By: "bob", Reason: "ticket 42"})
	out := waitBulk(t, s, res, 2*time.Minute)
	require.Equal(t, 4, out.Processed)
	b := bulkChange(t, s, res.ID)
	require.Equal(t, "bob", b.ApprovedBy)
	recordHistory(t, s, res.WorkflowID, "bulkchange-approved")

	expired := deactivations("8914800809", 3*time.Second)
	outExpired := waitBulk(t, s, expired, time.Minute)
	require.Equal(t, change.BulkCancelled, outExpired.Status)
	require.Equal(t, 4, outExpired.Cancelled)
	require.Equal(t, 1, stateChangeRequests(s), "only the approved bulk change's request")
}

// The search attributes let an operator find every change of one device
// across bulk changes, and bulk changes by status and account.
func TestSearchByICCIDAndStatus(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 200 * time.Millisecond, Seed: 46},
	})
	dev := tssim.GenerateDevices(1, "8914800810", "active")[0]
	require.NoError(t, s.TS.Seed(dev))
	first := submit(
		t,
		s,
		writeCSV(t, []string{"iccid", "operation"}, []row{{"iccid": dev.ICCID, "operation": "suspend"}}),
	)
	waitBulk(t, s, first, 2*time.Minute)
	second := submit(
		t,
		s,
		writeCSV(t, []string{"iccid", "operation"}, []row{{"iccid": dev.ICCID, "operation": "restore"}}),
	)
	waitBulk(t, s, second, 2*time.Minute)

	count := func(query string) int {
		out, err := temporalCLI(t, s, "workflow", "count", "--query", query)
		require.NoError(t, err, out)
		var n int
		_, _ = fmt.Sscanf(strings.TrimPrefix(strings.TrimSpace(out), "Total: "), "%d", &n)
		return n
	}
	require.Eventually(t, func() bool { return count("ICCID = '"+dev.ICCID+"'") == 2 }, time.Minute, time.Second,
		"the device workflows of both bulk changes")
	require.Eventually(t, func() bool {
		return count(
			"WorkflowType = 'BulkChange' AND BulkChangeStatus = 'FINISHED' AND ThingSpaceAccount = '"+s.Config.ThingSpace.Account+"'",
		) == 2
	}, time.Minute, time.Second, "finished bulk changes of the account")
	require.Equal(
		t,
		1,
		count("BulkChangeId = '"+first.ID+"' AND Operation = 'suspend' AND WorkflowType = 'DeviceChange'"),
	)
}
