package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Both runs' sizes have several shards, each continuing as new more than
// once, with whole batches of 50 in a shard.
func TestShardSettingsMakeSeveralShardsThatContinueAsNew(t *testing.T) {
	for _, devices := range []int{500, 2000} {
		s := shardSettingsFor(devices)
		shards := (devices + s.Size - 1) / s.Size
		assert.GreaterOrEqual(t, shards, 4, "%d devices: several shards", devices)
		assert.Greater(t, s.Size/s.StartsPerRun, 2, "%d devices: each shard continues as new more than once", devices)
		assert.Zero(t, s.Size%50, "batches of 50 fit in a shard")
		assert.GreaterOrEqual(t, s.Size, 100, "the product's minimum shard size")
		assert.Less(t, s.AtOnce, shards, "shards wait for their turn")
	}
}

var t0 = time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func event(id int64, typ enumspb.EventType, sec float64) *historypb.HistoryEvent {
	return &historypb.HistoryEvent{EventId: id, EventType: typ, EventTime: timestamppb.New(at(sec))}
}

// A run's history gives its continue-as-new: it starts its
// StartsPerRun-th device workflow, then hands over once the last start is
// confirmed.
func TestShardRunReadsItsHistory(t *testing.T) {
	in, err := converter.GetDefaultDataConverter().ToPayloads(api.ShardInput{Shard: api.Shard{No: 2, FirstBatch: 3, LastBatch: 4, Devices: 90}})
	require.NoError(t, err)
	started := event(1, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, 0)
	started.Attributes = &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{
		WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{Input: in}}
	can := event(13, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, 9)
	can.Attributes = &historypb.HistoryEvent_WorkflowExecutionContinuedAsNewEventAttributes{
		WorkflowExecutionContinuedAsNewEventAttributes: &historypb.WorkflowExecutionContinuedAsNewEventAttributes{NewExecutionRunId: "r2"}}
	evs := []*historypb.HistoryEvent{started,
		event(2, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, 0.5), event(3, enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 1),
		event(4, enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED, 2),
		event(5, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED, 2.5),
		event(6, enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED, 3),
		event(7, enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED, 3),
		event(8, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED, 5),
		event(9, enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED, 7),
		event(10, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, 8), event(11, enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 8.5),
		event(12, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED, 8.7), can}
	r := newShardRun("s/2", "r1", 2)
	for _, ev := range evs {
		require.NoError(t, r.take(ev))
	}
	assert.Equal(t, 2, r.Input.Shard.No)
	assert.Equal(t, at(0), r.Started)
	assert.Equal(t, at(1), r.FirstTask)
	assert.Equal(t, at(3), r.Decided, "the second start, with 2 starts per run")
	assert.Equal(t, at(7), r.HandOver, "the last start confirmed (a failed start is an answer too)")
	assert.Equal(t, at(8), r.LastTask)
	assert.Equal(t, at(9), r.Closed)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW, r.Status)
	assert.Equal(t, "r2", r.Next)
}

// tree is a sharded bulk change's tree: shard 1 (batches 1-2) continued as
// new once, shard 2 (batch 3) ran once; both completed with their reports.
func tree(changes []DeviceChange) ShardTree {
	tally := func(first, last int) change.Tally {
		tl := change.NewTally()
		for _, dc := range changes {
			if dc.BatchNo >= first && dc.BatchNo <= last {
				switch dc.Status {
				case "PROCESSED":
					tl.AddProcessed("activated", 1)
				case "ERROR":
					tl.AddError("X", 1)
				}
			}
		}
		return tl
	}
	done := func(no, first, last int) *api.ShardResult {
		return &api.ShardResult{Report: api.ShardReport{Shard: no, Seq: 3, Done: true, Progress: api.Progress{Tally: tally(first, last)}}}
	}
	sh1 := api.ShardInput{Shard: api.Shard{No: 1, FirstBatch: 1, LastBatch: 2, Devices: 4}}
	sh2 := api.ShardInput{Shard: api.Shard{No: 2, FirstBatch: 3, LastBatch: 3, Devices: 2}}
	resumed := sh1
	resumed.Resume = &api.BulkState{}
	all := tally(1, 3)
	return ShardTree{Settings: ShardSettings{Size: 4, AtOnce: 1, StartsPerRun: 2}, Sharded: true,
		Runs: []shardRun{
			{WorkflowID: "s/1", RunID: "a", Input: sh1, Started: at(0), FirstTask: at(1), Decided: at(6), HandOver: at(10), LastTask: at(11),
				Closed: at(12), Status: enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW, Next: "b"},
			{WorkflowID: "s/1", RunID: "b", Input: resumed, Started: at(12), FirstTask: at(13), Closed: at(30),
				Status: enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, Result: done(1, 1, 2)},
			{WorkflowID: "s/2", RunID: "c", Input: sh2, Started: at(31), FirstTask: at(32), Closed: at(40),
				Status: enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, Result: done(2, 3, 3)},
		},
		Root: &api.BulkChangeResult{Total: 6, Processed: all.Processed, Errors: all.Errors,
			Progress: api.Progress{Tally: all, Shards: 2, ShardsDone: 2, Runs: 1}},
	}
}

