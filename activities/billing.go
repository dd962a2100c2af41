package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/revio"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// BillingInput names the device change whose Rev.io service is to be
// created or disconnected.
type BillingInput struct {
	BulkChangeID   string `json:"bulkChangeId"`
	DeviceChangeID int64  `json:"deviceChangeId"`
}

// BillingResult is the device's Rev.io service.
type BillingResult struct {
	ServiceID         int64   `json:"serviceId"`
	ServiceProductIDs []int64 `json:"serviceProductIds,omitempty"`
	Created           bool    `json:"created"` // false when an existing service was found
}

// Error types of the Rev.io step, recorded as its billing error code so
// that operators and billing retries can tell them apart.
const (
	// ErrTypeMSISDNUnknown: ThingSpace has not told the device's MSISDN, and
	// the Rev.io service is keyed by it.
	ErrTypeMSISDNUnknown = string(change.MSISDNUnknown)
)

// CreateBillingService creates the Rev.io service line of an activated
// device, and its service products, exactly once.
//
// POST /v1/Services is not idempotent, so before creating anything the
// activity looks for what exists: first the id stored in PostgreSQL, then a
// search of Rev.io by number (MSISDN) and ICCID, which finds a service whose
// creation succeeded but whose id was never stored (worker killed between
// the two, answer lost). The search is made before every create, whatever
// the attempt: a billing retry of a step stranded in PENDING runs as a
// first attempt too. Every id is stored the moment Rev.io returns it, and
// one step per device change runs at a time (LockBillingStep): a second
// one backs off retryably instead of searching while the first creates.
//
// A device that was already active most likely has its service already:
// for it the search comes first, whatever the attempt, and a service found
// is recorded as EXISTING instead of creating a second line.
func (a *Activities) CreateBillingService(ctx context.Context, in BillingInput) (*BillingResult, error) {
	t, err := a.deviceTenant(ctx, in.BulkChangeID, in.DeviceChangeID)
	if err != nil {
		return nil, err
	}
	ctx = withScope(ctx, in.BulkChangeID, in.DeviceChangeID)
	if t.Revio == nil {
		return nil, permanent(ErrTypeRevio, "Rev.io is not configured for tenant %s", t.ID)
	}
	release, err := a.Store.LockBillingStep(ctx, in.DeviceChangeID)
	if errors.Is(err, db.ErrBillingBusy) {
		return nil, temporal.NewApplicationErrorWithOptions(err.Error(), ErrTypeRevio,
			temporal.ApplicationErrorOptions{NextRetryDelay: billingBusyRetry})
	}
	if err != nil {
		return nil, err
	}
	defer release()
	dc, err := a.Store.GetDeviceChange(ctx, in.DeviceChangeID)
	if err != nil {
		return nil, fmt.Errorf("read device change %d: %w", in.DeviceChangeID, err)
	}
	var bill db.BillingData
	if err := json.Unmarshal(dc.Billing, &bill); err != nil || bill.CustomerID == 0 {
		return nil, permanent(ErrTypeInvalidData, "device change %d has no usable Rev.io data", in.DeviceChangeID)
	}
	if dc.MSISDN == "" {
		if err := readMSISDN(ctx, a.Store, t, dc); err != nil {
			return nil, err
		}
	}
	if change.Outcome(dc.Outcome).AlreadyActive() {
		if svc, err := a.existingService(ctx, t.Revio, dc); err != nil || svc != nil {
			if err != nil {
				return nil, err
			}
			if err := a.setBillingStatus(ctx, dc.ID, change.BillingExisting, "", ""); err != nil {
				return nil, err
			}
			return &BillingResult{ServiceID: svc.ServiceID}, nil
		}
	}
	svc, createdNow, err := a.ensureService(ctx, t.Revio, dc, bill)
	if err != nil {
		return nil, err
	}
	res := &BillingResult{ServiceID: svc.ServiceID, Created: svc.FoundBy == "created"}
	if len(bill.ProductIDs) > 0 {
		// Products of a service created by this very call cannot exist.
		ids, err := a.ensureProducts(ctx, t.Revio, dc, bill, svc, createdNow)
		if err != nil {
			return nil, err
		}
		res.ServiceProductIDs = ids
	}
	if err := a.setBillingStatus(ctx, dc.ID, change.BillingCreated, "", ""); err != nil {
		return nil, err
	}
	return res, nil
}

