package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// sharding runs bulk changes of more than shardSize devices as shards of
// that size, atOnce at a time, each with the window and continuing as new
// every startsPerRun starts.
func sharding(batchSize, window, shardSize, atOnce, startsPerRun int) func(*config.Config) {
	return func(c *config.Config) {
		batching(batchSize, window)(c)
		c.Bulk.ShardSize, c.Bulk.ShardsAtOnce, c.Bulk.StartsPerRun = shardSize, atOnce, startsPerRun
	}
}

// shardResult is the result of a shard's last run.
func shardResult(t *testing.T, s *stack.Stack, bulkID string, no int) api.ShardResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res api.ShardResult
	require.NoError(t, s.Client.GetWorkflow(ctx, api.ShardWorkflowID(bulkID, no), "").Get(ctx, &res))
	return res
}

// 1,200 devices as four shards of 300, two at a time, each continuing as
// new every 100 starts. Paused mid-way, ThingSpace sees no state change from
// any shard, also across a worker restart; resumed, every device ends once,
// the root's progress is its shards' sum, and each device's workflow keeps
// its ID.
func TestShardedBulkChangePauseKillResume(t *testing.T) {
	s := newStack(t, stack.Options{
		ThingSpace: simConfig(200*time.Millisecond, time.Second, 61),
		Config:     sharding(100, 60, 300, 2, 100),
	})
	w := startWorkerProcess(t, s)
	devs, file := suspendFile(t, s, "8914800861", 1200)
	res := submit(t, s, file)

	awaitProgress(t, s, res.WorkflowID, func(p api.Progress) bool { return p.BatchesSent >= 3 })
	paused := acceptedUpdate(t, s, res.WorkflowID, api.PauseUpdate,
		api.OperatorRequest{By: "alice", Reason: "checking the file"})
	require.Equal(t, change.BulkPaused, paused.Status)
	sentAtPause := stateChangeRequests(s)
	p, _ := progress(s, res.WorkflowID)
	require.Equal(t, 4, p.Shards)
	require.Less(t, p.BatchesSent, p.Batches, "paused mid-way")
	t.Logf("paused with %d of %d batches sent, %d/%d done, shards %d running %d done",
		p.BatchesSent, p.Batches, p.Done(), p.Total, p.ShardsRunning, p.ShardsDone)

	time.Sleep(3 * time.Second)
	w.kill()
	w = startWorkerProcess(t, s)
	time.Sleep(5 * time.Second)
	require.Equal(t, sentAtPause, stateChangeRequests(s), "no state change sent by any shard while paused")

	acceptedUpdate(t, s, res.WorkflowID, api.ResumeUpdate, api.OperatorRequest{By: "alice", Reason: "file is fine"})
	out := waitBulk(t, s, res, 10*time.Minute)
	require.Equal(t, 1200, out.Processed)
	require.Equal(t, 1200, out.Progress.Processed, "the root's progress sums its shards'")
	require.Equal(t, 1200, out.Progress.DevicesSent)
	require.Equal(t, 12, out.Progress.BatchesSent)
	require.Equal(t, 4, out.Progress.ShardsDone)
	st := s.TS.Stats(time.Hour)
	for _, d := range devs {
		require.Equal(t, 1, changesSent(st, d.ICCID), "sent once: %s", d.ICCID)
	}
	for no := 1; no <= 4; no++ {
		r := shardResult(t, s, res.ID, no)
		require.True(t, r.Report.Done)
		require.Equal(t, 300, r.Report.Progress.Processed, "shard %d", no)
		require.Greater(t, r.Report.Progress.Runs, 2, "shard %d continued as new every 100 starts", no)
	}
	ctx := context.Background()
	d, err := s.Client.DescribeWorkflow(ctx, api.DeviceChangeWorkflowID(res.ID, devs[700].ICCID), "")
	require.NoError(t, err, "a device's workflow keeps its ID under a shard")
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, d.RawResponse.GetWorkflowExecutionInfo().GetStatus())
	_ = w
}

