package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// SendBatchInput names one batch of a bulk change.
type SendBatchInput struct {
	BulkChangeID string
	BatchNo      int
}

// SendBatchResult is what became of a batch.
type SendBatchResult struct {
	// Devices is the number of device changes in the batch; each one gets
	// its child workflow, whatever happened to it here.
	Devices int `json:"devices"`
	// Sent is the number of device changes the batch's request carried.
	Sent int `json:"sent"`
	// RequestID is ThingSpace's requestId of the batch's request; empty
	// when it was split (each sub-request has its own, stored on its
	// device changes).
	RequestID string `json:"requestId,omitempty"`
	// State is the batch's request's state; for a split batch, ACCEPTED
	// when ThingSpace accepted any of its sub-requests, else REJECTED.
	State string `json:"state"`
	// ErrorCode is ThingSpace's refusal of the batch's request (for a
	// split batch, the refusal that made it split).
	ErrorCode string `json:"errorCode,omitempty"`
	// SubRequests is how many requests the batch was split into (0: not
	// split).
	SubRequests int `json:"subRequests,omitempty"`
	// Limit is the account's request budget after this batch.
	Limit *api.LimitStatus `json:"limit,omitempty"`
}

// SendBatch sends one batch of compatible device changes to ThingSpace as
// a single request. It is registered and called as SendBatchActivity.
//
// It never sends the same state change twice. The request is recorded as
// SENDING before it goes out; an attempt that finds it still SENDING knows
// an earlier attempt may have reached ThingSpace without its answer being
// recorded (worker killed, answer lost), and checks the devices' states at
// ThingSpace instead of sending blindly. Only devices the check shows
// untouched are sent again.
//
// When ThingSpace refuses the request as a whole for a reason that can be a
// single device's (unknown device, wrong state: splittable), one bad device
// would otherwise fail the whole batch. The request is split in two halves,
// each its own request recorded before it is sent and handled the same way
// (accepted, refused, split again, retried, reconciled), until the refused
// devices are isolated in one-device requests, whose refusal is recorded
// for the device alone. Halving bounds the rounds by log2 of the batch
// size, and k bad devices cost at most 1 + 2k·⌈log2 n⌉ requests; a batch in
// which more than splitMaxRefusedPerLevel requests of one round are refused
// is refused for a reason common to most of its devices (an operator
// restoring active devices, say), and is not split further: its refused
// requests end their devices as ERROR, as an unsplit refusal does. Every
// sub-request is sent within this one activity call, so the workflow sees
// one result per batch; the split is kept in PostgreSQL, so a retry or a
// restarted worker resumes it where it stood.
func (a *Activities) SendBatch(ctx context.Context, in SendBatchInput) (*SendBatchResult, error) {
	// Before anything is claimed: a bulk change of a tenant this worker
	// does not know waits, untouched, for its tenant to be configured.
	t, err := a.bulkTenant(ctx, in.BulkChangeID)
	if err != nil {
		return nil, err
	}
	ctx = withScope(ctx, in.BulkChangeID, 0)
	total, err := a.Store.CountBatchDevices(ctx, in.BulkChangeID, in.BatchNo)
	if err != nil {
		return nil, fmt.Errorf("count batch %d: %w", in.BatchNo, err)
	}
	req, devs, fresh, err := a.Store.ClaimBatch(ctx, in.BulkChangeID, in.BatchNo, t.Limits)
	if err != nil {
		return nil, err
	}
	ctx = forAccount(ctx, req.AccountName)
	if err := a.attempt(ctx, t, req, devs, fresh); err != nil {
		return nil, err
	}
	if err := a.sendSubRequests(ctx, t, in); err != nil {
		return nil, err
	}
	return a.batchResult(ctx, t, in, total)
}

// attempt takes one request of a batch (its first request or a
// sub-request) as far as it goes: nothing for a request already answered,
// a reconciliation for one whose answer may have been lost, else one send.
func (a *Activities) attempt(
	ctx context.Context,
	t *Tenant,
	req *db.ThingSpaceRequest,
	devs []db.ClaimedDevice,
	fresh bool,
) error {
	if !fresh {
		switch req.State {
		case db.RequestAccepted, db.RequestRejected:
			return nil
		case db.RequestSending:
			var err error
			if devs, err = a.reconcile(ctx, t, req, devs); err != nil {
				return err
			}
			if len(devs) == 0 {
				return nil
			}
		default:
			if len(devs) == 0 {
				// Cannot happen (a request always keeps a device to send);
				// closing it keeps the rounds of splitting finite.
				err := a.Store.MarkRequestRejected(ctx, req, "NOTHING_TO_SEND", "no device of this request is left to send")
				if errors.Is(err, db.ErrStaleAttempt) {
					return superseded(req, err)
				}
				if err != nil {
					return fmt.Errorf("close empty request %s: %w", req.Key, err)
				}
				return nil
			}
		}
		claimed, err := a.Store.ClaimAttempt(ctx, req)
		if err != nil {
			return err
		}
		if !claimed {
			// An overlapping attempt of this activity (a retry started
			// while a timed-out attempt still runs) is sending it. Come
			// back later: it will be answered, or reconciled.
			return temporal.NewApplicationErrorWithOptions(
				fmt.Sprintf("request %s is being sent by another attempt", req.Key),
				ErrTypeThingSpace, temporal.ApplicationErrorOptions{NextRetryDelay: 5 * time.Second})
		}
	}
	if len(devs) == 0 {
		return nil
	}
	return a.send(ctx, t, req, devs)
}

