package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
)

func (b *bulkRun) sendNextBatch() error {
	n := b.state.NextBatch
	var res activities.SendBatchResult
	b.sending = true
	// The Web UI shows which request it is (user metadata, not compared
	// on replay).
	ctx := withSummary(withThingSpace(b.ctx), fmt.Sprintf("ThingSpace request %d of %d", n, b.state.Plan.Batches))
	err := workflow.ExecuteActivity(ctx, activities.SendBatchActivity,
		activities.SendBatchInput{BulkChangeID: b.in.BulkChangeID, BatchNo: n}).Get(b.ctx, &res)
	b.sending = false
	if err != nil {
		// Only a refusal of our credentials (or a bug) gets here: ThingSpace
		// outages are retried without end. Nothing more can be sent.
		return b.stopSending(n, err)
	}
	b.state.NextBatch++
	b.state.Queued += res.Devices
	b.state.Progress.BatchesSent++
	b.state.Progress.DevicesSent += res.Devices
	if res.Limit != nil {
		lim := *res.Limit
		// The bulk change's, or the shard's.
		lim.BatchesWaiting = b.state.Progress.Batches - b.state.Progress.BatchesSent
		lim.DevicesWaiting = b.state.Progress.Total - b.state.Progress.DevicesSent
		b.state.Progress.Limit = &lim
	}
	b.touch()
	return nil
}

// stopSending ends the device changes no request will carry and lets the
// children already running finish.
func (b *bulkRun) stopSending(fromBatch int, cause error) error {
	code := change.SendFailed
	if isType(cause, activities.ErrTypeInvalidCredentials) {
		code = change.AuthFailed
	}
	msg := fmt.Sprintf("batch %d could not be sent: %s", fromBatch, rootMessage(cause))
	b.logger.Error("no more batches are sent", "batch", fromBatch, "error", cause)
	var ended int
	in := activities.FailUnsentInput{BulkChangeID: b.in.BulkChangeID, FromBatch: fromBatch, Code: code, Message: msg}
	if b.state.Shard != nil {
		// Another shard's batches are its own to send.
		in.ToBatch = b.lastBatch()
	}
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.FailUnsent, in).Get(b.ctx, &ended); err != nil {
		return err
	}
	b.state.StopSending = msg
	b.state.Progress.Error = msg
	b.state.Progress.AddError(code, ended)
	b.touch()
	return nil
}