// Cancelled while its shards run: no request reaches ThingSpace after the
// cancel returns, and every device change ends processed, failed or
// cancelled.
func TestShardedBulkChangeCancel(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(300*time.Millisecond, time.Second, 62),
		Config:     sharding(50, 50, 150, 2, 500),
	})
	_, file := suspendFile(t, s, "8914800862", 900)
	res := submit(t, s, file)

	awaitProgress(t, s, res.WorkflowID, func(p api.Progress) bool { return p.BatchesSent >= 2 })
	cancelled := acceptedUpdate(t, s, res.WorkflowID, api.CancelUpdate,
		api.OperatorRequest{By: "alice", Reason: "wrong customer"})
	require.Equal(t, change.BulkCancelled, cancelled.Status)
	sentAtCancel := stateChangeRequests(s)

	out := waitBulk(t, s, res, 5*time.Minute)
	require.Equal(t, change.BulkCancelled, out.Status)
	require.Equal(t, sentAtCancel, stateChangeRequests(s), "nothing sent after the cancel")
	require.Greater(t, out.Cancelled, 0)
	require.Equal(t, 900, out.Processed+out.Errors+out.Cancelled)
	counts, err := s.Store.CountStatuses(context.Background(), res.ID)
	require.NoError(t, err)
	require.Zero(t, counts.ByStatus[change.Sending]+counts.ByStatus[change.Pending]+counts.ByStatus[change.Sent],
		"nothing left in flight")
	require.Equal(t, out.Cancelled, counts.ByStatus[change.Cancelled])
	recordHistory(t, s, res.WorkflowID, "bulkchange-shards-cancelled")
	recordHistory(t, s, api.ShardWorkflowID(res.ID, 1), "bulkchange-shard")
}

// resumeFailed starts a bulk change's root again in recover mode (what
// `starter resume-failed` does) and waits until it is the recoveries-th.
func resumeFailed(t *testing.T, s *stack.Stack, bulkID, workflowID string, recoveries int) {
	t.Helper()
	_, err := s.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: workflowID, TaskQueue: api.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
	}, api.BulkChangeWorkflowType, api.BulkChangeInput{BulkChangeID: bulkID, Recover: true})
	require.NoError(t, err)
	require.Eventually(t, func() bool { p, ok := progress(s, workflowID); return ok && p.Recovered == recoveries },
		time.Minute, 100*time.Millisecond, "recovery %d", recoveries)
}

