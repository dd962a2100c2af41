package workflows

import (
	"errors"
	"fmt"
	"strconv"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/notify"
)

// tell lets people know what they must act on or want to know
// (notifications.*): the event goes to a SendNotification workflow of its
// own, started as an abandoned child, so a receiver that is down for hours
// delays nothing here, and the event outlives this run. Only the start is
// awaited. An event's workflow ID is the event's: the same event told
// again (a recovered run, a replayed wait) is refused by the server and
// sent once. occurrence tells apart the events of one kind a bulk change
// may have several of (stalls).
func (b *bulkRun) tell(kind notify.Kind, reason, occurrence string) {
	if !b.notifies {
		return
	}
	p := b.state.Progress
	ev := notify.Event{
		ID:           notify.EventID(b.in.BulkChangeID, kind, occurrence),
		Kind:         kind,
		BulkChangeID: b.in.BulkChangeID,
		Tenant:       b.tenant(),
		Account:      b.state.Plan.AccountName,
		Summary:      b.summary(),
		Total:        b.state.Plan.Total,
		Processed:    p.Processed,
		Errors:       p.Errors,
		Cancelled:    p.Cancelled,
		ErrorsByCode: notify.TopErrors(p.ErrorsByCode),
		BillingOwed:  p.BillingErrors + p.BillingPending,
		Reason:       reason,
		At:           workflow.Now(b.ctx),
	}
	ctx := workflow.WithChildOptions(b.ctx, notify.ChildOptions(ev))
	f := workflow.ExecuteChildWorkflow(ctx, notify.WorkflowName, notify.Input{Event: ev})
	err := f.GetChildWorkflowExecution().Get(b.ctx, nil)
	var already *temporal.ChildWorkflowExecutionAlreadyStartedError
	if err != nil && !errors.As(err, &already) {
		// A notification is never a reason for the bulk change to stop.
		b.logger.Warn("notification not started", "kind", kind, "error", err)
	}
}

// summary is the bulk change in a few words for a notification; no device
// identifier.
func (b *bulkRun) summary() string {
	s := fmt.Sprintf("%d device changes", b.state.Plan.Total)
	if by := b.state.Plan.SubmittedBy; by != "" {
		s += ", submitted by " + by
	}
	return s
}

// stallOccurrence names one stall: the last result before it.
func (b *bulkRun) stallOccurrence() string {
	return strconv.FormatInt(b.lastResultAt.Unix(), 10)
}
