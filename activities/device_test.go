package activities_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// deviceRow is a row of the devices table.
type deviceRow struct {
	Status, MSISDN, Site string
	Activated            bool
	LastChange           int64
}

func (h *harness) device(iccid string) deviceRow {
	h.t.Helper()
	var d deviceRow
	require.NoError(h.t, h.store.Pool.QueryRow(ctx(h.t), `SELECT status, coalesce(msisdn, ''), coalesce(site, ''),
		activated_at IS NOT NULL, coalesce(last_device_change, 0) FROM devices WHERE iccid = $1`, iccid).
		Scan(&d.Status, &d.MSISDN, &d.Site, &d.Activated, &d.LastChange))
	return d
}

func (h *harness) complete(in activities.CompleteInput) *activities.CompleteResult {
	h.t.Helper()
	return mustResult[activities.CompleteResult](h, h.acts.CompleteDeviceChange, in)
}

// The first outcome recorded wins; a repeated call (activity retry, or a
// late confirmation) changes nothing and adds no second result entry.
func TestCompleteDeviceChangeIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dev := devices(1, "8914800301", "preactive")[0]
	bulk, ids := h.newBulk(account, changes("activate", 1, dev)...)
	id := ids[dev.ICCID]
	h.exec(
		`UPDATE device_changes SET status = 'SUBMITTED', request_id = 'req-301', submitted_at = now() WHERE id = $1`,
		id,
	)

	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	first := h.complete(activities.CompleteInput{DeviceChangeID: id, Operation: "activate", Status: change.Processed,
		Outcome: "ACTIVATED", FinalState: change.StateActive, MSISDN: "3125550301", ConfirmedBy: change.ByCallback,
		ConfirmedAt: at, RequestID: "req-301"})
	require.Equal(t, &activities.CompleteResult{Status: change.Processed, Outcome: "ACTIVATED", MSISDN: "3125550301",
		BillingStatus: change.BillingNone}, first)

	second := h.complete(activities.CompleteInput{DeviceChangeID: id, Operation: "activate", Status: change.Failed,
		ErrorCode: "NOT_CONFIRMED", ErrorMessage: "late", ConfirmedBy: change.ByPoll, ConfirmedAt: time.Now()})
	require.Equal(t, first, second, "the first outcome is kept")

	dc := h.change(id)
	require.Equal(t, change.Processed, dc.Status)
	require.Equal(t, "ACTIVATED", dc.Outcome)
	require.Equal(t, "3125550301", dc.MSISDN)
	require.Empty(t, dc.ErrorCode)
	require.Equal(t, string(change.ByCallback), dc.ConfirmedBy)
	require.NotNil(t, dc.CompletedAt)

	var results []auditRow
	for _, r := range h.audit(bulk) {
		if r.DedupeKey != "" {
			results = append(results, r)
		}
	}
	require.Len(t, results, 1, "exactly one result entry")
	r := results[0]
	require.Equal(t, "result:"+itoa(id), r.DedupeKey)
	require.Equal(t, "workflow", r.Service)
	require.EqualValues(t, change.Processed, r.Outcome)
	require.Equal(t, "req-301", r.RequestID)
	require.Equal(t, id, r.DeviceChangeID)

	d := h.device(dev.ICCID)
	require.Equal(
		t,
		deviceRow{Status: string(change.StateActive), MSISDN: "3125550301", Activated: true, LastChange: id},
		d,
	)

	// The device's workflow, restarted, sees the change as final.
	st := h.load(id)
	require.True(t, st.Final)
	require.Equal(t, change.Outcome("ACTIVATED"), st.Outcome)
}

