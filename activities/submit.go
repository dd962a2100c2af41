package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// SubmitBatchInput names one batch of a bulk change.
type SubmitBatchInput struct {
	BulkChangeID string
	BatchNo      int
}

// SubmitBatchResult is what became of a batch.
type SubmitBatchResult struct {
	// Devices is the number of device changes in the batch; each one gets
	// its child workflow, whatever happened to it here.
	Devices   int    `json:"devices"`
	Sent      int    `json:"sent"`
	RequestID string `json:"requestId,omitempty"`
	State     string `json:"state"`
	ErrorCode string `json:"errorCode,omitempty"`
	// Limit is the account's request budget after this batch.
	Limit *api.LimitStatus `json:"limit,omitempty"`
}

// SubmitBatch sends one batch of compatible device changes to ThingSpace as
// a single request.
//
// It never sends the same state change twice. The request is recorded as
// SENDING before it goes out; an attempt that finds it still SENDING knows
// an earlier attempt may have reached ThingSpace without its answer being
// recorded (worker killed, answer lost), and checks the devices' states at
// ThingSpace instead of sending blindly. Only devices the check shows
// untouched are sent again.
func (a *Activities) SubmitBatch(ctx context.Context, in SubmitBatchInput) (*SubmitBatchResult, error) {
	ctx = withScope(ctx, in.BulkChangeID, 0)
	total, err := a.Store.CountBatchDevices(ctx, in.BulkChangeID, in.BatchNo)
	if err != nil {
		return nil, fmt.Errorf("count batch %d: %w", in.BatchNo, err)
	}
	req, devs, fresh, err := a.Store.ClaimBatch(ctx, in.BulkChangeID, in.BatchNo, a.Limits)
	if err != nil {
		return nil, err
	}
	ctx = forAccount(ctx, req.AccountName)
	if !fresh {
		switch req.State {
		case db.RequestAccepted, db.RequestRejected:
			return a.batchResult(ctx, req.PK, total)
		case db.RequestSending:
			if devs, err = a.reconcile(ctx, req, devs); err != nil {
				return nil, err
			}
			if len(devs) == 0 {
				return a.batchResult(ctx, req.PK, total)
			}
		}
		if err := a.Store.StartAttempt(ctx, req.PK); err != nil {
			return nil, fmt.Errorf("record attempt: %w", err)
		}
	}
	if len(devs) == 0 {
		return a.batchResult(ctx, req.PK, total)
	}
	if err := a.send(ctx, req, devs); err != nil {
		return nil, err
	}
	return a.batchResult(ctx, req.PK, total)
}

func (a *Activities) batchResult(ctx context.Context, requestPK int64, total int) (*SubmitBatchResult, error) {
	var r SubmitBatchResult
	err := a.Store.Pool.QueryRow(ctx, `SELECT state, coalesce(request_id, ''), devices, coalesce(error_code, '')
		FROM thingspace_requests WHERE id = $1`, requestPK).Scan(&r.State, &r.RequestID, &r.Sent, &r.ErrorCode)
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	r.Devices = total
	r.Limit = a.limitStatus(ctx)
	return &r, nil
}

// limitStatus reports the budget of the account the context charges, for
// the bulk change's progress; nil when no limit is configured or it cannot
// be read.
func (a *Activities) limitStatus(ctx context.Context) *api.LimitStatus {
	if a.Limiter == nil {
		return nil
	}
	sts, err := a.Limiter.Status(ctx, ratelimit.AccountOf(ctx))
	if err != nil {
		return nil
	}
	out := &api.LimitStatus{}
	for _, s := range sts {
		switch s.Bucket {
		case "requests":
			out.RequestsPerHour, out.UsedLastHour = s.Limit, s.Used
		case "activate":
			out.ActivatesPerMinute = s.Limit
		}
		if s.ThrottledUntil != nil && s.ThrottledUntil.After(out.ThrottledUntil) {
			out.ThrottledUntil = *s.ThrottledUntil
		}
	}
	return out
}

// send makes one attempt and records its answer.
func (a *Activities) send(ctx context.Context, req *db.Request, devs []db.ClaimedDevice) error {
	requestID, results, err := a.call(ctx, req.Operation, req.AccountName, devs)
	if err == nil {
		if err := a.Store.MarkRequestAccepted(ctx, req.PK, requestID, results); err != nil {
			return fmt.Errorf("record accepted request %s: %w", requestID, err)
		}
		return nil
	}
	e, ok := thingspace.AsError(err)
	if !ok {
		// Not an answer from ThingSpace (context cancelled, ...): the
		// request may or may not have left. The next attempt reconciles.
		return fmt.Errorf("send %s batch: %w", req.Operation, err)
	}
	code, msg := e.Code, e.Message
	if code == "" {
		code = e.Kind.String()
	}
	if msg == "" {
		msg = e.Error()
	}
	switch {
	case e.Sent && e.HTTPStatus == 0:
		// Written but unanswered: leave it SENDING so that the retry checks
		// ThingSpace before sending anything.
		return thingSpaceError("send "+req.Operation, err)
	case e.Retryable() || e.Kind == thingspace.KindInvalidCredentials:
		// ThingSpace answered and changed nothing: safe to send again.
		if err := a.Store.MarkRequestRetry(ctx, req.PK, code, msg); err != nil {
			return fmt.Errorf("record failed attempt: %w", err)
		}
		return thingSpaceError("send "+req.Operation, err)
	case len(devs) == 1 && deviceLevel(e.Kind):
		// A one-device request is refused synchronously for reasons that
		// arrive as per-device callback faults in bigger requests; the
		// device's workflow handles both the same way.
		results := map[int64]db.SyncResult{devs[0].ID: {FaultCode: e.ShortCode(), FaultMessage: msg}}
		if err := a.Store.MarkDeviceRefusals(ctx, req.PK, code, msg, results); err != nil {
			return fmt.Errorf("record refusal: %w", err)
		}
		return nil
	default:
		if err := a.Store.MarkRequestRejected(ctx, req.PK, thingspace.ShortCode(code), msg); err != nil {
			return fmt.Errorf("record rejected request: %w", err)
		}
		return nil
	}
}