// createdByMarker is the description of every Rev.io service this product
// creates: it tells a service a device change created itself, in an
// attempt that could not record it, from one the device had before.
func createdByMarker(deviceChangeID int64) string {
	return fmt.Sprintf("tsbulk device change %d", deviceChangeID)
}

// foundExisting marks a Rev.io service that existed before this product
// billed the device (an already-active device's).
const foundExisting = "existing"

// readMSISDN reads the MSISDN of an activated device from ThingSpace (the
// client of its tenant) when the change recorded none (callback without it,
// lookup failed), and records it. Without one the service cannot be
// created: that is a non-retryable MSISDN_UNKNOWN, which a later billing
// retry reads again.
func readMSISDN(ctx context.Context, store *db.Store, t *Tenant, dc *db.DeviceChange) error {
	d, err := getDevice(forAccount(ctx, dc.AccountName), t.ThingSpace, dc.AccountName, dc.ICCID)
	if thingspace.KindOf(err) == thingspace.KindDeviceNotFound {
		return permanent(
			ErrTypeMSISDNUnknown,
			"device %s is not listed at ThingSpace: its MSISDN is unknown and the Rev.io service needs it",
			dc.ICCID,
		)
	}
	if err != nil {
		return thingSpaceError("read the MSISDN of "+dc.ICCID, err)
	}
	if d.MSISDN() == "" {
		return permanent(
			ErrTypeMSISDNUnknown,
			"ThingSpace lists device %s without an MSISDN: the Rev.io service needs one",
			dc.ICCID,
		)
	}
	dc.MSISDN = d.MSISDN()
	return store.SetMSISDN(ctx, dc.ID, dc.MSISDN)
}

// existingService looks Rev.io up for an active service of the device's
// number or ICCID, under any customer, and records the one found. A service
// this device change itself created (an earlier attempt that stopped before
// its products) is not an existing one: nil, and the step carries on.
func (a *Activities) existingService(ctx context.Context, rv *revio.Client, dc *db.DeviceChange) (*db.RevioService, error) {
	if svc, err := a.Store.RevioServiceOf(ctx, dc.ID); err == nil {
		if svc.FoundBy == foundExisting {
			return svc, nil
		}
		return nil, nil
	} else if !errors.Is(err, db.ErrNotFound) {
		return nil, err
	}
	for _, q := range []revio.ServiceSearch{{Number: dc.MSISDN}, {Number2: dc.ICCID}} {
		found, err := rv.FindServices(ctx, q)
		if err != nil {
			return nil, revioError("find Rev.io service of "+dc.ICCID, err)
		}
		for _, s := range found {
			// A service this change created in an attempt that died before
			// recording it (a create answered after the client gave up, a
			// worker killed) is not the device's existing one: the create
			// path finds it by search and adds its products.
			if s.DisconnectedDate == "" && s.Description != createdByMarker(dc.ID) {
				return a.Store.SaveRevioService(
					ctx,
					db.RevioService{DeviceChangeID: dc.ID, ICCID: dc.ICCID, Number: s.Number,
						CustomerID: s.CustomerID, ServiceID: s.ServiceID, FoundBy: foundExisting},
				)
			}
		}
	}
	return nil, nil
}

// billingBusyRetry is how long a Rev.io step waits for another step of the
// same device change (which holds its lock) before trying again.
const billingBusyRetry = 5 * time.Second