// Splitting limits.
const (
	// splitMaxRefusedPerLevel: a round of splitting with more refused
	// requests than this stops the splitting. A few bad devices are refused
	// in at most one request each per round; more than this many is a
	// refusal shared by most devices, which isolating would cost about two
	// requests per device.
	splitMaxRefusedPerLevel = 16
	// splitMaxDepth bounds the rounds whatever happens (2^32 devices would
	// be needed to get there by halving).
	splitMaxDepth = 32
	// splitDeadlineMargin: a sub-request is not started this close to the
	// activity's deadline (one request can take the client's timeout plus
	// a limiter wait); the activity fails retryably instead and its next
	// attempt carries on from PostgreSQL.
	splitDeadlineMargin = time.Minute
)

// sendSubRequests sends the sub-requests of a split batch, round by round,
// until none is left to send: each is accepted, refused (for its devices,
// or split again) or fails the activity, which sends it on its next
// attempt.
func (a *Activities) sendSubRequests(ctx context.Context, t *Tenant, in SendBatchInput) error {
	sent := 0
	for round := 0; round <= splitMaxDepth; round++ {
		open, err := a.Store.OpenSubRequests(ctx, in.BulkChangeID, in.BatchNo)
		if err != nil {
			return err
		}
		if len(open) == 0 {
			return nil
		}
		for _, r := range open {
			if sent > 0 && nearDeadline(ctx, splitDeadlineMargin) {
				return temporal.NewApplicationErrorWithOptions(
					fmt.Sprintf(
						"batch %d: %d sub-request(s) of this round and maybe more still to send; continuing in the next attempt",
						in.BatchNo,
						len(open),
					),
					ErrTypeThingSpace,
					temporal.ApplicationErrorOptions{NextRetryDelay: time.Second},
				)
			}
			devs, err := a.Store.RequestDevices(ctx, r.PK)
			if err != nil {
				return err
			}
			if err := a.attempt(ctx, t, r, devs, false); err != nil {
				return err
			}
			sent++
		}
	}
	return fmt.Errorf("batch %d: sub-requests still open after %d rounds of splitting", in.BatchNo, splitMaxDepth)
}

// nearDeadline reports whether the running activity has less than margin
// left before its start-to-close deadline.
func nearDeadline(ctx context.Context, margin time.Duration) bool {
	if !activity.IsActivity(ctx) {
		return false
	}
	d := activity.GetInfo(ctx).Deadline
	return !d.IsZero() && time.Until(d) < margin
}

func (a *Activities) batchResult(ctx context.Context, t *Tenant, in SendBatchInput, total int) (*SendBatchResult, error) {
	o, err := a.Store.BatchRequests(ctx, in.BulkChangeID, in.BatchNo)
	if err != nil {
		return nil, fmt.Errorf("read batch %d: %w", in.BatchNo, err)
	}
	r := SendBatchResult{Devices: total, Sent: o.Root.Devices, RequestID: o.Root.RequestID, State: o.Root.State,
		ErrorCode: o.Root.ErrorCode, SubRequests: o.SubRequests}
	if o.SubRequests > 0 {
		r.State = db.RequestRejected
		if o.Accepted > 0 {
			r.State = db.RequestAccepted
		}
	}
	r.Limit = limitStatus(ctx, t)
	return &r, nil
}

