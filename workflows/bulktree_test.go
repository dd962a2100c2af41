package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// newTreeEnv is newBulkEnv with the activities a tree adds: the shards are
// cut from the fake's batches as from the database.
func newTreeEnv(t *testing.T, f *fakeBulk, opts api.Options) *testsuite.TestWorkflowEnvironment {
	env := newBulkEnv(t, f, opts)
	env.OnActivity(a.PlanShards, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PlanShardsInput) ([]api.Shard, error) {
			var sizes []db.BatchSize
			for i, b := range f.batches {
				sizes = append(sizes, db.BatchSize{BatchNo: i + 1, Devices: len(b)})
			}
			return activities.CutShards(sizes, in.ShardSize), nil
		}).Maybe()
	return env
}

func treeOptions(window, shardSize, atOnce int) api.Options {
	o := bulkOptions(window, 100)
	o.ShardSize, o.ShardsAtOnce = shardSize, atOnce
	return o
}

func TestBulkChangeRunsAsShards(t *testing.T) {
	f := newFakeBulk("t1", 3, 3, 2, 4)
	env := newTreeEnv(t, f, treeOptions(2, 5, 2))
	env.RegisterWorkflowWithOptions(BulkChangeShard, workflow.RegisterOptions{Name: api.BulkChangeShardWorkflowType})

	res := runBulk(t, env, api.BulkChangeInput{BulkChangeID: "t1"})

	require.Equal(t, 12, res.Processed)
	require.ElementsMatch(t, []int{1, 2, 3, 4}, f.sent, "each batch sent once, by its shard")
	require.Len(t, f.started, 12, "one child per device")
	require.LessOrEqual(t, f.maxInFlight, 2, "the window of 2 is the bulk change's, shared by its two running shards")
	p := res.Progress
	require.Equal(t, 3, p.Shards, "3 | 3+2 | 4 in shards of at most 5")
	require.Equal(t, 3, p.ShardsDone)
	require.Equal(t, 0, p.ShardsRunning)
	require.Equal(t, 12, p.ByOutcome[change.Suspended], "the root sums its shards' tallies")
	require.Equal(t, 12, p.DevicesSent)
	require.Equal(t, 12, p.Started)
	require.Equal(t, 4, p.BatchesSent)
	require.True(t, f.finished, "the root finishes the bulk change")
}

// A bulk change no larger than a shard runs as it always did.
func TestSmallBulkChangeHasNoShards(t *testing.T) {
	f := newFakeBulk("t2", 3, 2)
	env := newTreeEnv(t, f, treeOptions(2, 5, 2))

	res := runBulk(t, env, api.BulkChangeInput{BulkChangeID: "t2"})

	require.Equal(t, 5, res.Processed)
	require.Zero(t, res.Progress.Shards)
	env.AssertNotCalled(t, "PlanShards", mock.Anything, mock.Anything)
}

// A pause waits for every running shard's acknowledgement, and the root,
// due to continue as new, waits for the pause. A shard that ends without
// acknowledging (terminated in the Web UI) must not hold both forever: the
// pause returns, and the next run starts that shard again, paused.
func TestPauseDoesNotWaitForAShardThatEnded(t *testing.T) {
	f := newFakeBulk("t3", 5, 5, 5)
	opts := treeOptions(4, 5, 2)
	// The stall check wakes the root's main loop while the pause waits (the
	// pause reads the reports itself), and it finds itself due to continue
	// as new.
	opts.Timing.StallCheck = 30 * time.Second
	env := newTreeEnv(t, f, opts)
	env.OnActivity(a.CheckShardWorkflows, mock.Anything, mock.Anything).Return(nil, nil).Maybe()
	var audit []activities.OperatorActionInput
	controlMocks(env, f, &audit)
	// Stand-in shards: shard 1 ends without acknowledging the pause, once
	// shard 2 has acknowledged it and reported until the root is due to
	// continue as new (and a while after, so that the root waits there).
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in api.ShardInput) (*api.ShardResult, error) {
		var ctl api.ShardControl
		workflow.GetSignalChannel(ctx, api.ShardControlSignal).Receive(ctx, &ctl)
		if in.Shard.No == 1 {
			workflow.GetSignalChannel(ctx, "terminate").Receive(ctx, nil)
			return nil, errors.New("terminated")
		}
		for seq := 1; seq <= reportsPerRun; seq++ {
			r := api.ShardReport{Shard: in.Shard.No, Seq: seq, Epoch: ctl.Epoch, Progress: api.Progress{Tally: change.NewTally()}}
			if err := workflow.SignalExternalWorkflow(ctx, in.RootWorkflowID, "", api.ShardReportSignal, r).Get(ctx, nil); err != nil {
				return nil, err
			}
		}
		if err := workflow.Sleep(ctx, time.Minute); err != nil {
			return nil, err
		}
		return nil, workflow.SignalExternalWorkflow(ctx, api.ShardWorkflowID("t3", 1), "", "terminate", nil).Get(ctx, nil)
	}, workflow.RegisterOptions{Name: api.BulkChangeShardWorkflowType})
	pause := sendUpdate(env, 10*time.Second, api.PauseUpdate, api.OperatorRequest{By: "alice", Reason: "a look"})

	env.ExecuteWorkflow(BulkChange, api.BulkChangeInput{BulkChangeID: "t3"})

	require.True(t, env.IsWorkflowCompleted())
	require.True(t, pause.done, "the pause returned")
	require.NoError(t, pause.rejected)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can, "the root continued as new")
	var next api.BulkChangeInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.Resume)
	require.True(t, next.Resume.Control.Paused)
	require.Equal(t, []int{1}, next.Resume.Tree.Restart, "the next run starts the ended shard again")
}
