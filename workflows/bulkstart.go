package workflows

import (
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// start validates the bulk change and checks ThingSpace authentication once:
// with refused credentials no device is touched. A ThingSpace outage is not a
// refusal: the check waits it out, as every ThingSpace call does (the
// attempts and the last error show in `starter status`).
func (b *bulkRun) start() error {
	var plan api.Plan
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.StartBulkChange, b.in.BulkChangeID).Get(b.ctx, &plan); err != nil {
		return fmt.Errorf("start bulk change %s: %w", b.in.BulkChangeID, err)
	}
	b.usePlan(plan)
	if ok, err := b.awaitGo(); err != nil || !ok {
		// Cancelled before it sent anything (or rejected, or its
		// approval expired): the main loop finds nothing to do and ends.
		return err
	}
	b.state.Progress.Phase = change.PhaseCheckingThingSpace
	b.touch()

	err := workflow.ExecuteActivity(withAuthCheck(b.ctx), a.CheckThingSpaceAuth, b.in.BulkChangeID).Get(b.ctx, nil)
	b.state.Progress.Phase = change.PhaseRunning
	b.touch()
	if err == nil {
		return nil
	}
	msg := "ThingSpace authentication failed: " + rootMessage(err)
	b.logger.Error("bulk change cannot run", "error", err)
	fail := activities.FailBulkInput{BulkChangeID: b.in.BulkChangeID, Code: change.AuthFailed, Message: msg}
	if ferr := workflow.ExecuteActivity(withDB(b.ctx), a.FailBulkChange, fail).Get(b.ctx, nil); ferr != nil {
		return ferr
	}
	b.state.Progress.Phase = change.PhaseFailed
	b.setStatus(b.ctx, change.BulkFailed)
	b.state.Progress.Error = msg
	// Nothing was sent yet: every device change ends with this code.
	b.state.Progress.AddError(change.AuthFailed, plan.Total)
	b.tell(notify.Failed, msg, "")
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeBulkChangeFailed, err)
}

func (b *bulkRun) usePlan(plan api.Plan) {
	b.state.Plan = withDefaults(plan)
	b.state.Progress.Total = plan.Total
	b.state.Progress.Batches = plan.Batches
	b.state.Progress.Phase = change.PhaseRunning
	b.setStatus(b.ctx, change.BulkRunning)
}

// recover takes over a bulk change whose previous parent run ended without
// finishing it (failed, terminated, timed out): an operator started this run
// with Recover (`starter resume-failed`). Where that run stood is read from
// PostgreSQL, not from its history: batches whose devices all left PENDING
// were sent (SendBatch is idempotent, so a batch sent half-way is taken up
// where it stood, never sent twice); device changes of those batches that
// have their outcome are counted; the others get their child again, and a
// child still running from the failed run is adopted (it reports to this
// workflow ID).
func (b *bulkRun) recover() error {
	var rec activities.RecoveredBulk
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.RecoverBulkChange, b.in.BulkChangeID).Get(b.ctx, &rec); err != nil {
		return fmt.Errorf("recover bulk change %s: %w", b.in.BulkChangeID, err)
	}
	b.usePlan(rec.Plan)
	// A tree's shards each read where their part stands (the counts
	// below are then their sum).
	b.recovered = true
	b.state.NextBatch = rec.NextBatch
	b.state.RecoveredBelow = rec.NextBatch
	b.state.Queued = rec.Unfinished
	p := &b.state.Progress
	p.BatchesSent = rec.NextBatch - 1
	p.DevicesSent = rec.DevicesSent
	p.Tally.Add(rec.Tally)
	// The count kept in PostgreSQL (a recovered run starts afresh, and a
	// recovered tree numbers its requests to the shards from it); histories
	// recorded before it was kept carry none.
	p.Recovered = max(rec.Recoveries, p.Recovered+1)
	if rec.ApprovedBy != "" {
		b.state.Control.Approved = &api.OperatorAction{By: rec.ApprovedBy, At: workflow.Now(b.ctx)}
	}
	b.touch()
	b.logger.Info("recovered bulk change", "nextBatch", rec.NextBatch, "unfinished", rec.Unfinished)
	if rec.NextBatch == 1 {
		// Nothing was sent: what held it back (approval, start time) holds.
		_, err := b.awaitGo()
		return err
	}
	return nil
}

func withDefaults(p api.Plan) api.Plan {
	if p.Options.Window <= 0 {
		p.Options.Window = DefaultWindow
	}
	if p.Options.StartsPerRun <= 0 {
		p.Options.StartsPerRun = DefaultStartsPerRun
	}
	return p
}