// Completions keep our view of the device current: a suspension changes
// its status and keeps its number, a deactivation releases the number, a
// failed change leaves the device alone.
func TestCompleteDeviceChangeUpdatesDevice(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dev := devices(1, "8914800302", "active")[0]

	step := func(op change.Operation, in activities.CompleteInput) int64 {
		t.Helper()
		_, ids := h.newBulk(account, changes(op, 1, dev)...)
		in.DeviceChangeID, in.Operation = ids[dev.ICCID], op
		h.exec(`UPDATE device_changes SET status = 'SUBMITTED', submitted_at = now() WHERE id = $1`, in.DeviceChangeID)
		h.complete(in)
		return in.DeviceChangeID
	}

	act := step("activate", activities.CompleteInput{Status: change.Processed, Outcome: "ACTIVATED",
		FinalState: change.StateActive, MSISDN: "3125550302"})
	require.Equal(
		t,
		deviceRow{Status: "active", MSISDN: "3125550302", Activated: true, LastChange: act},
		h.device(dev.ICCID),
	)

	sus := step("suspend", activities.CompleteInput{Status: change.Processed, Outcome: "SUSPENDED",
		FinalState: change.StateSuspended})
	require.Equal(
		t,
		deviceRow{Status: "suspended", MSISDN: "3125550302", Activated: true, LastChange: sus},
		h.device(dev.ICCID),
	)

	step("restore", activities.CompleteInput{Status: change.Failed, ErrorCode: thingspace.CodeDeviceStateInvalid,
		ErrorMessage: "refused"})
	require.Equal(
		t,
		deviceRow{Status: "suspended", MSISDN: "3125550302", Activated: true, LastChange: sus},
		h.device(dev.ICCID),
		"a failed change leaves the device as it was",
	)

	off := step("deactivate", activities.CompleteInput{Status: change.Processed, Outcome: "DEACTIVATED",
		FinalState: change.StateDeactive, ReleaseMSISDN: true})
	require.Equal(t, deviceRow{Status: "deactive", MSISDN: "", Activated: true, LastChange: off}, h.device(dev.ICCID),
		"deactivation releases the MSISDN")
}

