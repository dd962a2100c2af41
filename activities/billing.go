package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/revio"
)

// BillingInput names the device change whose Rev.io service is to be
// created or disconnected.
type BillingInput struct {
	BulkChangeID   string
	DeviceChangeID int64
}

// BillingResult is the device's Rev.io service.
type BillingResult struct {
	ServiceID         int64   `json:"serviceId"`
	ServiceProductIDs []int64 `json:"serviceProductIds,omitempty"`
	Created           bool    `json:"created"` // false when an existing service was found
}

// CreateBillingService creates the Rev.io service line of an activated
// device, and its service products, exactly once.
//
// POST /v1/Services is not idempotent, so before creating anything the
// activity looks for what exists: first the id stored in PostgreSQL, then a
// search of Rev.io by number (MSISDN) and ICCID, which finds a service whose
// creation succeeded but whose id was never stored (worker killed between
// the two). Every id is stored the moment Rev.io returns it.
func (a *Activities) CreateBillingService(ctx context.Context, in BillingInput) (*BillingResult, error) {
	ctx = withScope(ctx, in.BulkChangeID, in.DeviceChangeID)
	if a.Revio == nil {
		return nil, permanent(ErrTypeRevio, "Rev.io is not configured")
	}
	dc, err := a.Store.GetDeviceChange(ctx, in.DeviceChangeID)
	if err != nil {
		return nil, fmt.Errorf("read device change %d: %w", in.DeviceChangeID, err)
	}
	var bill db.BillingData
	if err := json.Unmarshal(dc.Billing, &bill); err != nil || bill.CustomerID == 0 {
		return nil, permanent(ErrTypeInvalidData, "device change %d has no usable Rev.io data", in.DeviceChangeID)
	}
	if dc.MSISDN == "" {
		return nil, permanent(ErrTypeInvalidData, "device change %d has no MSISDN: the Rev.io service needs one", in.DeviceChangeID)
	}
	// A first attempt of the step in the device's own workflow cannot have
	// created anything yet; every later attempt, and every billing retry,
	// searches Rev.io before creating.
	first := dc.BillingStatus == "PENDING" && activity.GetInfo(ctx).Attempt == 1
	svc, err := a.ensureService(ctx, dc, bill, first)
	if err != nil {
		return nil, err
	}
	res := &BillingResult{ServiceID: svc.ServiceID, Created: svc.FoundBy == "created"}
	if len(bill.ProductIDs) > 0 {
		// Products of a service created by this very attempt cannot exist.
		ids, err := a.ensureProducts(ctx, dc, bill, svc, first && svc.FoundBy == "created")
		if err != nil {
			return nil, err
		}
		res.ServiceProductIDs = ids
	}
	if err := a.Store.SetBillingStatus(ctx, dc.ID, "CREATED", ""); err != nil {
		return nil, err
	}
	return res, nil
}

func (a *Activities) ensureService(ctx context.Context, dc *db.DeviceChange, bill db.BillingData, first bool) (*db.RevioService, error) {
	svc, err := a.Store.RevioServiceOf(ctx, dc.ID)
	if err == nil {
		return svc, nil
	}
	if !errors.Is(err, db.ErrNotFound) {
		return nil, err
	}
	if !first {
		found, err := a.Revio.FindServices(ctx, revio.ServiceSearch{Number: dc.MSISDN, Number2: dc.ICCID, CustomerID: bill.CustomerID})
		if err != nil {
			return nil, revioError("find Rev.io service of "+dc.ICCID, err)
		}
		for _, s := range found {
			if s.Number == dc.MSISDN && s.Number2 == dc.ICCID && s.DisconnectedDate == "" {
				return a.Store.SaveRevioService(ctx, db.RevioService{DeviceChangeID: dc.ID, ICCID: dc.ICCID, Number: dc.MSISDN,
					CustomerID: bill.CustomerID, ServiceID: s.ServiceID, FoundBy: "search"})
			}
		}
	}
	id, err := a.Revio.CreateService(ctx, revio.CreateServiceRequest{
		CustomerID: bill.CustomerID, ProviderID: bill.ProviderID, ServiceTypeID: bill.ServiceTypeID,
		Number: dc.MSISDN, Number2: dc.ICCID, ActivatedDate: activatedDate(dc),
	})
	if err != nil {
		return nil, revioError("create Rev.io service for "+dc.ICCID, err)
	}
	return a.Store.SaveRevioService(ctx, db.RevioService{DeviceChangeID: dc.ID, ICCID: dc.ICCID, Number: dc.MSISDN,
		CustomerID: bill.CustomerID, ServiceID: id, FoundBy: "created"})
}

func (a *Activities) ensureProducts(ctx context.Context, dc *db.DeviceChange, bill db.BillingData, svc *db.RevioService, fresh bool) ([]int64, error) {
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
			if existing, err = a.Revio.ListServiceProducts(ctx, svc.ServiceID, ""); err != nil {
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
		id, err := a.Revio.CreateServiceProduct(ctx, revio.CreateServiceProductRequest{
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
	DeviceChangeID int64
	Message        string
}

// RecordBillingFailure marks the Rev.io step failed; the activation stays
// recorded, and `starter billing-retry` can run the step again later.
func (a *Activities) RecordBillingFailure(ctx context.Context, in RecordBillingFailureInput) error {
	return a.Store.SetBillingStatus(ctx, in.DeviceChangeID, "ERROR", in.Message)
}

// ListBillingFailuresInput pages device changes whose billing failed.
type ListBillingFailuresInput struct {
	BulkChangeID string
	AfterID      int64
	Limit        int
}

// ListBillingFailures returns the next device change ids whose Rev.io step
// failed.
func (a *Activities) ListBillingFailures(ctx context.Context, in ListBillingFailuresInput) ([]int64, error) {
	return a.Store.ChangesForBilling(ctx, in.BulkChangeID, in.AfterID, in.Limit)
}

// DisconnectBilling disconnects the Rev.io service of a deactivated device:
// every active service product, then the service, with the same date (Rev.io
// requires the products' dates to match the service's).
func (a *Activities) DisconnectBilling(ctx context.Context, in BillingInput) error {
	ctx = withScope(ctx, in.BulkChangeID, in.DeviceChangeID)
	if a.Revio == nil {
		return permanent(ErrTypeRevio, "Rev.io is not configured")
	}
	dc, err := a.Store.GetDeviceChange(ctx, in.DeviceChangeID)
	if err != nil {
		return err
	}
	svc, err := a.Store.ActiveRevioServiceByICCID(ctx, dc.ICCID)
	if errors.Is(err, db.ErrNotFound) {
		return nil // never billed through this product: nothing to disconnect
	}
	if err != nil {
		return err
	}
	date := activatedDate(dc)
	products, err := a.Revio.ListServiceProducts(ctx, svc.ServiceID, "ACTIVE")
	if err != nil {
		return revioError("list Rev.io service products", err)
	}
	for _, p := range products {
		if err := a.Revio.DisconnectServiceProduct(ctx, p.ServiceProductID, date, false); err != nil {
			return revioError("disconnect Rev.io service product", err)
		}
	}
	if err := a.Revio.UpdateService(ctx, svc.ServiceID, []revio.PatchOp{{Op: "replace", Path: "/disconnected_date", Value: date}}); err != nil {
		return revioError("disconnect Rev.io service", err)
	}
	return a.Store.MarkRevioDisconnected(ctx, svc.DeviceChangeID)
}
