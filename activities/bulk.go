package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// StartBulkChange checks that the bulk change exists and has not finished,
// marks it running and returns its plan.
func (a *Activities) StartBulkChange(ctx context.Context, bulkID string) (*api.Plan, error) {
	b, err := a.Store.GetBulkChange(ctx, bulkID)
	if errors.Is(err, db.ErrNotFound) {
		return nil, permanent(ErrTypeNotRunnable, "bulk change %s does not exist", bulkID)
	}
	if err != nil {
		return nil, fmt.Errorf("read bulk change %s: %w", bulkID, err)
	}
	if b.Status == db.BulkFinished || b.Status == db.BulkFailed {
		return nil, permanent(ErrTypeNotRunnable, "bulk change %s has already ended (%s)", bulkID, b.Status)
	}
	var opts api.Options
	if err := json.Unmarshal(b.Options, &opts); err != nil {
		return nil, permanent(ErrTypeInvalidData, "bulk change %s: options: %v", bulkID, err)
	}
	if err := a.Store.MarkBulkRunning(ctx, bulkID); err != nil {
		return nil, fmt.Errorf("mark bulk change %s running: %w", bulkID, err)
	}
	return &api.Plan{BulkChangeID: b.ID, AccountName: b.AccountName, Total: b.Total, Batches: b.Batches, Options: opts}, nil
}

// CheckThingSpaceAuth makes sure both ThingSpace tokens can be obtained.
// Refused credentials come back as a non-retryable error: retrying them
// would lock the Verizon account.
func (a *Activities) CheckThingSpaceAuth(ctx context.Context) error {
	return thingSpaceError("thingspace authentication", a.ThingSpace.CheckAuth(ctx))
}

// FailBulkInput ends a bulk change that cannot run.
type FailBulkInput struct {
	BulkChangeID string
	Code         string
	Message      string
}

// FailBulkChange marks the bulk change FAILED and its unsent device changes
// ERROR with the reason.
func (a *Activities) FailBulkChange(ctx context.Context, in FailBulkInput) error {
	if err := a.Store.FailBulkChange(ctx, in.BulkChangeID, in.Code, in.Message); err != nil {
		return fmt.Errorf("fail bulk change %s: %w", in.BulkChangeID, err)
	}
	return nil
}

// FailUnsentInput ends the device changes of batches from FromBatch on that
// were never sent.
type FailUnsentInput struct {
	BulkChangeID string
	FromBatch    int
	Code         string
	Message      string
}

// FailUnsent marks as ERROR every device change of the bulk change, from the
// given batch on, that is pending or whose request never reached ThingSpace.
// It returns how many it ended.
func (a *Activities) FailUnsent(ctx context.Context, in FailUnsentInput) (int, error) {
	n, err := a.Store.FailUnsent(ctx, in.BulkChangeID, in.FromBatch, in.Code, in.Message)
	if err != nil {
		return 0, fmt.Errorf("fail unsent device changes of %s: %w", in.BulkChangeID, err)
	}
	return n, nil
}

// ListDevicesInput pages the device changes whose child should start next.
type ListDevicesInput struct {
	BulkChangeID string
	After        api.Cursor
	MaxBatch     int
	Limit        int
}

// DeviceToStart is one child to start.
type DeviceToStart struct {
	ID        int64  `json:"id"`
	Seq       int    `json:"seq"`
	BatchNo   int    `json:"batchNo"`
	ICCID     string `json:"iccid"`
	Operation string `json:"operation"`
}

// ListDevicesToStart returns the next device changes of submitted batches.
// Pages are small: the device list never travels as one payload.
func (a *Activities) ListDevicesToStart(ctx context.Context, in ListDevicesInput) ([]DeviceToStart, error) {
	rows, err := a.Store.ListDevicesToStart(ctx, in.BulkChangeID, db.StartCursor{BatchNo: in.After.BatchNo, Seq: in.After.Seq},
		in.MaxBatch, in.Limit)
	if err != nil {
		return nil, err
	}
	out := make([]DeviceToStart, len(rows))
	for i, r := range rows {
		out[i] = DeviceToStart{ID: r.ID, Seq: r.Seq, BatchNo: r.BatchNo, ICCID: r.ICCID, Operation: r.Operation}
	}
	return out, nil
}

// FinishInput ends a bulk change.
type FinishInput struct {
	BulkChangeID string
	DefaultSite  string
}

// FinishResult is the bulk change's final count.
type FinishResult struct {
	Processed int `json:"processed"`
	Errors    int `json:"errors"`
	SitesSet  int `json:"sitesSet"`
}

// FinishBulkChange gives the default site to devices left in inventory or
// pending state and marks the bulk change FINISHED with its counts, taken
// from the device changes themselves.
func (a *Activities) FinishBulkChange(ctx context.Context, in FinishInput) (*FinishResult, error) {
	sites, err := a.Store.AssignDefaultSite(ctx, in.BulkChangeID, in.DefaultSite)
	if err != nil {
		return nil, err
	}
	b, err := a.Store.FinishBulkChange(ctx, in.BulkChangeID)
	if err != nil {
		return nil, err
	}
	return &FinishResult{Processed: b.Processed, Errors: b.Errors, SitesSet: sites}, nil
}
