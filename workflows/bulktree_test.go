package workflows

import (
	"context"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
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