// limitStatus reports the budget of the account the context charges, under
// the tenant's limits, for the bulk change's progress; nil when no limit
// is configured or it cannot be read.
func limitStatus(ctx context.Context, t *Tenant) *api.LimitStatus {
	if t.Limiter == nil {
		return nil
	}
	sts, err := t.Limiter.Status(ctx, ratelimit.AccountOf(ctx))
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

// superseded is the retryable failure of an attempt that lost its request
// to another attempt (its fencing token is stale): it sent nothing more and
// recorded nothing; the attempt holding the request does both.
func superseded(req *db.ThingSpaceRequest, err error) error {
	return temporal.NewApplicationErrorWithOptions(
		fmt.Sprintf("request %s was taken over by another attempt: %v", req.Key, err),
		ErrTypeThingSpace, temporal.ApplicationErrorOptions{NextRetryDelay: 5 * time.Second})
}

// withFence makes every HTTP write of the request check, right before it
// leaves, that this attempt still holds the request (db.FenceSend).
func (a *Activities) withFence(ctx context.Context, req *db.ThingSpaceRequest) context.Context {
	return thingspace.WithSendGuard(ctx, func(ctx context.Context) error { return a.Store.FenceSend(ctx, req) })
}

// send makes one attempt and records its answer. Every record is made only
// if the attempt still holds the request (its state and attempt number as
// this attempt claimed them): an attempt that another one superseded while
// it was paused overwrites nothing.
func (a *Activities) send(ctx context.Context, t *Tenant, req *db.ThingSpaceRequest, devs []db.ClaimedDevice) error {
	err := a.sendOnce(ctx, t, req, devs)
	if errors.Is(err, db.ErrStaleAttempt) {
		activity.GetLogger(ctx).Warn("another attempt took over the request; this one sends and records nothing more",
			"request", req.Key, "attempt", req.Attempts, "error", err)
		return superseded(req, err)
	}
	return err
}

func (a *Activities) sendOnce(ctx context.Context, t *Tenant, req *db.ThingSpaceRequest, devs []db.ClaimedDevice) error {
	requestID, results, err := a.call(a.withFence(ctx, req), t, req.Operation.Operation(), req.AccountName, devs)
	if errors.Is(err, db.ErrStaleAttempt) {
		return err
	}
	if err == nil {
		if err := a.Store.MarkRequestAccepted(ctx, req, requestID, results); err != nil {
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
	case e.MayHaveApplied():
		// Written but unanswered, or answered by a 5xx (from the gateway,
		// say, after the backend applied it): the outcome is unknown. Leave
		// it SENDING so that the retry checks ThingSpace before sending
		// anything.
		return outcomeUnknown("send "+string(req.Operation), e)
	case e.Retryable() || e.Kind == thingspace.KindInvalidCredentials:
		// Refused before anything was applied (429, a refused token or
		// session, never connected): safe to send again.
		if err := a.Store.MarkRequestRetry(ctx, req, code, msg); err != nil {
			return fmt.Errorf("record failed attempt: %w", err)
		}
		return thingSpaceError("send "+string(req.Operation), err)
	case len(devs) > 1 && splittable(e):
		return a.refusedMany(ctx, req, e.ShortCode(), msg)
	case len(devs) == 1 && deviceLevel(e.Kind):
		// A one-device request (a batch of one, or the sub-request that
		// isolated a refused device) is refused synchronously for reasons
		// that arrive as per-device callback faults in bigger requests; the
		// device's workflow handles both the same way.
		results := map[int64]db.SyncResult{devs[0].ID: {FaultCode: change.Code(e.ShortCode()), FaultMessage: msg}}
		if err := a.Store.MarkDeviceRefusals(ctx, req, code, msg, results); err != nil {
			return fmt.Errorf("record refusal: %w", err)
		}
		return nil
	default:
		if err := a.Store.MarkRequestRejected(ctx, req, change.Code(change.ShortCode(code)), msg); err != nil {
			return fmt.Errorf("record rejected request: %w", err)
		}
		return nil
	}
}

// deviceLevel reports whether a refusal of the kind is about one device
// (ThingSpace names these in per-device callback faults): unknown, of
// another account than the request's, already active, in the wrong state.
func deviceLevel(k thingspace.ErrorKind) bool {
	return k == thingspace.KindDeviceAlreadyActive || k == thingspace.KindDeviceNotFound ||
		k == thingspace.KindDeviceAccountInvalid || k == thingspace.KindInvalidState
}

// splittable reports whether ThingSpace's refusal of a whole multi-device
// request may be caused by some of its devices only: the device-level
// refusals, an identifier or kind ThingSpace will not take (this product
// validates them, ThingSpace's rules may be stricter), and a line's daily
// limit (ThingSpace counts changes made outside this product too; its code
// is unconfirmed, so an unknown code is simply not split).
func splittable(e *thingspace.Error) bool {
	if deviceLevel(e.Kind) {
		return true
	}
	switch e.ShortCode() {
	case thingspace.CodeDeviceIDInvalid, thingspace.CodeDeviceKindInvalid, thingspace.CodeDailyActionsExceeded:
		return true
	}
	return false
}

// refusedMany handles ThingSpace's refusal of a multi-device request for a
// splittable reason: split it in two, unless the batch's refusals look
// shared by most of its devices (more than splitMaxRefusedPerLevel in a
// round), in which case its devices end as ERROR with the code.
func (a *Activities) refusedMany(ctx context.Context, req *db.ThingSpaceRequest, code, msg string) error {
	refused, err := a.Store.RefusedByDepth(ctx, req.BulkChangeID, db.BatchRootKey(req.Key))
	if err != nil {
		return err
	}
	depth := db.RequestDepth(req.Key)
	if refused[depth] >= splitMaxRefusedPerLevel || (depth > 0 && refused[depth-1] > splitMaxRefusedPerLevel) {
		activity.GetLogger(ctx).Warn("too many requests of this batch refused to isolate the devices; not splitting",
			"request", req.Key, "code", code, "refusedAtThisLevel", refused[depth])
		return a.Store.MarkRequestRejected(
			ctx,
			req,
			change.Code(code),
			fmt.Sprintf(
				"%s (ThingSpace refused the request carrying this device; "+
					"too many of the batch's requests were refused to isolate each device)",
				msg,
			),
		)
	}
	subs, err := a.Store.SplitRequest(ctx, req, code, msg)
	if err != nil {
		return fmt.Errorf("split request %s: %w", req.Key, err)
	}
	activity.GetLogger(ctx).
		Info("ThingSpace refused a request for a reason that may be one device's; split it to isolate the device",
			"request", req.Key, "code", code, "devices", req.Devices, "halves", []int{subs[0].Devices, subs[1].Devices})
	return nil
}

// call builds and sends the ThingSpace request for the devices with the
// tenant's client. Compatible devices share their request-level fields
// (that is what put them in one batch), so they are read from the first
// device.
func (a *Activities) call(
	ctx context.Context,
	t *Tenant,
	op change.Operation,
	account string,
	devs []db.ClaimedDevice,
) (string, map[int64]db.SyncResult, error) {
	var params db.ChangeParams
	if err := json.Unmarshal(devs[0].Params, &params); err != nil {
		return "", nil, permanent(ErrTypeInvalidData, "device change %d: params: %v", devs[0].ID, err)
	}
	refs := make([]thingspace.DeviceRef, len(devs))
	for i, d := range devs {
		refs[i] = thingspace.ICCIDRef(d.ICCID, d.IMEI)
	}
	switch op {
	case change.Activate:
		r := thingspace.ActivateRequest{
			Devices:     refs,
			AccountName: account,
			ServicePlan: params.ServicePlan,
			MdnZipCode:  params.MdnZipCode,
			SkuNumber:   params.SkuNumber,
		}
		if len(devs[0].PPU) > 0 {
			var ppu thingspace.PlaceOfUse
			if err := json.Unmarshal(devs[0].PPU, &ppu); err != nil {
				return "", nil, permanent(ErrTypeInvalidData, "device change %d: stored PPU is unreadable", devs[0].ID)
			}
			r.PrimaryPlaceOfUse = &ppu
		}
		id, err := t.ThingSpace.Activate(ctx, r)
		return id, nil, err
	case change.Suspend:
		id, err := t.ThingSpace.Suspend(ctx, thingspace.ActionRequest{Devices: refs, AccountName: account})
		return id, nil, err
	case change.Restore:
		id, err := t.ThingSpace.Restore(ctx, thingspace.ActionRequest{Devices: refs, AccountName: account})
		return id, nil, err
	case change.Deactivate:
		reason := params.ReasonCode
		if reason == "" {
			reason = thingspace.DeactivateReasonGeneral
		}
		// The file's choice, else this worker's setting for the tenant,
		// now. Recorded before the request leaves: a device missing from
		// ThingSpace's list afterwards (a lost answer, polling) was removed
		// on purpose only if it was asked. The batch's devices share the
		// file's value (BatchKey), so one value is right for all of them.
		del := params.DeleteAfter(t.DeleteAfterDeactivation)
		ids := make([]int64, len(devs))
		for i, d := range devs {
			ids[i] = d.ID
		}
		if err := a.Store.SetDeleteAfterDeactivation(ctx, ids, del); err != nil {
			return "", nil, err
		}
		id, err := t.ThingSpace.Deactivate(ctx, thingspace.DeactivateRequest{Devices: refs, AccountName: account,
			ReasonCode: reason, EtfWaiver: params.EtfWaiver, DeleteAfterDeactivation: del})
		return id, nil, err
	case change.Inventory:
		answers, err := t.ThingSpace.AddDevices(ctx, thingspace.AddRequest{DevicesToAdd: refs, AccountName: account})
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
			out[d.ID] = db.SyncResult{
				FaultCode:    "ADD_NO_ANSWER",
				FaultMessage: "ThingSpace's answer did not mention this device",
			}
		case r.Succeeded():
			out[d.ID] = db.SyncResult{Success: true, State: change.StatePreActive}
		default:
			out[d.ID] = db.SyncResult{FaultCode: "ADD_FAILED", FaultMessage: r.Response}
		}
	}
	return out
}