// The root is terminated while its shards run, and a shard too; the
// operator resumes the bulk change (what `starter resume-failed` does).
// The new root adopts the shards still running and starts again the others,
// each reading where its part stands: every device ends, none is sent twice.
// The recovered root then dies as well and is recovered again: a pause of
// each recovered root holds every shard.
func TestShardedBulkChangeResumeFailed(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(300*time.Millisecond, 2*time.Second, 63),
		Config:     sharding(40, 40, 120, 2, 500),
	})
	devs, file := suspendFile(t, s, "8914800863", 600)
	res := submit(t, s, file)

	awaitProgress(t, s, res.WorkflowID, func(p api.Progress) bool { return p.Done() >= 150 })
	// Paused and resumed first: the shards have applied that root run's
	// requests, which the recovered root's must still outrank.
	acceptedUpdate(t, s, res.WorkflowID, api.PauseUpdate, api.OperatorRequest{By: "alice", Reason: "a look"})
	acceptedUpdate(t, s, res.WorkflowID, api.ResumeUpdate, api.OperatorRequest{By: "alice"})
	ctx := context.Background()
	p, _ := progress(s, res.WorkflowID)
	require.NoError(t, s.Client.TerminateWorkflow(ctx, res.WorkflowID, "", "test: the root dies"))
	running := p.ShardsDone + 1
	require.NoError(t, s.Client.TerminateWorkflow(ctx, api.ShardWorkflowID(res.ID, running), "", "test: a shard dies"))
	t.Logf("root and shard %d terminated with %d/%d done", running, p.Done(), p.Total)

	resumeFailed(t, s, res.ID, res.WorkflowID, 1)

	// The recovered root's pause holds every shard, the adopted ones too.
	acceptedUpdate(t, s, res.WorkflowID, api.PauseUpdate, api.OperatorRequest{By: "bob", Reason: "after recovery"})
	sentAtPause := stateChangeRequests(s)
	time.Sleep(5 * time.Second)
	require.Equal(t, sentAtPause, stateChangeRequests(s), "no shard sends while the recovered root is paused")
	acceptedUpdate(t, s, res.WorkflowID, api.ResumeUpdate, api.OperatorRequest{By: "bob"})

	// The recovered root dies too, and is recovered again: its requests
	// must outrank those of both runs before it, which the adopted shards
	// have applied (a count kept in the workflow starts again at one).
	require.NoError(t, s.Client.TerminateWorkflow(ctx, res.WorkflowID, "", "test: the recovered root dies"))
	resumeFailed(t, s, res.ID, res.WorkflowID, 2)
	acceptedUpdate(t, s, res.WorkflowID, api.PauseUpdate, api.OperatorRequest{By: "carol", Reason: "second recovery"})
	sentAtPause = stateChangeRequests(s)
	p, _ = progress(s, res.WorkflowID)
	require.Less(t, p.BatchesSent, p.Batches, "batches are left to send: the pause below holds something")
	time.Sleep(5 * time.Second)
	require.Equal(t, sentAtPause, stateChangeRequests(s), "no shard sends while the twice-recovered root is paused")
	acceptedUpdate(t, s, res.WorkflowID, api.ResumeUpdate, api.OperatorRequest{By: "carol"})

	out := waitBulk(t, s, res, 6*time.Minute)
	require.Equal(t, 600, out.Processed, "%+v", out.Progress)
	require.Equal(t, 2, out.Progress.Recovered)
	st := s.TS.Stats(time.Hour)
	for _, d := range devs {
		require.Equal(t, 1, changesSent(st, d.ICCID), "sent once: %s", d.ICCID)
	}
	require.Equal(t, fmt.Sprint(change.BulkFinished), fmt.Sprint(bulkChange(t, s, res.ID).Status))
}

// A shard terminated from the Web UI while its root runs is started again
// at once to recover its part (not after the stall check, here an hour):
// every device ends, none is sent twice.
func TestShardTerminatedIsStartedAgain(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(300*time.Millisecond, 2*time.Second, 64),
		Config: func(c *config.Config) {
			sharding(40, 40, 120, 2, 500)(c)
			c.Bulk.StallCheck = time.Hour
		},
	})
	devs, file := suspendFile(t, s, "8914800864", 480)
	res := submit(t, s, file)

	awaitProgress(t, s, res.WorkflowID, func(p api.Progress) bool { return p.Done() >= 60 })
	// A shard running now (the root's counts are up to 10 s late), asked
	// directly.
	ctx := context.Background()
	shard := 0
	require.Eventually(t, func() bool {
		for no := 1; no <= 4; no++ {
			// Running, with a good part of its devices still to end (one
			// terminated after its last report has nothing to recover).
			p, ok := progress(s, api.ShardWorkflowID(res.ID, no))
			if ok && p.Phase == change.PhaseRunning && p.Done() < p.Total-40 {
				shard = no
				return true
			}
		}
		return false
	}, time.Minute, 100*time.Millisecond)
	p, _ := progress(s, res.WorkflowID)
	require.NoError(t, s.Client.TerminateWorkflow(ctx, api.ShardWorkflowID(res.ID, shard), "",
		"test: an operator terminates a shard"))
	t.Logf("shard %d terminated with %d/%d done", shard, p.Done(), p.Total)

	out := waitBulk(t, s, res, 4*time.Minute)
	require.Equal(t, 480, out.Processed, "%+v", out.Progress)
	st := s.TS.Stats(time.Hour)
	for _, d := range devs {
		require.Equal(t, 1, changesSent(st, d.ICCID), "sent once: %s", d.ICCID)
	}
	r := shardResult(t, s, res.ID, shard)
	require.Equal(t, 1, r.Report.Progress.Recovered, "the shard's second run recovered its part")
}
