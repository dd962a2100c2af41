package api

import (
	"fmt"
	"time"
)

// A bulk change of more than Options.ShardSize devices runs as a tree: its
// BulkChange workflow (the root) splits the batches into shards and runs
// Options.ShardsAtOnce BulkChangeShard workflows at a time, each with
// today's sliding window of device workflows over its own batches. One
// execution serializes every child start, result and completion applied
// to it; a tree spreads them over several. Device workflow IDs do not
// change: a device's workflow is found the same way whichever ran it.

// BulkChangeShardWorkflowType is the workflow type of a shard.
const BulkChangeShardWorkflowType = "BulkChangeShard"

// Signals between the root and its shards.
const (
	// ShardReportSignal carries a ShardReport from a shard to its root.
	ShardReportSignal = "shard-report"
	// ShardControlSignal carries a ShardControl from the root to a shard.
	ShardControlSignal = "shard-control"
)

// ShardWorkflowID is the deterministic ID of shard no (from 1) of a bulk
// change: a recovered root starts the same shard again, or finds it running.
func ShardWorkflowID(bulkChangeID string, no int) string {
	return fmt.Sprintf("bulk-change/%s/shard/%d", bulkChangeID, no)
}

// Shard is one shard's part of a bulk change: its batches, FirstBatch to
// LastBatch (a batch is never split: it is one ThingSpace request).
type Shard struct {
	No         int `json:"no"`
	FirstBatch int `json:"firstBatch"`
	LastBatch  int `json:"lastBatch"`
	Devices    int `json:"devices"`
}

// ShardInput starts a shard, or carries its state into its next run.
type ShardInput struct {
	BulkChangeID   string `json:"bulkChangeId"`
	Tenant         string `json:"tenant,omitempty"`
	RootWorkflowID string `json:"rootWorkflowId"`
	Shard          Shard  `json:"shard"`
	// Plan is the bulk change's plan, read once by the root.
	Plan Plan `json:"plan"`
	// Control is what the operators had asked when the root started it.
	Control ShardControl `json:"control"`
	// Recover: where the shard stands is read from PostgreSQL (its root
	// was recovered, or found it ended without reporting its end).
	Recover bool `json:"recover,omitempty"`
	// Resume is set when the shard continues as new.
	Resume *BulkState `json:"resume,omitempty"`
}

// ShardState is what a shard carries beside the window's state.
type ShardState struct {
	Shard          Shard  `json:"shard"`
	RootWorkflowID string `json:"rootWorkflowId"`
	// Reports counts the reports sent (each report's sequence number).
	Reports int `json:"reports"`
	// Epoch is the last ShardControl applied.
	Epoch int `json:"epoch"`
}

// ShardControl is what the root passes on of the operators' requests.
// Epoch orders them; a shard acknowledges one in its next report once no
// request of its is in flight.
type ShardControl struct {
	Epoch  int  `json:"epoch"`
	Paused bool `json:"paused,omitempty"`
	// Cancelled: send nothing more; the root ends the unsent device changes.
	Cancelled bool `json:"cancelled,omitempty"`
}

// ShardReport is a shard's progress, cumulative, so that a report lost,
// repeated or overtaken changes nothing once a later one arrives: the root
// keeps the one with the highest Seq.
type ShardReport struct {
	Shard    int      `json:"shard"`
	Seq      int      `json:"seq"`
	Progress Progress `json:"progress"`
	// Epoch is the last ShardControl the shard applied with no request in
	// flight.
	Epoch int `json:"epoch"`
	// Done: every device change of the shard has ended; the shard ends.
	Done bool `json:"done,omitempty"`
}

// ShardResult is a shard's result (its last report).
type ShardResult struct {
	Report ShardReport `json:"report"`
}

// TreeState is what the root of a sharded bulk change carries across its
// runs.
type TreeState struct {
	Shards []Shard `json:"shards"`
	// Next is the index in Shards of the next shard to start.
	Next int `json:"next"`
	// Running are the shards started and not yet done, with their last
	// report.
	Running []RunningShard `json:"running"`
	// Ended sums the last reports of the shards done.
	Ended Progress `json:"ended"`
	// Epoch is the last ShardControl sent.
	Epoch int `json:"epoch"`
	// Recover: the root was recovered; every shard starts by reading where
	// its part stands.
	Recover bool `json:"recover,omitempty"`
	// Adopted: shards a recovered root found running (started by the root
	// run that failed) and took over before starting any other.
	Adopted []int `json:"adopted,omitempty"`
	// Done counts the shards done.
	Done int `json:"done"`
	// Restart: running shards that ended without finishing while the run
	// that learnt of it was continuing as new; the next run starts them
	// again first.
	Restart []int `json:"restart,omitempty"`
}

// RunningShard is a shard started and not yet done.
type RunningShard struct {
	No     int         `json:"no"`
	Report ShardReport `json:"report"`
	// Restarts counts the times the root started it again.
	Restarts int `json:"restarts,omitempty"`
	// HeardAt is when the root last heard from it (or started it).
	HeardAt time.Time `json:"heardAt"`
}
