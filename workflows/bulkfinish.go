package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
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
	b.st.Progress.Phase = "finishing"
	b.touch()
	cancelled := b.st.Control.Cancelled != nil
	var fin activities.FinishResult
	for attempt := 1; ; attempt++ {
		in := activities.FinishInput{BulkChangeID: b.in.BulkChangeID, DefaultSite: b.st.Plan.Options.DefaultSite,
			Cancelled: cancelled}
		// A fresh value each time: a result without billingOwed must not
		// keep the previous attempt's.
		fin = activities.FinishResult{}
		if err := workflow.ExecuteActivity(withDB(b.ctx), a.FinishBulkChange, in).Get(b.ctx, &fin); err != nil {
			return nil, err
		}
		if fin.BillingOwed == 0 {
			break
		}
		if err := b.settleStrandedBilling(attempt, fin.BillingOwed); err != nil {
			return nil, err
		}
	}
	status := api.StatusFinished
	if cancelled {
		status = api.StatusCancelled
	}
	b.st.Progress.Phase = "finished"
	b.setStatus(b.ctx, status)
	return &api.BulkChangeResult{
		BulkChangeID: b.in.BulkChangeID, Status: status, Total: b.st.Plan.Total,
		Processed: fin.Processed, Errors: fin.Errors, Cancelled: fin.Cancelled, SitesSet: fin.SitesSet,
		Error: b.st.Progress.Error, Progress: b.st.Progress,
	}, nil
}

// settleStrandedBilling runs the stranded Rev.io steps as a billing retry
// child; a step whose device workflow still runs is left to it, and checked
// again a minute later.
func (b *bulkRun) settleStrandedBilling(attempt, owed int) error {
	b.st.Progress.Phase = "settling_billing"
	b.st.Progress.BillingPending = owed
	b.touch()
	b.logger.Warn("Rev.io steps owed at the end of the bulk change", "owed", owed, "attempt", attempt)
	ctx := workflow.WithChildOptions(b.ctx, workflow.ChildWorkflowOptions{
		WorkflowID: api.BillingSettleWorkflowID(b.in.BulkChangeID, b.st.Runs, attempt),
	})
	var res api.BillingRetryResult
	in := api.BillingRetryInput{BulkChangeID: b.in.BulkChangeID, StrandedOnly: true}
	if err := workflow.ExecuteChildWorkflow(ctx, BillingRetry, in).Get(b.ctx, &res); err != nil {
		return fmt.Errorf("settle stranded Rev.io steps: %w", err)
	}
	b.st.Progress.BillingErrors += res.Failed
	if res.Attempted == 0 {
		return workflow.Sleep(b.ctx, time.Minute)
	}
	return nil
}