// ensureService returns the device change's Rev.io service: stored, found
// at Rev.io, or created; createdNow reports that this call created it (so
// it has no products yet).
func (a *Activities) ensureService(
	ctx context.Context,
	rv *revio.Client,
	dc *db.DeviceChange,
	bill db.BillingData,
) (svc *db.RevioService, createdNow bool, err error) {
	svc, err = a.Store.RevioServiceOf(ctx, dc.ID)
	if err == nil {
		return svc, false, nil
	}
	if !errors.Is(err, db.ErrNotFound) {
		return nil, false, err
	}
	// Searched before every create: nothing in PostgreSQL says whether an
	// earlier step (this workflow's, or a billing retry's, both of which
	// can be attempt 1) reached Rev.io before it died.
	found, err := rv.FindServices(
		ctx,
		revio.ServiceSearch{Number: dc.MSISDN, Number2: dc.ICCID, CustomerID: bill.CustomerID},
	)
	if err != nil {
		return nil, false, revioError("find Rev.io service of "+dc.ICCID, err)
	}
	if s := pickService(found, dc); s != nil {
		svc, err := a.Store.SaveRevioService(
			ctx,
			db.RevioService{DeviceChangeID: dc.ID, ICCID: dc.ICCID, Number: dc.MSISDN,
				CustomerID: bill.CustomerID, ServiceID: s.ServiceID, FoundBy: "search"},
		)
		return svc, false, err
	}
	id, err := rv.CreateService(ctx, revio.CreateServiceRequest{
		CustomerID: bill.CustomerID, ProviderID: bill.ProviderID, ServiceTypeID: bill.ServiceTypeID,
		Number: dc.MSISDN, Number2: dc.ICCID, ActivatedDate: activatedDate(dc),
		Description: createdByMarker(dc.ID),
	})
	if err != nil {
		return nil, false, revioError("create Rev.io service for "+dc.ICCID, err)
	}
	svc, err = a.Store.SaveRevioService(ctx, db.RevioService{DeviceChangeID: dc.ID, ICCID: dc.ICCID, Number: dc.MSISDN,
		CustomerID: bill.CustomerID, ServiceID: id, FoundBy: "created"})
	return svc, err == nil && svc.ServiceID == id, err
}

// pickService chooses, among the active services of the device's number
// and ICCID, the one this device change created (its description is the
// change's mark), else any: a line the device already has under the
// customer is not created twice either.
func pickService(found []revio.Service, dc *db.DeviceChange) *revio.Service {
	var other *revio.Service
	for i, s := range found {
		if s.Number != dc.MSISDN || s.Number2 != dc.ICCID || s.DisconnectedDate != "" {
			continue
		}
		if s.Description == createdByMarker(dc.ID) {
			return &found[i]
		}
		if other == nil {
			other = &found[i]
		}
	}
	return other
}