// Children start in batch then file order, page by page, only for
// sent batches; the bulk change ends with counts taken from its
// device changes, and its preactive or pending devices without a site get
// the default site.
func TestListDevicesToStartAndFinishBulkChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	devs := devices(6, "8914800303", "")
	// Batch 1: inventory of 0,1,2; batch 2: inventory of 3,4; batch 3: activate 5.
	cs := append(changes("inventory", 1, devs[0:3]...), changes("inventory", 2, devs[3:5]...)...)
	cs = append(cs, changes("activate", 3, devs[5])...)
	bulk, ids := h.newBulk(account, cs...)
	h.runsAsTestWorkflow(bulk)

	var plan api.Plan
	require.NoError(t, h.run(&plan, h.acts.StartBulkChange, bulk))
	require.Equal(
		t,
		api.Plan{BulkChangeID: bulk, Tenant: change.DefaultTenant, AccountName: account, SubmittedBy: "test", Total: 6,
			Batches: 3},
		plan,
	)
	b, err := h.store.GetBulkChange(ctx(t), bulk)
	require.NoError(t, err)
	require.Equal(t, change.BulkRunning, b.Status)

	list := func(after api.Cursor, maxBatch, limit int) []activities.DeviceToStart {
		t.Helper()
		var page []activities.DeviceToStart
		require.NoError(
			t,
			h.run(&page, h.acts.ListDevicesToStart, activities.ListDevicesInput{BulkChangeID: bulk, After: after,
				MaxBatch: maxBatch, Limit: limit}),
		)
		return page
	}
	p1 := list(api.Cursor{}, 2, 2)
	require.Len(t, p1, 2)
	require.Equal(
		t,
		activities.DeviceToStart{
			ID:        ids[devs[0].ICCID],
			Seq:       1,
			BatchNo:   1,
			ICCID:     devs[0].ICCID,
			Operation: "inventory",
		},
		p1[0],
	)
	require.Equal(t, devs[1].ICCID, p1[1].ICCID)
	p2 := list(api.Cursor{BatchNo: p1[1].BatchNo, Seq: p1[1].Seq}, 2, 2)
	require.Equal(t, []string{devs[2].ICCID, devs[3].ICCID}, []string{p2[0].ICCID, p2[1].ICCID})
	p3 := list(api.Cursor{BatchNo: p2[1].BatchNo, Seq: p2[1].Seq}, 2, 2)
	require.Len(t, p3, 1, "batch 3 is not sent yet")
	require.Equal(t, devs[4].ICCID, p3[0].ICCID)
	require.Empty(t, list(api.Cursor{BatchNo: p3[0].BatchNo, Seq: p3[0].Seq}, 2, 2))
	require.Len(t, list(api.Cursor{BatchNo: p3[0].BatchNo, Seq: p3[0].Seq}, 3, 2), 1)

	// Outcomes: 0,1,3 added to inventory (3 already has a site); 4
	// refused; 2 unconfirmed, ThingSpace last showing it pending; 5
	// activated.
	for _, i := range []int{0, 1, 2, 3, 4, 5} {
		h.exec(`UPDATE device_changes SET status = 'SUBMITTED', submitted_at = now() WHERE id = $1`, ids[devs[i].ICCID])
	}
	for _, i := range []int{0, 1, 3} {
		h.complete(
			activities.CompleteInput{
				DeviceChangeID: ids[devs[i].ICCID],
				Operation:      "inventory",
				Status:         change.Processed,
				Outcome:        "ADDED_TO_INVENTORY",
				FinalState:     change.StatePreActive,
			},
		)
	}
	h.exec(`UPDATE devices SET site = 'WAREHOUSE-7' WHERE iccid = $1`, devs[3].ICCID)
	h.complete(
		activities.CompleteInput{DeviceChangeID: ids[devs[4].ICCID], Operation: "inventory", Status: change.Failed,
			ErrorCode: "ADD_FAILED", ErrorMessage: "Device already exists in the account"},
	)
	h.complete(
		activities.CompleteInput{DeviceChangeID: ids[devs[2].ICCID], Operation: "inventory", Status: change.Failed,
			ErrorCode: change.NotConfirmed, ErrorMessage: "no confirmation", FinalState: change.StatePendingPreActive},
	)
	h.complete(
		activities.CompleteInput{DeviceChangeID: ids[devs[5].ICCID], Operation: "activate", Status: change.Processed,
			Outcome: "ACTIVATED", FinalState: change.StateActive, MSISDN: "3125550303"},
	)
	// A preactive device of another bulk change is not this one's to touch.
	stranger := devices(1, "8914800304", "")[0]
	_, sids := h.newBulk(account, changes("inventory", 1, stranger)...)
	h.complete(
		activities.CompleteInput{DeviceChangeID: sids[stranger.ICCID], Operation: "inventory", Status: change.Processed,
			Outcome: "ADDED_TO_INVENTORY", FinalState: change.StatePreActive},
	)

	var fin activities.FinishResult
	require.NoError(
		t,
		h.run(&fin, h.acts.FinishBulkChange, activities.FinishInput{BulkChangeID: bulk, DefaultSite: "DEFAULT-SITE"}),
	)
	require.Equal(t, activities.FinishResult{Processed: 4, Errors: 2, SitesSet: 4}, fin)
	require.Equal(t, "DEFAULT-SITE", h.device(devs[0].ICCID).Site)
	require.Equal(t, "DEFAULT-SITE", h.device(devs[1].ICCID).Site)
	require.Equal(t, "DEFAULT-SITE", h.device(devs[2].ICCID).Site, "pending devices get it too")
	require.Equal(t, "DEFAULT-SITE", h.device(devs[4].ICCID).Site, "and inventory devices whose add failed")
	require.Equal(t, "WAREHOUSE-7", h.device(devs[3].ICCID).Site, "an existing site is kept")
	require.Equal(t, "", h.device(devs[5].ICCID).Site, "active devices do not get it")
	require.Equal(t, "", h.device(stranger.ICCID).Site)

	b, err = h.store.GetBulkChange(ctx(t), bulk)
	require.NoError(t, err)
	require.Equal(t, change.BulkFinished, b.Status)
	require.Equal(t, 4, b.Processed)
	require.Equal(t, 2, b.Errors)
	require.NotNil(t, b.FinishedAt)

	// Finishing again is harmless; a finished bulk change cannot start.
	require.NoError(
		t,
		h.run(&fin, h.acts.FinishBulkChange, activities.FinishInput{BulkChangeID: bulk, DefaultSite: "OTHER"}),
	)
	require.Equal(t, activities.FinishResult{Processed: 4, Errors: 2, SitesSet: 0}, fin)
	ae := appError(t, h.run(nil, h.acts.StartBulkChange, bulk))
	require.True(t, ae.NonRetryable())
	require.Equal(t, activities.ErrTypeNotRunnable, ae.Type())
}
