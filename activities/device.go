package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// DeviceState is what a device's workflow needs to know about its change
// when it starts (and again after a restart).
type DeviceState struct {
	ID            int64                `json:"id"`
	BulkChangeID  string               `json:"bulkChangeId"`
	ICCID         string               `json:"iccid"`
	Operation     change.Operation     `json:"operation"`
	AccountName   string               `json:"accountName"`
	Status        change.Status        `json:"status"`
	Final         bool                 `json:"final"`
	RequestID     string               `json:"requestId,omitempty"`
	HasPPU        bool                 `json:"hasPpu"`
	HasBilling    bool                 `json:"hasBilling"`
	Sync          *api.Confirmation    `json:"sync,omitempty"`
	Stored        []api.Confirmation   `json:"stored,omitempty"`
	Outcome       change.Outcome       `json:"outcome,omitempty"`
	ErrorCode     change.Code          `json:"errorCode,omitempty"`
	BillingStatus change.BillingStatus `json:"billingStatus"`
	// SentAt: JSON "submittedAt", the older word, which histories carry.
	SentAt *time.Time `json:"submittedAt,omitempty"`
}

// LoadDeviceChange reads a device change with any outcome already known: a
// synchronous answer recorded when its request was sent, or callbacks
// stored before the workflow existed.
func (a *Activities) LoadDeviceChange(ctx context.Context, id int64) (*DeviceState, error) {
	dc, err := a.Store.GetDeviceChange(ctx, id)
	if errors.Is(err, db.ErrNotFound) {
		return nil, permanent(ErrTypeInvalidData, "device change %d does not exist", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read device change %d: %w", id, err)
	}
	cbs, err := a.Store.StoredCallbacks(ctx, id)
	if err != nil {
		return nil, err
	}
	return deviceState(dc, cbs), nil
}

// deviceState is a device change as its workflow reads it, with the
// callbacks stored for it.
func deviceState(dc *db.DeviceChange, cbs []db.Callback) *DeviceState {
	st := &DeviceState{
		ID:            dc.ID,
		BulkChangeID:  dc.BulkChangeID,
		ICCID:         dc.ICCID,
		Operation:     dc.Operation,
		AccountName:   dc.AccountName,
		Status:        dc.Status,
		Final:         dc.Final(),
		RequestID:     dc.RequestID,
		HasPPU:        dc.HasPPU,
		HasBilling:    len(dc.Billing) > 0 && string(dc.Billing) != "null",
		Outcome:       change.Outcome(dc.Outcome),
		ErrorCode:     dc.ErrorCode,
		BillingStatus: dc.BillingStatus,
		SentAt:        dc.SentAt,
	}
	if dc.SyncResult != nil {
		st.Sync = &api.Confirmation{
			Source:       change.BySync,
			RequestID:    dc.RequestID,
			Success:      dc.SyncResult.Success,
			FaultCode:    dc.SyncResult.FaultCode,
			FaultMessage: dc.SyncResult.FaultMessage,
			State:        dc.SyncResult.State,
			MSISDN:       dc.SyncResult.MSISDN,
		}
	}
	st.Stored = make([]api.Confirmation, len(cbs))
	for i, c := range cbs {
		st.Stored[i] = CallbackConfirmation(c)
	}
	return st
}

// Known is what the parent hands the device's workflow at its start
// (api.DeviceChangeInput.Known): the confirmation the workflow would take
// first (the synchronous answer, else the first stored callback of the
// change's request), so that the workflow need not read the change again.
func (st *DeviceState) Known() *api.KnownDeviceChange {
	k := &api.KnownDeviceChange{RequestID: st.RequestID, Status: st.Status, Final: st.Final, HasPPU: st.HasPPU,
		HasBilling: st.HasBilling}
	if st.Sync != nil {
		c := *st.Sync
		k.Confirmation = &c
		return k
	}
	for _, c := range st.Stored {
		if st.RequestID == "" || c.RequestID == st.RequestID {
			k.Confirmation = &c
			break
		}
	}
	return k
}

// StoredConfirmations returns the callbacks stored for a device change,
// oldest first. A device's workflow reads them when it starts and when its
// callback timer fires, so a callback whose signal was lost still counts.
func (a *Activities) StoredConfirmations(ctx context.Context, id int64) ([]api.Confirmation, error) {
	cbs, err := a.Store.StoredCallbacks(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]api.Confirmation, len(cbs))
	for i, c := range cbs {
		out[i] = CallbackConfirmation(c)
	}
	return out, nil
}

