package activities

import (
	"context"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
)

// OperatorActionInput is an operator's request to a bulk change, for the
// audit log.
type OperatorActionInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	Action       string `json:"action"` // pause, resume, cancel, approve, reject, approval-expired
	By           string `json:"by"`
	Reason       string `json:"reason,omitempty"`
	// Status is the bulk change's status after the request.
	Status change.BulkStatus `json:"status"`
	// Key makes the entry idempotent (the update's ID).
	Key string `json:"key"`
}

// RecordOperatorAction writes who asked what of a bulk change, when and
// why, to the audit log, and the bulk change's status. Beside the name the
// operator typed (a claim), the entry records the Temporal client identity
// the request came with.
func (a *Activities) RecordOperatorAction(ctx context.Context, in OperatorActionInput) error {
	var identity string
	if in.Action != ApprovalExpired {
		var err error
		if identity, err = a.updateCallerIdentity(ctx, in.Key); err != nil {
			return err
		}
	}
	err := a.Store.RecordOperatorAction(
		ctx,
		db.OperatorAction{BulkChangeID: in.BulkChangeID, Action: in.Action, By: in.By,
			Reason: in.Reason, Status: in.Status, Key: in.Key, Identity: identity},
	)
	if err != nil {
		return fmt.Errorf("record %s of %s: %w", in.Action, in.BulkChangeID, err)
	}
	return nil
}

// ApprovalExpired is the action of the approval timer: no operator, no
// update.
const ApprovalExpired = "approval-expired"

// updateCallerIdentity is the Temporal client identity of the Update with
// this ID to the calling workflow, as the server recorded it when it
// accepted the update (the history, read from its end: the update is
// recent). "" when the history holds no such update.
func (a *Activities) updateCallerIdentity(ctx context.Context, updateID string) (string, error) {
	if a.Temporal == nil || updateID == "" {
		return "", nil
	}
	info := activity.GetInfo(ctx)
	req := &workflowservice.GetWorkflowExecutionHistoryReverseRequest{
		Namespace: info.Namespace,
		Execution: &commonpb.WorkflowExecution{
			WorkflowId: info.WorkflowExecution.ID,
			RunId:      info.WorkflowExecution.RunID,
		},
		MaximumPageSize: 200,
	}
	for {
		resp, err := a.Temporal.WorkflowService().GetWorkflowExecutionHistoryReverse(ctx, req)
		if err != nil {
			return "", fmt.Errorf("read the identity of update %s: %w", updateID, err)
		}
		for _, e := range resp.GetHistory().GetEvents() {
			acc := e.GetWorkflowExecutionUpdateAcceptedEventAttributes()
			if acc != nil && acc.GetAcceptedRequest().GetMeta().GetUpdateId() == updateID {
				return acc.GetAcceptedRequest().GetMeta().GetIdentity(), nil
			}
		}
		if len(resp.GetNextPageToken()) == 0 {
			return "", nil
		}
		req.NextPageToken = resp.GetNextPageToken()
	}
}

// SetBulkStatusInput moves a bulk change to a status.
type SetBulkStatusInput struct {
	BulkChangeID string            `json:"bulkChangeId"`
	Status       change.BulkStatus `json:"status"`
}

// SetBulkStatus records a bulk change's status (RUNNING once its approval
// and start time have come).
func (a *Activities) SetBulkStatus(ctx context.Context, in SetBulkStatusInput) error {
	return a.Store.SetBulkStatus(ctx, in.BulkChangeID, in.Status)
}

// CancelUnsentInput cancels the device changes of a bulk change not yet
// sent to ThingSpace.
type CancelUnsentInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	By           string `json:"by"`
	Reason       string `json:"reason,omitempty"`
}

// CancelUnsent ends every device change of the bulk change that was not
// sent to ThingSpace (still PENDING) as CANCELLED, each with its audit
// result entry, and returns how many.
func (a *Activities) CancelUnsent(ctx context.Context, in CancelUnsentInput) (int, error) {
	msg := "cancelled by " + in.By
	if in.Reason != "" {
		msg += ": " + in.Reason
	}
	byOp, err := a.Store.CancelUnsent(ctx, in.BulkChangeID, msg)
	if err != nil {
		return 0, fmt.Errorf("cancel the unsent device changes of %s: %w", in.BulkChangeID, err)
	}
	n := 0
	for _, op := range change.Operations {
		if byOp[op] == 0 {
			continue
		}
		n += byOp[op]
		if a.Metrics != nil {
			cancelled := string(change.Cancelled) // both the status and the outcome
			a.Metrics.DeviceChanges.WithLabelValues(string(op), cancelled, cancelled).Add(float64(byOp[op]))
		}
	}
	return n, nil
}
