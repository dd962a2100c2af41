package activities

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// PlanShardsInput asks for a bulk change's shards.
type PlanShardsInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	ShardSize    int    `json:"shardSize"`
}

// PlanShards cuts a bulk change's batches into shards of at most ShardSize
// device changes (a batch larger than that is a shard of its own: a batch
// is one ThingSpace request and is never split). The cut depends only on
// the stored batches, so a recovered root cuts the same shards.
func (a *Activities) PlanShards(ctx context.Context, in PlanShardsInput) ([]api.Shard, error) {
	sizes, err := a.Store.BatchSizes(ctx, in.BulkChangeID)
	if err != nil {
		return nil, err
	}
	return CutShards(sizes, in.ShardSize), nil
}

// CutShards groups consecutive batches into shards of at most size device
// changes each.
func CutShards(batches []db.BatchSize, size int) []api.Shard {
	var out []api.Shard
	for _, b := range batches {
		n := len(out)
		if n == 0 || out[n-1].Devices+b.Devices > size {
			out = append(out, api.Shard{No: n + 1, FirstBatch: b.BatchNo, LastBatch: b.BatchNo, Devices: b.Devices})
			continue
		}
		out[n-1].LastBatch = b.BatchNo
		out[n-1].Devices += b.Devices
	}
	return out
}

// RecoverShardInput asks where a shard stands.
type RecoverShardInput struct {
	BulkChangeID string    `json:"bulkChangeId"`
	Shard        api.Shard `json:"shard"`
}

// RecoveredShard is where a shard stands, read from its device changes.
type RecoveredShard struct {
	// NextBatch is its first batch not yet sent (LastBatch+1 when all were).
	NextBatch int `json:"nextBatch"`
	// DevicesSent, Unfinished: the device changes of its batches before
	// NextBatch, and those of them without an outcome.
	DevicesSent int `json:"devicesSent"`
	Unfinished  int `json:"unfinished"`
	// Tally: the device changes of those batches that have their outcome.
	change.Tally
}

// RecoverShard reads where a shard stands, for a shard run that takes its
// part over (its root was recovered, or found it ended without reporting).
func (a *Activities) RecoverShard(ctx context.Context, in RecoverShardInput) (*RecoveredShard, error) {
	st, err := a.Store.RecoveryStateOf(ctx, in.BulkChangeID, in.Shard.FirstBatch, in.Shard.LastBatch)
	if err != nil {
		return nil, err
	}
	return &RecoveredShard{NextBatch: st.NextBatch, DevicesSent: st.Sent, Unfinished: st.Unfinished, Tally: st.Tally}, nil
}

// CheckShardsInput lists the shards a root awaits.
type CheckShardsInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	Shards       []int  `json:"shards"`
}

// CheckShardWorkflows returns the shards among those given whose workflow
// is not running (ended without its last report reaching the root, or
// never found): the root starts them again to recover their part.
func (a *Activities) CheckShardWorkflows(ctx context.Context, in CheckShardsInput) ([]int, error) {
	var ended []int
	for _, no := range in.Shards {
		st, err := a.workflowStatus(ctx, api.ShardWorkflowID(in.BulkChangeID, no))
		if err != nil {
			return nil, fmt.Errorf("check shard %d of %s: %w", no, in.BulkChangeID, err)
		}
		if st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			ended = append(ended, no)
		}
	}
	return ended, nil
}