// CompleteInput is the outcome of a device change.
type CompleteInput struct {
	DeviceChangeID int64            `json:"deviceChangeId"`
	Operation      change.Operation `json:"operation"`
	Status         change.Status    `json:"status"` // PROCESSED | ERROR
	Outcome        change.Outcome   `json:"outcome"`
	FinalState     change.State     `json:"finalState"`
	MSISDN         string           `json:"msisdn"`
	ErrorCode      change.Code      `json:"errorCode"`
	ErrorMessage   string           `json:"errorMessage"`
	ConfirmedBy    change.Source    `json:"confirmedBy"`
	ConfirmedAt    time.Time        `json:"confirmedAt"`
	BillingPending bool             `json:"billingPending"`
	RequestID      string           `json:"requestId"`
	ReleaseMSISDN  bool             `json:"releaseMsisdn"`
	// ObservedState is the device's state as a poll saw it, for an error.
	ObservedState change.State `json:"observedState,omitempty"`
}

// CompleteResult is the outcome as stored (the first one recorded wins).
type CompleteResult struct {
	Status       change.Status  `json:"status"`
	Outcome      change.Outcome `json:"outcome,omitempty"`
	ErrorCode    change.Code    `json:"errorCode,omitempty"`
	ErrorMessage string         `json:"errorMessage,omitempty"`
	MSISDN       string         `json:"msisdn,omitempty"`
	// BillingStatus is PENDING when the record owes a Rev.io step: the
	// workflow decides its follow-up from this, never from how it got here.
	BillingStatus change.BillingStatus `json:"billingStatus,omitempty"`
}

// CompleteDeviceChange records the outcome of a device change, the device's
// new status and MSISDN, and the audit entry, in one transaction.
func (a *Activities) CompleteDeviceChange(ctx context.Context, in CompleteInput) (*CompleteResult, error) {
	c := db.Completion{
		DeviceChangeID: in.DeviceChangeID,
		Status:         in.Status,
		Outcome:        string(in.Outcome),
		FinalState:     string(in.FinalState),
		MSISDN:         in.MSISDN,
		ErrorCode:      in.ErrorCode,
		ErrorMessage:   in.ErrorMessage,
		ConfirmedBy:    string(in.ConfirmedBy),
		BillingPending: in.BillingPending,
		RequestID:      in.RequestID,
		ReleaseMSISDN:  in.ReleaseMSISDN,
		ObservedState:  string(in.ObservedState),
	}
	if !in.ConfirmedAt.IsZero() {
		c.ConfirmedAt = &in.ConfirmedAt
	}
	dc, changed, err := a.Store.Complete(ctx, c)
	if err != nil {
		return nil, err
	}
	if changed && a.Metrics != nil {
		reason := dc.Outcome
		if dc.Status == change.Failed {
			// Codes come from ThingSpace (or whoever posts a callback): an
			// unknown one is labelled "other", so the label set stays bounded.
			reason = thingspace.MetricCode(string(dc.ErrorCode))
		}
		a.Metrics.DeviceChanges.WithLabelValues(string(dc.Operation), string(dc.Status), reason).Inc()
		if dc.SentAt != nil && c.ConfirmedAt != nil && in.ConfirmedBy != "" {
			a.Metrics.ConfirmationSeconds.WithLabelValues(string(dc.Operation), c.ConfirmedBy).
				Observe(c.ConfirmedAt.Sub(*dc.SentAt).Seconds())
		}
	}
	return &CompleteResult{
		Status:        dc.Status,
		Outcome:       change.Outcome(dc.Outcome),
		ErrorCode:     dc.ErrorCode,
		ErrorMessage:  dc.ErrorMessage,
		MSISDN:        dc.MSISDN,
		BillingStatus: dc.BillingStatus,
	}, nil
}

// LookupInput names a device to look up at ThingSpace.
type LookupInput struct {
	BulkChangeID   string `json:"bulkChangeId"`
	DeviceChangeID int64  `json:"deviceChangeId"`
	ICCID          string `json:"iccid"`
	AccountName    string `json:"accountName"`
}

// DeviceLookup is a device as ThingSpace lists it.
type DeviceLookup struct {
	Found  bool         `json:"found"`
	State  change.State `json:"state"`
	MSISDN string       `json:"msisdn,omitempty"`
}

// LookupDevice reads one device's state and MSISDN from ThingSpace's device
// list, with the client of the bulk change's tenant (without a bulk
// change or device change: the account's).
func (a *Activities) LookupDevice(ctx context.Context, in LookupInput) (*DeviceLookup, error) {
	var t *Tenant
	var err error
	if in.BulkChangeID != "" || in.DeviceChangeID != 0 {
		t, err = a.deviceTenant(ctx, in.BulkChangeID, in.DeviceChangeID)
	} else {
		t, err = a.accountTenant(ctx, in.AccountName)
	}
	if err != nil {
		return nil, err
	}
	ctx = withScope(ctx, in.BulkChangeID, in.DeviceChangeID)
	// Look in the bulk change's account, which need not be the client's
	// default one.
	account := in.AccountName
	if account == "" && in.DeviceChangeID != 0 {
		dc, err := a.Store.GetDeviceChange(ctx, in.DeviceChangeID)
		if err != nil && !errors.Is(err, db.ErrNotFound) {
			return nil, fmt.Errorf("read device change %d: %w", in.DeviceChangeID, err)
		}
		if err == nil {
			account = dc.AccountName
		}
	}
	d, err := getDevice(ctx, t.ThingSpace, account, in.ICCID)
	if thingspace.KindOf(err) == thingspace.KindDeviceNotFound {
		return &DeviceLookup{}, nil
	}
	if err != nil {
		return nil, thingSpaceError("look up "+in.ICCID, err)
	}
	return &DeviceLookup{Found: true, State: d.State(), MSISDN: d.MSISDN()}, nil
}