func treeChanges() []DeviceChange {
	var out []DeviceChange
	for i, b := range []int{1, 1, 2, 2, 3, 3} {
		st := "PROCESSED"
		if i == 3 {
			st = "ERROR"
		}
		out = append(out, DeviceChange{ID: int64(i + 1), ICCID: fmt.Sprint(i), Status: st, BatchNo: b})
	}
	return out
}

func TestTreeStatsAndContinueAsNewWindows(t *testing.T) {
	tr := tree(treeChanges())
	wins := tr.canWindows()
	require.Len(t, wins, 1)
	assert.Equal(t, canWindow{WorkflowID: "s/1", Decided: at(6), HandOver: at(10), End: at(13)}, wins[0],
		"to the next run's first workflow task")

	fired := []Fired{
		{At: at(11), Event: Event{Kind: KillWorkersAtShardCAN}}, // in the hand-over
		{At: at(17), Event: Event{Kind: KillOneWorker}},         // 4 s after it
		{At: at(7), Event: Event{Kind: KillWorkers}},            // waiting for the starts' confirmation
		{At: at(25), Event: Event{Kind: KillWorkers}},           // far
		{At: at(12), Event: Event{Kind: KillReceiver}},          // not a worker kill
	}
	s := tr.stats(fired)
	assert.Equal(t, 2, s.Shards)
	assert.Equal(t, 3, s.Runs)
	assert.Equal(t, 1, s.ContinuedAsNew)
	assert.Equal(t, 2, s.Completed)
	assert.Zero(t, s.Restarts)
	assert.Equal(t, landings{Kills: 4, HandOver: 1, NearHandOver: 3, Waiting: 2, ArmedHandOver: 1}, s.Kills)
	assert.Equal(t, 7*time.Second, s.Wait)
	assert.Equal(t, 3*time.Second, s.HandOver)

	// A shard the root started again to recover its part.
	restarted := tr.Runs[2]
	restarted.RunID, restarted.Input.Recover, restarted.Started = "d", true, at(50)
	tr.Runs = append(tr.Runs, restarted)
	assert.Equal(t, 1, tr.stats(nil).Restarts)
}

func TestCheckTree(t *testing.T) {
	changes := treeChanges()
	assert.Empty(t, checkTree(ptr(tree(changes)), changes), "a tree that agrees with PostgreSQL")

	cases := map[string]struct {
		edit func(*ShardTree)
		want string
	}{
		"a shard failed": {func(tr *ShardTree) {
			tr.Runs[2].Status, tr.Runs[2].Result = enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, nil
		}, "shard 2 (s/2, batches 3-3): its latest run c is failed, not completed"},
		"a shard's report short of a result": {func(tr *ShardTree) {
			tr.Runs[1].Result.Report.Progress.Processed--
		}, "shard 1 (s/1, batches 1-2): its result says processed 2, errors 1; PostgreSQL has 4 device changes, 3 PROCESSED, 1 ERROR"},
		"a shard ended without its last report": {func(tr *ShardTree) { tr.Runs[2].Result.Report.Done = false }, "done false"},
		"a batch in no shard": {func(tr *ShardTree) {
			for i := range tr.Runs[:2] {
				tr.Runs[i].Input.Shard.LastBatch = 1
			}
		}, "batch 2 in shards []"},
		"the root's sum off":    {func(tr *ShardTree) { tr.Root.Progress.Errors = 0 }, "the sum of its shards' reports"},
		"the root's result off": {func(tr *ShardTree) { tr.Root.Processed = 6 }, "the root's result says total 6, processed 6"},
		"the root without a result": {func(tr *ShardTree) {
			tr.Root, tr.RootErr = nil, "bulk-change/x is running"
		}, "the root workflow has no result: bulk-change/x is running"},
		"no shards": {func(tr *ShardTree) { tr.Runs = nil }, "0 shard workflows for a bulk change of 6 devices"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tr := tree(changes)
			c.edit(&tr)
			vs := checkTree(&tr, changes)
			require.NotEmpty(t, vs)
			assert.Equal(t, CheckShards, vs[0].Check)
			assert.Contains(t, fmt.Sprint(vs), c.want)
		})
	}
}

func ptr[T any](v T) *T { return &v }