func deviceLevel(k thingspace.ErrorKind) bool {
	return k == thingspace.KindDeviceAlreadyActive || k == thingspace.KindDeviceNotFound || k == thingspace.KindInvalidState
}

// call builds and sends the ThingSpace request for the devices. Compatible
// devices share their request-level fields (that is what put them in one
// batch), so they are read from the first device.
func (a *Activities) call(ctx context.Context, op, account string, devs []db.ClaimedDevice) (string, map[int64]db.SyncResult, error) {
	var params db.ChangeParams
	if err := json.Unmarshal(devs[0].Params, &params); err != nil {
		return "", nil, permanent(ErrTypeInvalidData, "device change %d: params: %v", devs[0].ID, err)
	}
	refs := make([]thingspace.DeviceRef, len(devs))
	for i, d := range devs {
		refs[i] = thingspace.ICCIDRef(d.ICCID, d.IMEI)
	}
	switch op {
	case "activate":
		r := thingspace.ActivateRequest{Devices: refs, AccountName: account, ServicePlan: params.ServicePlan, MdnZipCode: params.MdnZipCode}
		if len(devs[0].PPU) > 0 {
			var ppu thingspace.PlaceOfUse
			if err := json.Unmarshal(devs[0].PPU, &ppu); err != nil {
				return "", nil, permanent(ErrTypeInvalidData, "device change %d: stored PPU is unreadable", devs[0].ID)
			}
			r.PrimaryPlaceOfUse = &ppu
		}
		id, err := a.ThingSpace.Activate(ctx, r)
		return id, nil, err
	case "suspend":
		id, err := a.ThingSpace.Suspend(ctx, thingspace.ActionRequest{Devices: refs, AccountName: account})
		return id, nil, err
	case "restore":
		id, err := a.ThingSpace.Restore(ctx, thingspace.ActionRequest{Devices: refs, AccountName: account})
		return id, nil, err
	case "deactivate":
		reason := params.ReasonCode
		if reason == "" {
			reason = thingspace.DeactivateReasonGeneral
		}
		id, err := a.ThingSpace.Deactivate(ctx, thingspace.DeactivateRequest{Devices: refs, AccountName: account,
			ReasonCode: reason, EtfWaiver: params.EtfWaiver})
		return id, nil, err
	case "inventory":
		answers, err := a.ThingSpace.AddDevices(ctx, thingspace.AddRequest{DevicesToAdd: refs, AccountName: account})
		if err != nil {
			return "", nil, err
		}
		return "", addResults(devs, answers), nil
	}
	return "", nil, permanent(ErrTypeInvalidData, "unknown operation %q", op)
}

// addResults matches /add's per-device answers to the device changes.
func addResults(devs []db.ClaimedDevice, answers []thingspace.AddResult) map[int64]db.SyncResult {
	byICCID := map[string]thingspace.AddResult{}
	for _, r := range answers {
		for _, id := range r.DeviceIDs {
			if strings.EqualFold(id.Kind, thingspace.KindICCID) {
				byICCID[id.ID] = r
			}
		}
	}
	out := make(map[int64]db.SyncResult, len(devs))
	for _, d := range devs {
		r, ok := byICCID[d.ICCID]
		switch {
		case !ok:
			out[d.ID] = db.SyncResult{FaultCode: "ADD_NO_ANSWER", FaultMessage: "ThingSpace's answer did not mention this device"}
		case r.Succeeded():
			out[d.ID] = db.SyncResult{Success: true, State: string(thingspace.StatePreActive)}
		default:
			out[d.ID] = db.SyncResult{FaultCode: "ADD_FAILED", FaultMessage: r.Response}
		}
	}
	return out
}

