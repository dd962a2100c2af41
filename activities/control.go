package activities

import (
	"context"
	"fmt"

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
	Status string `json:"status"`
	// Key makes the entry idempotent (the update's ID).
	Key string `json:"key"`
}

// RecordOperatorAction writes who asked what of a bulk change, when and
// why, to the audit log, and the bulk change's status.
func (a *Activities) RecordOperatorAction(ctx context.Context, in OperatorActionInput) error {
	err := a.Store.RecordOperatorAction(
		ctx,
		db.OperatorAction{BulkChangeID: in.BulkChangeID, Action: in.Action, By: in.By,
			Reason: in.Reason, Status: change.BulkStatus(in.Status), Key: in.Key},
	)
	if err != nil {
		return fmt.Errorf("record %s of %s: %w", in.Action, in.BulkChangeID, err)
	}
	return nil
}

// SetBulkStatusInput moves a bulk change to a status.
type SetBulkStatusInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	Status       string `json:"status"`
}

// SetBulkStatus records a bulk change's status (RUNNING once its approval
// and start time have come).
func (a *Activities) SetBulkStatus(ctx context.Context, in SetBulkStatusInput) error {
	return a.Store.SetBulkStatus(ctx, in.BulkChangeID, change.BulkStatus(in.Status))
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