func (a *Activities) ensureProducts(
	ctx context.Context,
	rv *revio.Client,
	dc *db.DeviceChange,
	bill db.BillingData,
	svc *db.RevioService,
	fresh bool,
) ([]int64, error) {
	stored, err := a.Store.RevioProducts(ctx, dc.ID)
	if err != nil {
		return nil, err
	}
	have := map[int]int64{}
	for _, p := range stored {
		have[p.Idx] = p.ServiceProductID
	}
	var existing []revio.ServiceProduct
	listed := fresh
	ids := make([]int64, len(bill.ProductIDs))
	for i, productID := range bill.ProductIDs {
		if id, ok := have[i]; ok {
			ids[i] = id
			continue
		}
		if !listed {
			if existing, err = rv.ListServiceProducts(ctx, svc.ServiceID, ""); err != nil {
				return nil, revioError("list Rev.io service products", err)
			}
			listed = true
		}
		rate := ""
		if i < len(bill.Rates) {
			rate = bill.Rates[i]
		}
		// A product created by an attempt whose answer was lost is found
		// on the service; it is claimed so it cannot match twice.
		if j := matchProduct(existing, productID, have); j >= 0 {
			ids[i] = existing[j].ServiceProductID
			have[i] = ids[i]
			if err := a.Store.SaveRevioProduct(ctx, db.RevioProduct{DeviceChangeID: dc.ID, Idx: i, ProductID: productID,
				Rate: rate, ServiceProductID: ids[i], FoundBy: "search"}); err != nil {
				return nil, err
			}
			continue
		}
		id, err := rv.CreateServiceProduct(ctx, revio.CreateServiceProductRequest{
			ServiceID: svc.ServiceID, ProductID: productID, CustomerID: bill.CustomerID, Rate: rate, Quantity: 1,
			ActivatedDate: activatedDate(dc), EffectiveDate: activatedDate(dc),
		})
		if err != nil {
			return nil, revioError("create Rev.io service product", err)
		}
		ids[i] = id
		have[i] = id
		if err := a.Store.SaveRevioProduct(ctx, db.RevioProduct{DeviceChangeID: dc.ID, Idx: i, ProductID: productID,
			Rate: rate, ServiceProductID: id, FoundBy: "created"}); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// matchProduct finds an existing service product of the given product not
// already taken by another index.
func matchProduct(existing []revio.ServiceProduct, productID int64, taken map[int]int64) int {
	used := map[int64]bool{}
	for _, id := range taken {
		used[id] = true
	}
	for j, p := range existing {
		if p.ProductID == productID && !used[p.ServiceProductID] && p.Status != "DISCONNECTED" {
			return j
		}
	}
	return -1
}

func activatedDate(dc *db.DeviceChange) string {
	t := time.Now().UTC()
	if dc.CompletedAt != nil {
		t = dc.CompletedAt.UTC()
	}
	return t.Format("2006-01-02")
}

// RecordBillingFailureInput says why the Rev.io step failed.
type RecordBillingFailureInput struct {
	DeviceChangeID int64  `json:"deviceChangeId"`
	Message        string `json:"message"`
	// Code is the failure's error type (MSISDN_UNKNOWN, RevioError, ...).
	Code string `json:"code,omitempty"`
}

// RecordBillingFailure marks the Rev.io step failed; the change stays
// recorded, and `starter billing-retry` can run the step again later.
func (a *Activities) RecordBillingFailure(ctx context.Context, in RecordBillingFailureInput) error {
	return a.setBillingStatus(ctx, in.DeviceChangeID, change.BillingError, in.Code, in.Message)
}

// ListOwedBillingInput pages the device changes whose Rev.io step is owed.
type ListOwedBillingInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	AfterID      int64  `json:"afterId"`
	Limit        int    `json:"limit"`
	// StrandedOnly skips failed steps.
	StrandedOnly bool `json:"strandedOnly,omitempty"`
}

// OwedBilling is a device change whose Rev.io step a billing retry runs.
type OwedBilling struct {
	DeviceChangeID int64            `json:"deviceChangeId"`
	Operation      change.Operation `json:"operation"`
	// Stranded: the step was pending and the device's workflow, which owns
	// it while it runs, has closed without ending it.
	Stranded bool `json:"stranded,omitempty"`
}

// OwedBillingPage is one page of owed Rev.io steps. Next is where the next
// page starts; Busy counts pending steps skipped because their device's
// workflow still runs (it will run the step itself).
type OwedBillingPage struct {
	Owed []OwedBilling `json:"owed"`
	Next int64         `json:"next"`
	Done bool          `json:"done"`
	Busy int           `json:"busy"`
}

// ListOwedBilling returns the next device changes whose Rev.io step a
// billing retry may run: those whose step failed, and those stranded in
// PENDING. A pending step belongs to the device's workflow while that
// workflow runs; it is stranded only once the workflow has closed (or never
// existed), so a running step is never taken twice.
func (a *Activities) ListOwedBilling(ctx context.Context, in ListOwedBillingInput) (*OwedBillingPage, error) {
	rows, err := a.Store.OwedBillings(ctx, in.BulkChangeID, in.AfterID, in.Limit)
	if err != nil {
		return nil, err
	}
	page := &OwedBillingPage{Next: in.AfterID, Done: len(rows) < in.Limit}
	for _, r := range rows {
		page.Next = r.ID
		o := OwedBilling{DeviceChangeID: r.ID, Operation: r.Operation}
		if r.Status != change.BillingPending && in.StrandedOnly {
			continue
		}
		if r.Status == change.BillingPending {
			running, err := a.deviceWorkflowRunning(ctx, in.BulkChangeID, r.ICCID)
			if err != nil {
				return nil, err
			}
			if running {
				page.Busy++
				continue
			}
			o.Stranded = true
		}
		page.Owed = append(page.Owed, o)
	}
	return page, nil
}

// deviceWorkflowRunning asks Temporal whether a device's workflow is open.
func (a *Activities) deviceWorkflowRunning(ctx context.Context, bulkID, iccid string) (bool, error) {
	st, err := a.workflowStatus(ctx, api.DeviceChangeWorkflowID(bulkID, iccid))
	return st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, err
}

// workflowStatus is a workflow's status as Temporal tells it; UNSPECIFIED
// when no workflow has that ID.
func (a *Activities) workflowStatus(ctx context.Context, workflowID string) (enumspb.WorkflowExecutionStatus, error) {
	if a.Temporal == nil {
		return 0, errors.New("no Temporal client: cannot tell whether a workflow runs")
	}
	d, err := a.Temporal.DescribeWorkflow(ctx, workflowID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED, nil
	}
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", workflowID, err)
	}
	return d.RawResponse.GetWorkflowExecutionInfo().GetStatus(), nil
}

