package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// startChildren starts the next page of children. Their starts are
// confirmed by the server seconds later on a busy host; the parent does not
// wait for them (it would keep a page, not a window, in flight): a
// coroutine confirms them while the parent goes on, and a continue-as-new
// waits until none is pending. Runs recorded before that change
// (startWithoutWaiting off) wait for the whole page here.
func (b *bulkRun) startChildren() error {
	limit := min(b.state.Plan.Options.Window-len(b.inFlight), b.state.Queued, startPage)
	var page []activities.DeviceToStart
	in := activities.ListDevicesInput{
		BulkChangeID:         b.in.BulkChangeID,
		After:                b.state.Cursor,
		MaxBatch:             b.state.NextBatch - 1,
		Limit:                limit,
		UnfinishedBelowBatch: b.state.RecoveredBelow,
		// Each child gets what its workflow decides from in its input
		// (api.DeviceChangeInput.Known): one read per page here instead of
		// one marker per device there.
		WithState: true,
	}
	if err := workflow.ExecuteLocalActivity(withLocalDB(b.ctx), a.ListDevicesToStart, in).Get(b.ctx, &page); err != nil {
		return err
	}
	if b.state.Shard != nil && b.state.Control.Paused {
		// Paused while the page was read: the pause has returned to the
		// operator, so no device workflow starts (the page is read again
		// on resume).
		return nil
	}
	if len(page) == 0 {
		// The counters and the database disagree; trust the database.
		b.logger.Warn("no device changes left to start", "queued", b.state.Queued)
		b.state.Queued = 0
		return nil
	}
	children := make([]requestedChild, 0, len(page))
	for _, d := range page {
		children = append(children, requestedChild{dev: d, future: b.startChild(d)})
		b.inFlight[d.ID] = d.ICCID
		b.starting[d.ID] = true
		b.order = append(b.order, d.ID)
		b.state.Cursor = api.Cursor{BatchNo: d.BatchNo, Seq: d.Seq}
		b.state.Queued--
		b.started++
		b.state.Progress.Started++
	}
	b.touch()
	if b.startWithoutWaiting {
		workflow.Go(b.ctx, func(ctx workflow.Context) { b.confirmStarts(ctx, children) })
		return nil
	}
	b.confirmStarts(b.ctx, children)
	return nil
}

// requestedChild is a child whose start the parent requested.
type requestedChild struct {
	dev    activities.DeviceToStart
	future workflow.ChildWorkflowFuture
}

// confirmStarts waits for the server's answer to each start, in the order
// requested, and records the device changes whose workflow could not start.
// ctx is the context of the coroutine it runs in.
func (b *bulkRun) confirmStarts(ctx workflow.Context, children []requestedChild) {
	for _, c := range children {
		err := c.future.GetChildWorkflowExecution().Get(ctx, nil)
		var already *temporal.ChildWorkflowExecutionAlreadyStartedError
		switch {
		case err == nil, errors.As(err, &already):
			// Already running (the parent was reset): it reports to us too.
		default:
			b.logger.Error("device workflow did not start", "iccid", c.dev.ICCID, "error", err)
			b.childNotStarted(ctx, c.dev, err)
		}
		// Only now: a continue-as-new waits for the failure's record too.
		delete(b.starting, c.dev.ID)
	}
}

// childNotStarted ends the device change whose workflow could not start:
// nothing else would ever record it.
func (b *bulkRun) childNotStarted(ctx workflow.Context, d activities.DeviceToStart, cause error) {
	res := api.DeviceResult{
		DeviceChangeID: d.ID,
		ICCID:          d.ICCID,
		Operation:      d.Operation,
		Status:         change.Failed,
		ErrorCode:      change.WorkflowStartFailed,
	}
	if workflow.GetVersion(ctx, versionRecordStartFailure, workflow.DefaultVersion, 1) >= 1 {
		in := activities.EndDeviceChangeInput{
			DeviceChangeID: d.ID,
			Code:           change.WorkflowStartFailed,
			Message:        "its device workflow could not start: " + rootMessage(cause),
		}
		if err := workflow.ExecuteActivity(withDB(ctx), a.EndDeviceChange, in).Get(ctx, &res); err != nil {
			b.logger.Error("could not record the device change", "iccid", d.ICCID, "error", err)
		}
	}
	b.record(res)
	// A parent waiting for results wakes: this may have been the last one.
	b.unstarted++
}

func (b *bulkRun) startChild(d activities.DeviceToStart) workflow.ChildWorkflowFuture {
	// Every change of a device, across bulk changes, is found by its ICCID
	// in the Web UI; they cost no event.
	attrs := []temporal.SearchAttributeUpdate{
		api.BulkChangeIDAttr.ValueSet(b.in.BulkChangeID),
		api.ICCIDAttr.ValueSet(d.ICCID),
		api.OperationAttr.ValueSet([]string{string(d.Operation)}),
	}
	// The tenant only when known: a parent recorded before tenants (no
	// tenant in its input nor its plan) starts its children exactly as it
	// did. Replay would not notice anyway: the SDK matches a recorded child
	// start by its workflow type alone (isCommandMatchEvent in
	// go.temporal.io/sdk/internal/internal_task_handlers.go), neither its
	// search attributes nor its input are compared.
	tenant := b.tenant()
	if tenant != "" {
		attrs = append(attrs, api.TenantAttr.ValueSet(tenant))
	}
	ctx := workflow.WithChildOptions(b.ctx, workflow.ChildWorkflowOptions{
		WorkflowID: api.DeviceChangeWorkflowID(b.in.BulkChangeID, d.ICCID),
		// Children outlive the parent's continue-as-new and report their
		// result by signal.
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		TypedSearchAttributes: temporal.NewSearchAttributes(attrs...),
		// What the Web UI shows for it (user metadata: not compared on
		// replay, so no version).
		StaticSummary: string(d.Operation) + " " + d.ICCID + " · bulk change " + b.in.BulkChangeID,
	})
	return workflow.ExecuteChildWorkflow(ctx, DeviceChange, api.DeviceChangeInput{
		BulkChangeID:     b.in.BulkChangeID,
		Tenant:           tenant,
		DeviceChangeID:   d.ID,
		ICCID:            d.ICCID,
		Operation:        d.Operation,
		AccountName:      b.state.Plan.AccountName,
		ParentWorkflowID: workflow.GetInfo(b.ctx).WorkflowExecution.ID,
		Options:          b.state.Plan.Options,
		Protocol:         api.DeviceChangeProtocol,
		Known:            d.Known,
	})
}