// PPUUpdateInput names the device change whose PPU is to be sent.
type PPUUpdateInput struct {
	BulkChangeID   string `json:"bulkChangeId"`
	DeviceChangeID int64  `json:"deviceChangeId"`
}

// PPUUpdateResult is ThingSpace's answer to a PPU update.
type PPUUpdateResult struct {
	RequestID string            `json:"requestId,omitempty"`
	Refusal   *api.Confirmation `json:"refusal,omitempty"`
}

// UpdatePlaceOfUse sends the stored PPU of an already-active device to
// ThingSpace (contactInfo). The request is recorded before it is sent; a
// retry after a lost answer or a 5xx sends it again, which is harmless: a
// PPU update sets an address, it does not change the line's state.
func (a *Activities) UpdatePlaceOfUse(ctx context.Context, in PPUUpdateInput) (*PPUUpdateResult, error) {
	t, err := a.deviceTenant(ctx, in.BulkChangeID, in.DeviceChangeID)
	if err != nil {
		return nil, err
	}
	ctx = withScope(ctx, in.BulkChangeID, in.DeviceChangeID)
	req, fresh, err := a.Store.ClaimSingle(ctx, in.DeviceChangeID, db.PPUKey(in.DeviceChangeID), change.AwaitPPUUpdate)
	if err != nil {
		return nil, fmt.Errorf("record PPU update: %w", err)
	}
	switch req.State {
	case db.RequestAccepted:
		return &PPUUpdateResult{RequestID: req.RequestID}, nil
	case db.RequestRejected:
		return &PPUUpdateResult{
			Refusal: &api.Confirmation{Source: change.BySync, FaultCode: change.Code(req.ErrorCode),
				FaultMessage: req.ErrorMessage},
		}, nil
	}
	if !fresh {
		if err := a.Store.StartAttempt(ctx, req); errors.Is(err, db.ErrStaleAttempt) {
			return nil, superseded(req, err)
		} else if err != nil {
			return nil, err
		}
	}
	dc, err := a.Store.GetDeviceChange(ctx, in.DeviceChangeID)
	if err != nil {
		return nil, err
	}
	ctx = forAccount(ctx, dc.AccountName)
	raw, err := a.Store.DeviceChangePPU(ctx, in.DeviceChangeID)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, permanent(ErrTypeInvalidData, "device change %d has no PPU", in.DeviceChangeID)
	}
	var ppu thingspace.PlaceOfUse
	if err := json.Unmarshal(raw, &ppu); err != nil {
		return nil, permanent(ErrTypeInvalidData, "device change %d: stored PPU is unreadable", in.DeviceChangeID)
	}
	requestID, err := t.ThingSpace.UpdateContactInfo(a.withFence(ctx, req), thingspace.ContactInfoRequest{
		Devices: []thingspace.DeviceRef{
			thingspace.ICCIDRef(dc.ICCID, dc.IMEI),
		}, AccountName: dc.AccountName, PrimaryPlaceOfUse: ppu,
	})
	if errors.Is(err, db.ErrStaleAttempt) {
		return nil, superseded(req, err)
	}
	if err == nil {
		if err := a.Store.MarkSingleAccepted(ctx, req, requestID); err != nil {
			return nil, err
		}
		return &PPUUpdateResult{RequestID: requestID}, nil
	}
	e, ok := thingspace.AsError(err)
	if ok && e.MayHaveApplied() {
		// Perhaps written at ThingSpace: the row stays SENDING rather than
		// RETRY ("changed nothing"), and no refusal is recorded for an
		// update that may stand. The retry sends it again.
		return nil, outcomeUnknown("update PPU", e)
	}
	if !ok || e.Retryable() || e.Kind == thingspace.KindInvalidCredentials {
		if ok {
			_ = a.Store.MarkRequestRetry(ctx, req, e.Code, e.Message)
		}
		return nil, thingSpaceError("update PPU", err)
	}
	if err := a.Store.MarkSingleRejected(ctx, req, e.ShortCode(), e.Message); err != nil {
		return nil, err
	}
	return &PPUUpdateResult{Refusal: &api.Confirmation{Source: change.BySync, FaultCode: change.Code(e.ShortCode()),
		FaultMessage: e.Message}}, nil
}