// reconcile checks the devices of a request whose earlier attempt may have
// reached ThingSpace, records those it reached, and returns those still to
// send.
//
// A device reached by the lost attempt shows it one of two ways: its state
// at ThingSpace moved (pending or done), or a callback for it arrived (a
// device ThingSpace refused keeps its state but gets a fault callback).
// Callbacks take a while, so a device showing neither is sent again only
// once ReconcileSettle has passed since the lost attempt; until then the
// activity retries later.
func (a *Activities) reconcile(ctx context.Context, req *db.Request, devs []db.ClaimedDevice) ([]db.ClaimedDevice, error) {
	activity.GetLogger(ctx).Info("reconciling a request whose answer was lost", "operation", req.Operation, "devices", len(devs))
	ids := make([]int64, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	called, err := a.Store.DeviceChangesWithCallbacks(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	states, err := a.deviceStates(ctx, req.AccountName, iccids(devs))
	if err != nil {
		return nil, thingSpaceError("reconcile "+req.Operation, err)
	}
	found := make([]db.Reconciled, 0, len(devs))
	untouched := 0
	for _, d := range devs {
		r := db.Reconciled{DeviceChangeID: d.ID, Applied: called[d.ID]}
		if dev, ok := states[d.ICCID]; ok && !r.Applied {
			st := dev.State()
			r.Applied = st == targetState(req.Operation) || st == pendingState(req.Operation)
			if r.Applied && req.Operation == "inventory" {
				r.Result = &db.SyncResult{Success: true, State: string(st)}
			}
		}
		if !r.Applied {
			untouched++
		}
		found = append(found, r)
	}
	if wait := time.Until(req.SentAt.Add(a.reconcileSettle())); untouched > 0 && wait > 0 {
		// Too early to tell "never arrived" from "refused, callback on its way".
		return nil, temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf("%d of %d devices show no trace of the lost %s request yet; checking again in %s", untouched, len(devs), req.Operation, wait.Round(time.Second)),
			ErrTypeThingSpace, temporal.ApplicationErrorOptions{NextRetryDelay: wait})
	}
	remaining, err := a.Store.ApplyReconciliation(ctx, req.PK, found)
	if err != nil {
		return nil, fmt.Errorf("record reconciliation: %w", err)
	}
	if remaining == 0 {
		return nil, nil
	}
	return a.Store.RequestDevices(ctx, req.PK)
}

func (a *Activities) reconcileSettle() time.Duration {
	if a.ReconcileSettle > 0 {
		return a.ReconcileSettle
	}
	return 2 * time.Minute
}

// deviceStates looks the devices up at ThingSpace: one request per device
// when they are few, otherwise the account's device list page by page
// (2,000 devices a request).
func (a *Activities) deviceStates(ctx context.Context, account string, ids []string) (map[string]thingspace.Device, error) {
	out := make(map[string]thingspace.Device, len(ids))
	threshold := a.PollBatchThreshold
	if threshold <= 0 {
		threshold = 20
	}
	if len(ids) <= threshold {
		for _, id := range ids {
			d, err := a.getDevice(ctx, account, id)
			if thingspace.KindOf(err) == thingspace.KindDeviceNotFound {
				continue
			}
			if err != nil {
				return nil, err
			}
			out[id] = *d
		}
		return out, nil
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	err := a.ThingSpace.ForEachDevice(ctx, thingspace.ListRequest{AccountName: account}, func(d thingspace.Device) error {
		if id := d.ID(thingspace.KindICCID); want[id] {
			out[id] = d
		}
		return nil
	})
	return out, err
}

// getDevice looks one device up in the given account. The client's
// GetDevice searches the client's default account only, where a device of
// another account is not found: a device that a lost request did change
// would look untouched and be sent again.
func (a *Activities) getDevice(ctx context.Context, account, iccid string) (*thingspace.Device, error) {
	id := thingspace.DeviceID{ID: iccid, Kind: thingspace.KindICCID}
	resp, err := a.ThingSpace.ListDevices(ctx, thingspace.ListRequest{AccountName: account, DeviceID: &id})
	if err != nil {
		return nil, err
	}
	for i, d := range resp.Devices {
		if strings.EqualFold(d.ID(thingspace.KindICCID), iccid) {
			return &resp.Devices[i], nil
		}
	}
	return nil, &thingspace.Error{Op: thingspace.OpList, HTTPStatus: 200, Kind: thingspace.KindDeviceNotFound,
		Message: "no device with iccid " + iccid}
}

func iccids(devs []db.ClaimedDevice) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.ICCID
	}
	return out
}

// targetState is the state a successful operation leaves the device in.
func targetState(op string) thingspace.State {
	switch op {
	case "activate", "restore":
		return thingspace.StateActive
	case "suspend":
		return thingspace.StateSuspended
	case "deactivate":
		return thingspace.StateDeactive
	case "inventory":
		return thingspace.StatePreActive
	}
	return thingspace.StateUnknown
}

// pendingState is the state a device shows while the operation is under
// way.
func pendingState(op string) thingspace.State {
	switch op {
	case "activate":
		return thingspace.StatePendingActivation
	case "restore":
		return thingspace.StatePendingResume
	case "suspend":
		return thingspace.StatePendingSuspend
	case "deactivate":
		return thingspace.StatePendingDeactivation
	case "inventory":
		return thingspace.StatePendingPreActive
	}
	return thingspace.StateUnknown
}