// coalesceAbove and coalesceFor: with this many children in flight,
// results arrive close together; after the first one the workflow waits a
// moment and takes the others in the same workflow task, instead of one
// workflow task per result. That is most of the server's work per device.
const (
	coalesceAbove = 50
	coalesceFor   = 500 * time.Millisecond
)

func (b *bulkRun) awaitResult() {
	if !b.watch {
		var r api.DeviceResult
		b.results.Receive(b.ctx, &r)
		b.record(r)
		b.pauseToCoalesce()
		return
	}
	// One timer at a time, re-armed only when it fires: results arriving
	// cost no timer events. The wait also ends on an operator's request
	// (a resume, say).
	if b.watchTimer == nil {
		b.watchTimer = workflow.NewTimer(b.ctx, b.stallCheck())
	}
	epoch, unstarted := b.epoch, b.unstarted
	b.armReportTimer()
	_ = workflow.Await(b.ctx, func() bool {
		return b.results.Len() > 0 || b.watchTimer.IsReady() || b.epoch != epoch || b.unstarted != unstarted ||
			b.reportTimerFired()
	})
	got := b.results.Len() > 0
	b.drainResults()
	if got {
		b.pauseToCoalesce()
	}
	if b.watchTimer.IsReady() {
		b.watchTimer = nil
		stalled := func() bool { return workflow.Now(b.ctx).Sub(b.lastResultAt) >= b.stallCheck() }
		if stalled() && b.results.Len() > 0 &&
			workflow.GetVersion(b.ctx, versionDrainBeforeStallCheck, workflow.DefaultVersion, 1) >= 1 {
			// Results came while the wait to coalesce them ran long (a
			// server's timers late under load): they are not a stall.
			b.drainResults()
		}
		if stalled() {
			b.tell(notify.Stalled, fmt.Sprintf("no device result for %s; %d device workflows awaited",
				workflow.Now(b.ctx).Sub(b.lastResultAt).Round(time.Second), len(b.inFlight)), b.stallOccurrence())
			b.checkChildren()
		}
	}
}

func (b *bulkRun) pauseToCoalesce() {
	if b.coalesce && len(b.inFlight) >= coalesceAbove {
		_ = workflow.Sleep(b.ctx, coalesceFor)
	}
}

// defaultStallCheck is how long a parent waits without any result before it
// asks Temporal whether its children still run.
const defaultStallCheck = 10 * time.Minute

func (b *bulkRun) stallCheck() time.Duration {
	if d := b.state.Plan.Options.Timing.StallCheck; d > 0 {
		return d
	}
	return defaultStallCheck
}

// checkChildren notices device workflows that ended without reporting
// (failed, terminated by an operator, timed out): their device change is
// recorded ERROR with DEVICE_WORKFLOW_ENDED (or keeps the outcome it had),
// and counted, so the bulk change never waits forever for them.
func (b *bulkRun) checkChildren() {
	in := activities.CheckDeviceWorkflowsInput{BulkChangeID: b.in.BulkChangeID}
	for _, id := range b.order {
		// A child whose start is not yet confirmed may not exist yet: not
		// finding it would say nothing.
		if iccid, ok := b.inFlight[id]; ok && !b.starting[id] {
			in.InFlight = append(in.InFlight, api.InFlight{DeviceChangeID: id, ICCID: iccid})
		}
	}
	var ended []api.DeviceResult
	if err := workflow.ExecuteActivity(withDB(b.ctx), a.CheckDeviceWorkflows, in).Get(b.ctx, &ended); err != nil {
		b.logger.Error("could not check the device workflows", "error", err)
		return
	}
	for _, r := range ended {
		b.logger.Warn("device workflow ended without reporting", "iccid", r.ICCID, "errorCode", r.ErrorCode)
		b.record(r)
	}
	b.lastResultAt = workflow.Now(b.ctx)
}

func (b *bulkRun) drainResults() { takeAll(b.results, b.record) }

// takeAll hands every signal waiting on ch to take, without blocking.
func takeAll[T any](ch workflow.ReceiveChannel, take func(T)) {
	for {
		var v T
		if !ch.ReceiveAsync(&v) {
			return
		}
		take(v)
	}
}

// record counts a child's result. Results of children not in flight
// (duplicates) are ignored.
func (b *bulkRun) record(r api.DeviceResult) {
	if _, ok := b.inFlight[r.DeviceChangeID]; !ok {
		return
	}
	delete(b.inFlight, r.DeviceChangeID)
	b.lastResultAt = workflow.Now(b.ctx)
	p := &b.state.Progress
	if r.Status == change.Processed {
		p.AddProcessed(r.Outcome, 1)
	} else {
		p.AddError(r.ErrorCode, 1)
	}
	if r.BillingError {
		p.BillingErrors++
	}
	b.unreported++
	b.touch()
}