// ListBillingFailuresInput pages device changes whose billing failed.
type ListBillingFailuresInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	AfterID      int64  `json:"afterId"`
	Limit        int    `json:"limit"`
}

// ListBillingFailures returns the next device change ids whose Rev.io step
// failed. Billing retries started before ListOwedBilling replay it.
func (a *Activities) ListBillingFailures(ctx context.Context, in ListBillingFailuresInput) ([]int64, error) {
	var ids []int64
	for after := in.AfterID; len(ids) < in.Limit; {
		rows, err := a.Store.OwedBillings(ctx, in.BulkChangeID, after, in.Limit)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			after = r.ID
			if r.Status == change.BillingError && len(ids) < in.Limit {
				ids = append(ids, r.ID)
			}
		}
		if len(rows) < in.Limit {
			break
		}
	}
	return ids, nil
}

// DisconnectBilling disconnects the Rev.io service of a deactivated device:
// every active service product, then the service, with the same date (Rev.io
// requires the products' dates to match the service's). A device never
// billed through this product has nothing to disconnect (billing NONE).
func (a *Activities) DisconnectBilling(ctx context.Context, in BillingInput) error {
	t, err := a.deviceTenant(ctx, in.BulkChangeID, in.DeviceChangeID)
	if err != nil {
		return err
	}
	ctx = withScope(ctx, in.BulkChangeID, in.DeviceChangeID)
	if t.Revio == nil {
		return permanent(ErrTypeRevio, "Rev.io is not configured for tenant %s", t.ID)
	}
	dc, err := a.Store.GetDeviceChange(ctx, in.DeviceChangeID)
	if err != nil {
		return err
	}
	svc, err := a.Store.ActiveRevioServiceByICCID(ctx, t.ID, dc.ICCID)
	if errors.Is(err, db.ErrNotFound) {
		return a.setBillingStatus(ctx, dc.ID, change.BillingNone, "", "")
	}
	if err != nil {
		return err
	}
	date := activatedDate(dc)
	products, err := t.Revio.ListServiceProducts(ctx, svc.ServiceID, "ACTIVE")
	if err != nil {
		return revioError("list Rev.io service products", err)
	}
	for _, p := range products {
		if err := t.Revio.DisconnectServiceProduct(ctx, p.ServiceProductID, date, false); err != nil {
			return revioError("disconnect Rev.io service product", err)
		}
	}
	disconnect := revio.PatchOp{
		Op:    "replace",
		Path:  "/disconnected_date",
		Value: date,
	}
	if err := t.Revio.UpdateService(ctx, svc.ServiceID, []revio.PatchOp{disconnect}); err != nil {
		return revioError("disconnect Rev.io service", err)
	}
	if err := a.Store.MarkRevioDisconnected(ctx, svc.DeviceChangeID); err != nil {
		return err
	}
	return a.setBillingStatus(ctx, dc.ID, change.BillingDisconnected, "", "")
}
