package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// StartBulkChange checks that the bulk change exists and has not finished,
// marks it running and returns its plan.
func (a *Activities) StartBulkChange(ctx context.Context, bulkID string) (*api.Plan, error) {
	b, err := a.runnableBulkChange(ctx, bulkID)
	if err != nil {
		return nil, err
	}
	return a.planOf(ctx, b)
}

// runnableBulkChange reads a bulk change that a parent run may run: it
// exists, has not ended, and the calling workflow is the one recorded for it.
// A second parent started by hand under another workflow ID would take the
// children for its own, while they report to the recorded one, and wait
// forever.
func (a *Activities) runnableBulkChange(ctx context.Context, bulkID string) (*db.BulkChange, error) {
	b, err := a.Store.GetBulkChange(ctx, bulkID)
	if errors.Is(err, db.ErrNotFound) {
		return nil, permanent(ErrTypeNotRunnable, "bulk change %s does not exist", bulkID)
	}
	if err != nil {
		return nil, fmt.Errorf("read bulk change %s: %w", bulkID, err)
	}
	if b.Status == change.BulkFinished || b.Status == change.BulkFailed || b.Status == change.BulkCancelled {
		return nil, permanent(ErrTypeNotRunnable, "bulk change %s has already ended (%s)", bulkID, b.Status)
	}
	if wid := activity.GetInfo(ctx).WorkflowExecution.ID; wid != b.WorkflowID {
		return nil, permanent(
			ErrTypeNotRunnable,
			"bulk change %s runs as workflow %s, not %s: start or resume that one",
			bulkID,
			b.WorkflowID,
			wid,
		)
	}
	return b, nil
}

func (a *Activities) planOf(ctx context.Context, b *db.BulkChange) (*api.Plan, error) {
	var opts api.Options
	if err := json.Unmarshal(b.Options, &opts); err != nil {
		return nil, permanent(ErrTypeInvalidData, "bulk change %s: options: %v", b.ID, err)
	}
	t, err := a.tenant(ctx, b.Tenant)
	if err != nil {
		return nil, err
	}
	// The submitting process checked the account against its own
	// configuration, which may lack a tenant or be older than the worker's:
	// the worker's decides whose credentials, rules and budget a bulk
	// change runs with. One on another tenant's account never starts.
	if a.Tenants != nil {
		if err := a.Tenants.CheckAccount(ctx, b.Tenant, b.AccountName); err != nil {
			var nc *TenantNotConfiguredError
			if errors.As(err, &nc) {
				return nil, tenantError(err)
			}
			msg := fmt.Sprintf("bulk change %s of tenant %s: %v", b.ID, b.Tenant, err)
			if ferr := a.Store.FailBulkChange(ctx, b.ID, change.AccountNotTenants, msg); ferr != nil {
				return nil, ferr
			}
			return nil, permanent(ErrTypeNotRunnable, "%s", msg)
		}
	}
	a.bulkTenants().Store(b.ID, b.Tenant)
	approval, err := a.approvalOf(ctx, t, b, opts.Approval)
	if err != nil {
		return nil, err
	}
	opts.Approval = approval
	if err := a.Store.SetBulkStatus(ctx, b.ID, startStatus(opts, b.ApprovedBy != "", time.Now())); err != nil {
		return nil, err
	}
	return &api.Plan{BulkChangeID: b.ID, Tenant: b.Tenant, AccountName: b.AccountName, SubmittedBy: b.SubmittedBy,
		Total: b.Total, Batches: b.Batches, Options: opts}, nil
}

