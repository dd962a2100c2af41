package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Operators' requests to a running bulk change arrive as Temporal Updates:
// a validator refuses what makes no sense (with the reason, changing
// nothing), the handler records who asked, when and why in the audit log,
// and returns once the request has taken effect.

// setupControl registers the operators' updates.
func (b *bulkRun) setupControl() error {
	handlers := []struct {
		name     string
		validate func(workflow.Context, api.OperatorRequest) error
		handle   func(workflow.Context, api.OperatorRequest) (api.OperatorResult, error)
	}{
		{api.PauseUpdate, b.validatePause, b.pause},
		{api.ResumeUpdate, b.validateResume, b.resume},
		{api.CancelUpdate, b.validateCancel, b.cancel},
		{api.ApproveUpdate, b.validateApprove, b.approve},
		{api.RejectUpdate, b.validateReject, b.reject},
	}
	for _, h := range handlers {
		validate := h.validate
		err := workflow.SetUpdateHandlerWithOptions(b.ctx, h.name, h.handle, workflow.UpdateHandlerOptions{
			Validator: func(ctx workflow.Context, req api.OperatorRequest) error {
				if strings.TrimSpace(req.By) == "" {
					return errors.New(`say who asks: "by" is required (recorded in the audit log)`)
				}
				// Refusing more in a validator changes no command of an
				// accepted update, and validators do not run on replay.
				if err := req.Validate(); err != nil {
					return err
				}
				if !b.watch {
					return errors.New(
						"this bulk change runs on workflow code older than operator requests; it cannot take them",
					)
				}
				return validate(ctx, req)
			},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bulkRun) validatePause(_ workflow.Context, _ api.OperatorRequest) error {
	c := b.state.Control
	switch {
	case b.ended():
		return fmt.Errorf("the bulk change has ended (%s): there is nothing to pause", b.state.Progress.Status)
	case c.Cancelled != nil:
		return fmt.Errorf("the bulk change is being cancelled (by %s)", c.Cancelled.By)
	case c.Paused:
		return fmt.Errorf(
			"the bulk change is already paused (by %s at %s)",
			c.PausedBy.By,
			c.PausedBy.At.Format(time.RFC3339),
		)
	case b.waitingToStart():
		return fmt.Errorf(
			"the bulk change has not started (%s): nothing is being sent; cancel it instead",
			b.state.Progress.Status,
		)
	}
	return nil
}

func (b *bulkRun) validateResume(_ workflow.Context, _ api.OperatorRequest) error {
	if !b.state.Control.Paused {
		return fmt.Errorf("the bulk change is not paused (%s)", b.state.Progress.Status)
	}
	return nil
}

func (b *bulkRun) validateCancel(_ workflow.Context, _ api.OperatorRequest) error {
	c := b.state.Control
	switch {
	case c.Cancelled != nil:
		return fmt.Errorf(
			"the bulk change was already cancelled (by %s at %s)",
			c.Cancelled.By,
			c.Cancelled.At.Format(time.RFC3339),
		)
	case b.ended():
		return fmt.Errorf("the bulk change has ended (%s): there is nothing to cancel", b.state.Progress.Status)
	}
	return nil
}

func (b *bulkRun) validateApprove(_ workflow.Context, req api.OperatorRequest) error {
	if err := b.awaitingApproval(); err != nil {
		return err
	}
	// Compared normalised: "Alice" must not approve "alice"'s change.
	if api.SameOperator(req.By, b.state.Plan.SubmittedBy) {
		msg := fmt.Sprintf("%s submitted this bulk change: another operator must approve it (four eyes)",
			b.state.Plan.SubmittedBy)
		if req.By != b.state.Plan.SubmittedBy {
			msg += fmt.Sprintf("; %q names the same operator (names are compared ignoring case and spacing)", req.By)
		}
		return errors.New(msg)
	}
	return nil
}

func (b *bulkRun) validateReject(_ workflow.Context, _ api.OperatorRequest) error {
	return b.awaitingApproval()
}

func (b *bulkRun) awaitingApproval() error {
	if b.state.Progress.Status != change.BulkAwaitingApproval || b.state.Control.Cancelled != nil {
		return fmt.Errorf("the bulk change is not awaiting approval (%s)", b.state.Progress.Status)
	}
	return nil
}

// pause stops new requests and new device workflows. It returns once no
// request is in flight, so nothing reaches ThingSpace after it returns.
func (b *bulkRun) pause(ctx workflow.Context, req api.OperatorRequest) (api.OperatorResult, error) {
	b.state.Control.Paused = true
	b.state.Control.PausedBy = b.action(req)
	b.setStatus(ctx, change.BulkPaused)
	b.audit(ctx, api.PauseUpdate, req)
	err := workflow.Await(ctx, func() bool { return !b.sending })
	if err == nil {
		err = b.awaitAdoption(ctx)
	}
	if err == nil && b.state.Tree != nil {
		err = b.controlShards(ctx)
	}
	return api.OperatorResult{Status: change.BulkPaused,
		Message: "paused: nothing new is sent; changes already sent are still awaited and recorded"}, err
}

func (b *bulkRun) resume(ctx workflow.Context, req api.OperatorRequest) (api.OperatorResult, error) {
	b.state.Control.Paused = false
	b.state.Control.PausedBy = nil
	b.setStatus(ctx, change.BulkRunning)
	b.audit(ctx, api.ResumeUpdate, req)
	if err := b.awaitAdoption(ctx); err != nil {
		return api.OperatorResult{}, err
	}
	if b.state.Tree != nil {
		if err := b.controlShards(ctx); err != nil {
			return api.OperatorResult{}, err
		}
	}
	return api.OperatorResult{Status: change.BulkRunning, Message: "resumed"}, nil
}

// cancel ends the device changes not yet sent as CANCELLED; the ones
// already sent finish normally, and the bulk change then ends CANCELLED.
func (b *bulkRun) cancel(ctx workflow.Context, req api.OperatorRequest) (api.OperatorResult, error) {
	n, err := b.cancelUnsent(ctx, req, api.CancelUpdate)
	msg := fmt.Sprintf("cancelled: %d device changes not yet sent end CANCELLED; %d already sent finish normally",
		n, b.state.Progress.DevicesSent)
	return api.OperatorResult{Status: change.BulkCancelled, Message: msg}, err
}

func (b *bulkRun) approve(ctx workflow.Context, req api.OperatorRequest) (api.OperatorResult, error) {
	b.state.Control.Approved = b.action(req)
	b.audit(ctx, api.ApproveUpdate, req)
	return api.OperatorResult{Status: change.BulkRunning, Message: "approved by " + req.By}, nil
}

func (b *bulkRun) reject(ctx workflow.Context, req api.OperatorRequest) (api.OperatorResult, error) {
	if req.Reason == "" {
		req.Reason = "rejected"
	} else {
		req.Reason = "rejected: " + req.Reason
	}
	n, err := b.cancelUnsent(ctx, req, api.RejectUpdate)
	return api.OperatorResult{Status: change.BulkCancelled,
		Message: fmt.Sprintf(
			"rejected: the bulk change is cancelled; %d device changes end CANCELLED, none was sent",
			n,
		)}, err
}

// cancelUnsent records the cancellation, waits for a request in flight to be
// answered (its devices were sent: they finish normally), then ends every
// device change not yet sent as CANCELLED.
func (b *bulkRun) cancelUnsent(ctx workflow.Context, req api.OperatorRequest, action string) (int, error) {
	b.state.Control.Cancelled = b.action(req)
	b.state.Control.Paused = false
	b.audit(ctx, action, req)
	if err := workflow.Await(ctx, func() bool { return !b.sending }); err != nil {
		return 0, err
	}
	if err := b.awaitAdoption(ctx); err != nil {
		return 0, err
	}
	if b.state.Tree != nil {
		// No shard sends anything from here on: what is unsent stays so.
		if err := b.controlShards(ctx); err != nil {
			return 0, err
		}
	}
	var n int
	in := activities.CancelUnsentInput{BulkChangeID: b.in.BulkChangeID, By: req.By, Reason: req.Reason}
	if err := workflow.ExecuteActivity(withDB(ctx), a.CancelUnsent, in).Get(ctx, &n); err != nil {
		return 0, err
	}
	b.state.UnsentCancelled = true
	b.state.Progress.Cancelled += n
	b.state.Progress.Waiting = ""
	b.touch()
	return n, nil
}

func (b *bulkRun) action(req api.OperatorRequest) *api.OperatorAction {
	return &api.OperatorAction{By: req.By, Reason: req.Reason, At: workflow.Now(b.ctx)}
}

// audit records an operator's request in the audit log and the bulk
// change's status in PostgreSQL. A failure to record is logged: the request
// has been carried out.
func (b *bulkRun) audit(ctx workflow.Context, action string, req api.OperatorRequest) {
	key := action
	if b.inUpdate(ctx) {
		key = workflow.GetCurrentUpdateInfo(ctx).ID
	}
	in := activities.OperatorActionInput{
		BulkChangeID: b.in.BulkChangeID,
		Action:       action,
		By:           req.By,
		Reason:       req.Reason,
		Status:       b.state.Progress.Status,
		Key:          key,
	}
	if err := workflow.ExecuteActivity(withDB(ctx), a.RecordOperatorAction, in).Get(ctx, nil); err != nil {
		b.logger.Error("could not record the operator's request", "action", action, "error", err)
	}
	b.epoch++
}

// inUpdate reports whether ctx is an update handler's (the approval timer's
// cancellation runs in the workflow's own coroutine).
func (b *bulkRun) inUpdate(ctx workflow.Context) bool {
	return ctx != b.ctx
}

// setStatus is the bulk change's status as operators see it, kept current
// in its BulkChangeStatus search attribute (an event per change of status).
func (b *bulkRun) setStatus(ctx workflow.Context, status change.BulkStatus) {
	if b.state.Progress.Status == status {
		return
	}
	b.state.Progress.Status = status
	b.touch()
	if b.searchable {
		if err := workflow.UpsertTypedSearchAttributes(ctx, api.BulkChangeStatusAttr.ValueSet(string(status))); err != nil {
			b.logger.Warn("could not update the status search attribute", "error", err)
		}
	}
}

// waitingToStart: scheduled, or awaiting approval.
func (b *bulkRun) waitingToStart() bool {
	s := b.state.Progress.Status
	return s == change.BulkScheduled || s == change.BulkAwaitingApproval
}

// ended: the bulk change is finishing or has finished.
func (b *bulkRun) ended() bool {
	switch b.state.Progress.Phase {
	case change.PhaseFinishing, change.PhaseSettlingBilling, change.PhaseFinished, change.PhaseFailed:
		return true
	}
	return false
}

// awaitGo holds a bulk change that may not send anything yet: until a
// second operator approves it (cancelled when the approval does not come in
// time), then until its start time (a durable timer). It reports whether
// the bulk change may go on; a cancelled one may not.
func (b *bulkRun) awaitGo() (bool, error) {
	opts := b.state.Plan.Options
	waited := false
	if ap := opts.Approval; ap != nil && b.state.Control.Approved == nil {
		waited = true
		b.setStatus(b.ctx, change.BulkAwaitingApproval)
		b.state.Progress.Waiting = fmt.Sprintf(
			"approval by an operator other than %s (%s)",
			b.state.Plan.SubmittedBy,
			ap.Reason,
		)
		b.tell(notify.ApprovalNeeded, b.state.Progress.Waiting, "")
		decided, err := workflow.AwaitWithTimeout(b.ctx, ap.ExpiresAfter, func() bool {
			return b.state.Control.Approved != nil || b.state.Control.Cancelled != nil
		})
		if err != nil {
			return false, err
		}
		if !decided {
			expiry := api.OperatorRequest{
				By:     "approval timer",
				Reason: fmt.Sprintf("not approved within %s", ap.ExpiresAfter),
			}
			if _, err := b.cancelUnsent(b.ctx, expiry, activities.ApprovalExpired); err != nil {
				return false, err
			}
		}
	}
	if b.state.Control.Cancelled == nil && workflow.Now(b.ctx).Before(opts.NotBefore) {
		waited = true
		b.setStatus(b.ctx, change.BulkScheduled)
		b.state.Progress.Waiting = "its start time, " + opts.NotBefore.Format(time.RFC3339)
		if _, err := workflow.AwaitWithTimeout(b.ctx, opts.NotBefore.Sub(workflow.Now(b.ctx)), func() bool {
			return b.state.Control.Cancelled != nil
		}); err != nil {
			return false, err
		}
	}
	if b.state.Control.Cancelled != nil {
		// The cancellation's handler ends the device changes; wait for it.
		return false, workflow.Await(b.ctx, func() bool { return b.state.UnsentCancelled })
	}
	if waited {
		b.state.Progress.Waiting = ""
		b.setStatus(b.ctx, change.BulkRunning)
		in := activities.SetBulkStatusInput{BulkChangeID: b.in.BulkChangeID, Status: change.BulkRunning}
		if err := workflow.ExecuteActivity(withDB(b.ctx), a.SetBulkStatus, in).Get(b.ctx, nil); err != nil {
			return false, err
		}
	}
	return true, nil
}
