package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// finish gives the default site and marks the bulk change FINISHED. A bulk
// change is never FINISHED while one of its device changes owes a Rev.io
// step that has not ended (billing PENDING): such a step can only be
// stranded here, since every child ends its step before it reports, so a
// billing retry of the stranded steps runs first.
func (b *bulkRun) finish() (*api.BulkChangeResult, error) {
	// An operator's request being handled finishes first.
	if err := workflow.Await(b.ctx, func() bool { return workflow.AllHandlersFinished(b.ctx) }); err != nil {
		return nil, err
	}
	b.state.Progress.Phase = change.PhaseFinishing
	b.touch()
	cancelled := b.state.Control.Cancelled != nil
	var finished activities.FinishResult
	for attempt := 1; ; attempt++ {
		in := activities.FinishInput{BulkChangeID: b.in.BulkChangeID, DefaultSite: b.state.Plan.Options.DefaultSite,
			Cancelled: cancelled}
		// A fresh value each time: a result without billingOwed must not
		// keep the previous attempt's.
		finished = activities.FinishResult{}
		if err := workflow.ExecuteActivity(withDB(b.ctx), a.FinishBulkChange, in).Get(b.ctx, &finished); err != nil {
			return nil, err
		}
		if finished.BillingOwed == 0 {
			break
		}
		if err := b.settleStrandedBilling(attempt, finished.BillingOwed); err != nil {
			return nil, err
		}
	}
	status := change.BulkFinished
	if cancelled {
		status = change.BulkCancelled
	}
	b.state.Progress.Phase = change.PhaseFinished
	b.setStatus(b.ctx, status)
	reason := ""
	if cancelled {
		reason = "cancelled by " + b.state.Control.Cancelled.By
	}
	b.tell(notify.Finished, reason, "")
	if b.state.Progress.BillingErrors > 0 {
		b.tell(notify.BillingOwed, "Rev.io steps failed: starter billing-retry "+b.in.BulkChangeID, "")
	}
	return &api.BulkChangeResult{
		BulkChangeID: b.in.BulkChangeID, Status: status, Total: b.state.Plan.Total,
		Processed: finished.Processed, Errors: finished.Errors, Cancelled: finished.Cancelled, SitesSet: finished.SitesSet,
		Error: b.state.Progress.Error, Progress: b.state.Progress,
	}, nil
}

// settleStrandedBilling runs the stranded Rev.io steps as a billing retry
// child; a step whose device workflow still runs is left to it, and checked
// again a minute later.
func (b *bulkRun) settleStrandedBilling(attempt, owed int) error {
	b.state.Progress.Phase = change.PhaseSettlingBilling
	b.state.Progress.BillingPending = owed
	b.touch()
	b.logger.Warn("Rev.io steps owed at the end of the bulk change", "owed", owed, "attempt", attempt)
	ctx := workflow.WithChildOptions(b.ctx, workflow.ChildWorkflowOptions{
		WorkflowID: api.BillingSettleWorkflowID(b.in.BulkChangeID, b.state.Runs, attempt),
	})
	var res api.BillingRetryResult
	in := api.BillingRetryInput{BulkChangeID: b.in.BulkChangeID, Tenant: b.tenant(), StrandedOnly: true}
	if err := workflow.ExecuteChildWorkflow(ctx, BillingRetry, in).Get(b.ctx, &res); err != nil {
		return fmt.Errorf("settle stranded Rev.io steps: %w", err)
	}
	b.state.Progress.BillingErrors += res.Failed
	if res.Attempted == 0 {
		return workflow.Sleep(b.ctx, time.Minute)
	}
	return nil
}