// approvalOf is the approval a bulk change needs: what its submission
// asked for, made stricter by the worker's rule for the bulk change's
// tenant. The rule is decided here,
// where the operator's configuration cannot reach: the submitting process
// (`starter submit` with its own settings, or TSBULK_APPROVAL_OPERATIONS=none)
// only writes a request. The result is also written back to the bulk
// change's options, so that what it ran under is on record.
func (a *Activities) approvalOf(
	ctx context.Context,
	t *Tenant,
	b *db.BulkChange,
	requested *api.Approval,
) (*api.Approval, error) {
	if t.Approval == nil {
		return requested, nil
	}
	counts, err := a.Store.BulkOperationCounts(ctx, b.ID)
	if err != nil {
		return nil, err
	}
	out := submission.StricterApproval(requested, t.Approval.ForCounts(counts))
	if out != requested {
		if err := a.Store.SetBulkApproval(ctx, b.ID, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// startStatus is the status a bulk change starts in: awaiting its approval
// (unless given before a recovery), waiting for its start time, or running.
func startStatus(opts api.Options, approved bool, now time.Time) change.BulkStatus {
	switch {
	case opts.Approval != nil && !approved:
		return change.BulkAwaitingApproval
	case now.Before(opts.NotBefore):
		return change.BulkScheduled
	}
	return change.BulkRunning
}

// RecoveredBulk is where a bulk change stands, for a parent run that takes
// it over after the previous one ended without finishing it.
type RecoveredBulk struct {
	Plan      api.Plan `json:"plan"`
	NextBatch int      `json:"nextBatch"`
	// DevicesSent: the device changes of the batches before NextBatch
	// (JSON "submitted", the older word, which histories carry).
	DevicesSent int `json:"submitted"`
	Unfinished  int `json:"unfinished"`
	// Tally: the device changes of those batches that have their outcome.
	change.Tally
	// ApprovedBy is the approval given before the failure, if any.
	ApprovedBy string `json:"approvedBy,omitempty"`
	// Recoveries counts the runs that recovered the bulk change, this one
	// included (absent from histories recorded before it was kept).
	Recoveries int `json:"recoveries,omitempty"`
}

// RecoverBulkChange reads where a bulk change stands from its device
// changes, for `starter resume-failed`.
func (a *Activities) RecoverBulkChange(ctx context.Context, bulkID string) (*RecoveredBulk, error) {
	b, err := a.runnableBulkChange(ctx, bulkID)
	if err != nil {
		return nil, err
	}
	plan, err := a.planOf(ctx, b)
	if err != nil {
		return nil, err
	}
	st, err := a.Store.RecoveryState(ctx, bulkID, b.Batches)
	if err != nil {
		return nil, err
	}
	n, err := a.Store.CountRecovery(ctx, bulkID, activity.GetInfo(ctx).WorkflowExecution.RunID)
	if err != nil {
		return nil, err
	}
	return &RecoveredBulk{
		Recoveries:  n,
		Plan:        *plan,
		NextBatch:   st.NextBatch,
		DevicesSent: st.Sent,
		Unfinished:  st.Unfinished,
		Tally:       st.Tally,
		ApprovedBy:  b.ApprovedBy,
	}, nil
}

// CheckThingSpaceAuth makes sure both ThingSpace tokens of the bulk
// change's tenant can be obtained. Refused credentials come back as a
// non-retryable error: retrying them would lock the Verizon account. The
// exchanges are logged under the bulk change that caused them.
func (a *Activities) CheckThingSpaceAuth(ctx context.Context, bulkID string) error {
	t, err := a.bulkTenant(ctx, bulkID)
	if err != nil {
		return err
	}
	ctx = withScope(ctx, bulkID, 0)
	return thingSpaceError("thingspace authentication", t.ThingSpace.CheckAuth(ctx))
}

// FailBulkInput ends a bulk change that cannot run.
type FailBulkInput struct {
	BulkChangeID string      `json:"bulkChangeId"`
	Code         change.Code `json:"code,omitempty"`
	Message      string      `json:"message"`
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
	BulkChangeID string `json:"bulkChangeId"`
	FromBatch    int    `json:"fromBatch"`
	// ToBatch: the last batch to end (a shard's last); 0 for the bulk
	// change's last.
	ToBatch int         `json:"toBatch,omitempty"`
	Code    change.Code `json:"code,omitempty"`
	Message string      `json:"message"`
}

// FailUnsent marks as ERROR every device change of the bulk change, from the
// given batch on, that is pending or whose request never reached ThingSpace.
// It returns how many it ended.
func (a *Activities) FailUnsent(ctx context.Context, in FailUnsentInput) (int, error) {
	n, err := a.Store.FailUnsent(ctx, in.BulkChangeID, in.FromBatch, in.ToBatch, in.Code, in.Message)
	if err != nil {
		return 0, fmt.Errorf("fail unsent device changes of %s: %w", in.BulkChangeID, err)
	}
	return n, nil
}

// ListDevicesInput pages the device changes whose child should start next.
type ListDevicesInput struct {
	BulkChangeID string     `json:"bulkChangeId"`
	After        api.Cursor `json:"after"`
	MaxBatch     int        `json:"maxBatch"`
	Limit        int        `json:"limit"`
	// UnfinishedBelowBatch: below this batch only device changes without an
	// outcome are listed (a recovered bulk change); 0 for none.
	UnfinishedBelowBatch int `json:"unfinishedBelowBatch,omitempty"`
	// WithState: each device also comes with what its workflow decides
	// from (DeviceToStart.Known), read in two queries for the page.
	WithState bool `json:"withState,omitempty"`
}

// DeviceToStart is one child to start.
type DeviceToStart struct {
	ID        int64            `json:"id"`
	Seq       int              `json:"seq"`
	BatchNo   int              `json:"batchNo"`
	ICCID     string           `json:"iccid"`
	Operation change.Operation `json:"operation"`
	// Known: with ListDevicesInput.WithState.
	Known *api.KnownDeviceChange `json:"known,omitempty"`
}

// ListDevicesToStart returns the next device changes of sent batches.
// Pages are small: the device list never travels as one payload.
func (a *Activities) ListDevicesToStart(ctx context.Context, in ListDevicesInput) ([]DeviceToStart, error) {
	rows, err := a.Store.ListDevicesToStart(
		ctx,
		in.BulkChangeID,
		db.StartCursor{BatchNo: in.After.BatchNo, Seq: in.After.Seq},
		in.MaxBatch,
		in.Limit,
		in.UnfinishedBelowBatch,
	)
	if err != nil {
		return nil, err
	}
	out := make([]DeviceToStart, len(rows))
	for i, r := range rows {
		out[i] = DeviceToStart{
			ID:        r.ID,
			Seq:       r.Seq,
			BatchNo:   r.BatchNo,
			ICCID:     r.ICCID,
			Operation: r.Operation,
		}
	}
	if !in.WithState || len(out) == 0 {
		return out, nil
	}
	ids := make([]int64, len(out))
	for i, d := range out {
		ids[i] = d.ID
	}
	changes, callbacks, err := a.Store.DeviceChangeStates(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i, d := range out {
		if dc, ok := changes[d.ID]; ok {
			out[i].Known = deviceState(dc, callbacks[d.ID]).Known()
		}
	}
	return out, nil
}

// FinishInput ends a bulk change.
type FinishInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	DefaultSite  string `json:"defaultSite"`
	// Cancelled: an operator cancelled it; it ends CANCELLED.
	Cancelled bool `json:"cancelled,omitempty"`
}

// FinishResult is the bulk change's final count.
type FinishResult struct {
	Processed int `json:"processed"`
	Errors    int `json:"errors"`
	Cancelled int `json:"cancelled,omitempty"`
	SitesSet  int `json:"sitesSet"`
	// BillingOwed counts device changes whose Rev.io step has not ended:
	// the bulk change was not marked FINISHED.
	BillingOwed int `json:"billingOwed,omitempty"`
}

// FinishBulkChange gives the default site to devices left in inventory or
// pending state and marks the bulk change FINISHED with its counts, taken
// from the device changes themselves; not while a Rev.io step is owed.
func (a *Activities) FinishBulkChange(ctx context.Context, in FinishInput) (*FinishResult, error) {
	sites, err := a.Store.AssignDefaultSite(ctx, in.BulkChangeID, in.DefaultSite)
	if err != nil {
		return nil, err
	}
	status := change.BulkFinished
	if in.Cancelled {
		status = change.BulkCancelled
	}
	b, owed, err := a.Store.FinishBulkChange(ctx, in.BulkChangeID, status)
	if err != nil {
		return nil, err
	}
	return &FinishResult{
		Processed:   b.Processed,
		Errors:      b.Errors,
		Cancelled:   b.Cancelled,
		SitesSet:    sites,
		BillingOwed: owed,
	}, nil
}

// EndDeviceChangeInput ends a device change whose workflow could not record
// an outcome.
type EndDeviceChangeInput struct {
	DeviceChangeID int64       `json:"deviceChangeId"`
	Code           change.Code `json:"code,omitempty"`
	Message        string      `json:"message"`
}

// EndDeviceChange records a device change ERROR with the code, unless it
// already has an outcome, and returns its result as stored.
func (a *Activities) EndDeviceChange(ctx context.Context, in EndDeviceChangeInput) (*api.DeviceResult, error) {
	dc, _, err := a.Store.Complete(ctx, db.Completion{DeviceChangeID: in.DeviceChangeID, Status: change.Failed,
		ErrorCode: in.Code, ErrorMessage: in.Message})
	if err != nil {
		return nil, fmt.Errorf("end device change %d: %w", in.DeviceChangeID, err)
	}
	return resultOf(dc), nil
}

func resultOf(dc *db.DeviceChange) *api.DeviceResult {
	return &api.DeviceResult{
		DeviceChangeID: dc.ID,
		ICCID:          dc.ICCID,
		Operation:      dc.Operation,
		Status:         dc.Status,
		Outcome:        change.Outcome(dc.Outcome),
		ErrorCode:      dc.ErrorCode,
		BillingError:   dc.BillingStatus == change.BillingError,
	}
}

// CheckDeviceWorkflowsInput lists the device workflows a parent waits for.
type CheckDeviceWorkflowsInput struct {
	BulkChangeID string         `json:"bulkChangeId"`
	InFlight     []api.InFlight `json:"inFlight"`
}

// CheckDeviceWorkflows asks Temporal about the device workflows a parent
// has waited on for a long time, and returns the results of those that have
// closed without reporting: their device change keeps the outcome it has,
// or is recorded ERROR DEVICE_WORKFLOW_ENDED with how the workflow ended.
func (a *Activities) CheckDeviceWorkflows(
	ctx context.Context,
	in CheckDeviceWorkflowsInput,
) ([]api.DeviceResult, error) {
	var out []api.DeviceResult
	for _, f := range in.InFlight {
		st, err := a.workflowStatus(ctx, api.DeviceChangeWorkflowID(in.BulkChangeID, f.ICCID))
		how := "it was never found"
		switch st {
		case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
			continue
		case enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED:
		default:
			how = "it was " + strings.ToLower(st.String())
		}
		if err != nil {
			return nil, err
		}
		// Only a device change of this bulk change: a workflow of another
		// (a bulk change whose database is not this worker's, on the same
		// task queue) must not end one that has its id.
		dc, err := a.Store.GetDeviceChange(ctx, f.DeviceChangeID)
		if err != nil && !errors.Is(err, db.ErrNotFound) {
			return nil, fmt.Errorf("read device change %d: %w", f.DeviceChangeID, err)
		}
		if err != nil || dc.BulkChangeID != in.BulkChangeID || dc.ICCID != f.ICCID {
			activity.GetLogger(ctx).Warn("a device change to check is not this bulk change's; left alone",
				"bulkChangeId", in.BulkChangeID, "deviceChangeId", f.DeviceChangeID)
			continue
		}
		r, err := a.EndDeviceChange(
			ctx,
			EndDeviceChangeInput{DeviceChangeID: f.DeviceChangeID, Code: change.DeviceWorkflowEnded,
				Message: fmt.Sprintf("its device workflow ended without recording an outcome (%s)", how)},
		)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}
