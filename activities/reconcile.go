package activities

// Reconciliation: what became of a request whose answer was lost, read
// from ThingSpace's device states and the callbacks received.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
)

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
//
// A deactivation sent with deleteAfterDeactivation has a third sign: once
// done, ThingSpace removes the device from the account, so a device of it
// that the list no longer has was reached (and its change applied; the
// callback, or polling, confirms it). A device ThingSpace never knew looks
// the same, and ends the same way: not in ThingSpace's inventory.
func (a *Activities) reconcile(
	ctx context.Context,
	t *Tenant,
	req *db.ThingSpaceRequest,
	devs []db.ClaimedDevice,
) ([]db.ClaimedDevice, error) {
	activity.GetLogger(ctx).
		Info("reconciling a request whose answer was lost", "operation", req.Operation, "devices", len(devs))
	ids := make([]int64, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	called, err := a.Store.DeviceChangesWithCallbacks(ctx, req.PK, ids)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	states, err := a.deviceStates(ctx, t.ThingSpace, req.AccountName, iccids(devs))
	if err != nil {
		return nil, thingSpaceError("reconcile "+string(req.Operation), err)
	}
	op := req.Operation.Operation()
	found := make([]db.Reconciled, 0, len(devs))
	untouched := 0
	for _, d := range devs {
		r := db.Reconciled{DeviceChangeID: d.ID, Applied: called[d.ID]}
		dev, listed := states[d.ICCID]
		switch {
		case r.Applied:
		case listed:
			st := dev.State()
			r.Applied = st == op.Target() || st == op.Pending()
			if r.Applied && op == change.Inventory {
				r.Result = &db.SyncResult{Success: true, State: st}
			}
		case removalAsked(op, d.DeleteAfterDeactivation):
			r.Applied = true
		}
		if !r.Applied {
			untouched++
		}
		found = append(found, r)
	}
	// The settle time is measured by PostgreSQL, on its own clock, from the
	// last write an attempt was allowed to make: this worker's clock plays
	// no part.
	remaining, wait, err := a.Store.ApplyReconciliation(ctx, req, found, a.reconcileSettle())
	if errors.Is(err, db.ErrStaleAttempt) {
		return nil, superseded(req, err)
	}
	if err != nil {
		return nil, fmt.Errorf("record reconciliation: %w", err)
	}
	if wait > 0 {
		// Too early to tell "never arrived" from "refused, callback on its way".
		return nil, temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf(
				"%d of %d devices show no trace of the lost %s request yet; checking again in %s",
				untouched,
				len(devs),
				req.Operation,
				wait.Round(time.Second),
			),
			ErrTypeThingSpace,
			temporal.ApplicationErrorOptions{NextRetryDelay: wait},
		)
	}
	if remaining == 0 {
		return nil, nil
	}
	return a.Store.RequestDevices(ctx, req.PK)
}

// removalAsked reports whether a change's request asked ThingSpace to
// remove the device once changed: a deactivation sent with
// deleteAfterDeactivation (sent, the stored value of its last request).
func removalAsked(op change.Operation, sent *bool) bool {
	return op == change.Deactivate && sent != nil && *sent
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
func (a *Activities) deviceStates(
	ctx context.Context,
	ts *thingspace.Client,
	account string,
	ids []string,
) (map[string]thingspace.Device, error) {
	out := make(map[string]thingspace.Device, len(ids))
	threshold := a.PollBatchThreshold
	if threshold <= 0 {
		threshold = 20
	}
	if len(ids) <= threshold {
		for _, id := range ids {
			d, err := getDevice(ctx, ts, account, id)
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
	err := ts.ForEachDevice(
		ctx,
		thingspace.ListRequest{AccountName: account},
		func(d thingspace.Device) error {
			if id := d.ID(thingspace.KindICCID); want[id] {
				out[id] = d
				if len(out) == len(want) {
					// Every device asked for is seen: the rest of the
					// account's pages would cost requests for nothing.
					return thingspace.ErrStopListing
				}
			}
			return nil
		},
	)
	return out, err
}

// getDevice looks one device up in the given account with ts, the client
// of the account's tenant. The client's GetDevice searches the client's
// default account only, where a device of another account is not found: a
// device that a lost request did change would look untouched and be sent
// again.
func getDevice(ctx context.Context, ts *thingspace.Client, account, iccid string) (*thingspace.Device, error) {
	id := thingspace.DeviceID{ID: iccid, Kind: thingspace.KindICCID}
	resp, err := ts.ListDevices(ctx, thingspace.ListRequest{AccountName: account, DeviceID: &id})
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
