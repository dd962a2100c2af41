package db_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/thingspace"
)

// deviceRow is our view of a device (table devices).
type deviceRow struct {
	Status, MSISDN, Site string
	ActivatedAt, Removed *time.Time
	LastChange           int64
}

func device(t *testing.T, st *db.Store, iccid string) *deviceRow {
	t.Helper()
	var d deviceRow
	var msisdn, site *string
	err := st.Pool.QueryRow(testCtx(t), `SELECT status, msisdn, site, activated_at, removed_from_thingspace_at,
		coalesce(last_device_change, 0) FROM devices WHERE iccid = $1`, iccid).
		Scan(&d.Status, &msisdn, &site, &d.ActivatedAt, &d.Removed, &d.LastChange)
	if err != nil && strings.Contains(err.Error(), "no rows") {
		return nil
	}
	require.NoError(t, err)
	if msisdn != nil {
		d.MSISDN = *msisdn
	}
	if site != nil {
		d.Site = *site
	}
	return &d
}

func TestComplete(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("the first outcome stays; the audit log has one result entry", func(t *testing.T) {
		b, id := newChange(t, st, change.Activate)
		accept(t, st, b.ID, 1, "req-complete")
		at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
		dc, changed, err := st.Complete(ctx, db.Completion{DeviceChangeID: id, Status: change.Processed,
			Outcome: string(change.Activated), FinalState: "active", MSISDN: "5551234567", ConfirmedBy: "callback",
			ConfirmedAt: &at, BillingPending: true})
		require.NoError(t, err)
		require.True(t, changed)
		require.Equal(t, change.Processed, dc.Status)
		require.Equal(t, string(change.Activated), dc.Outcome)
		require.Equal(t, "active", dc.FinalState)
		require.Equal(t, "5551234567", dc.MSISDN)
		require.Equal(t, "callback", dc.ConfirmedBy)
		require.Equal(t, change.BillingPending, dc.BillingStatus)
		require.NotNil(t, dc.CompletedAt)
		require.True(t, dc.Final())

		again, changed, err := st.Complete(ctx, db.Completion{DeviceChangeID: id, Status: change.Failed,
			ErrorCode: change.NotConfirmed, ConfirmedBy: "poll"})
		require.NoError(t, err)
		require.False(t, changed)
		require.Equal(t, change.Processed, again.Status)
		require.Equal(t, "callback", again.ConfirmedBy)
		require.Empty(t, again.ErrorCode)
		require.Equal(t, 1, resultEntries(t, st, id))

		var outcome, requestID string
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT outcome, request_id FROM m2m_log WHERE dedupe_key = $1`,
			fmt.Sprintf("result:%d", id)).Scan(&outcome, &requestID))
		require.Equal(t, string(change.Processed), outcome)
		require.Equal(t, "req-complete", requestID)

		d := device(t, st, dc.ICCID)
		require.NotNil(t, d)
		require.Equal(t, "active", d.Status)
		require.Equal(t, "5551234567", d.MSISDN)
		require.NotNil(t, d.ActivatedAt)
		require.Equal(t, id, d.LastChange)
	})

	t.Run("overlapping completions: exactly one outcome is recorded", func(t *testing.T) {
		b, id := newChange(t, st, change.Suspend)
		accept(t, st, b.ID, 1, "req-race")
		// Every caller reads the one outcome, whichever it asked for.
		dbtest.RequireOneWinner(t, 6, func(i int) (change.Status, bool, error) {
			c := db.Completion{DeviceChangeID: id, Status: change.Processed, Outcome: string(change.Suspended),
				FinalState: "suspended", ConfirmedBy: "callback"}
			if i%2 == 1 {
				c = db.Completion{DeviceChangeID: id, Status: change.Failed, ErrorCode: change.NotConfirmed,
					ConfirmedBy: "poll"}
			}
			dc, changed, err := st.Complete(ctx, c)
			if err != nil {
				return "", false, err
			}
			return dc.Status, changed, nil
		})
		require.Equal(t, 1, resultEntries(t, st, id))
	})

	t.Run("a deactivation sent with deleteAfterDeactivation removes the device; an add brings it back", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		act := createBulk(t, st, dev(iccid, change.Activate, 1))
		accept(t, st, act.ID, 1, "req-act")
		_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: changeIDs(t, st, act.ID)[0], Status: change.Processed,
			Outcome: string(change.Activated), FinalState: "active", MSISDN: "5550000001"})
		require.NoError(t, err)
		activated := *device(t, st, iccid).ActivatedAt

		deact := createBulk(t, st, dev(iccid, change.Deactivate, 1))
		id := changeIDs(t, st, deact.ID)[0]
		req, _ := claim(t, st, deact.ID, 1)
		require.NoError(t, st.SetDeleteAfterDeactivation(ctx, []int64{id}, true))
		require.NoError(t, st.MarkRequestAccepted(ctx, req, "req-deact", nil))
		dc, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: id, Status: change.Processed,
			Outcome: string(change.Deactivated), FinalState: "deactive", ReleaseMSISDN: true})
		require.NoError(t, err)
		require.True(t, dc.RemovedFromThingSpace)
		d := device(t, st, iccid)
		require.Equal(t, "deactive", d.Status)
		require.Empty(t, d.MSISDN, "a deactivation releases the number")
		require.NotNil(t, d.Removed)
		require.True(t, activated.Equal(*d.ActivatedAt), "the activation date is kept")

		add := createBulk(t, st, dev(iccid, change.Inventory, 1))
		accept(t, st, add.ID, 1, "req-add")
		_, _, err = st.Complete(ctx, db.Completion{DeviceChangeID: changeIDs(t, st, add.ID)[0], Status: change.Processed,
			Outcome: string(change.AddedToInventory), FinalState: "preactive"})
		require.NoError(t, err)
		require.Nil(t, device(t, st, iccid).Removed)
	})

	t.Run("a deactivation without deleteAfterDeactivation leaves the device in ThingSpace", func(t *testing.T) {
		b, id := newChange(t, st, change.Deactivate)
		req, _ := claim(t, st, b.ID, 1)
		require.NoError(t, st.SetDeleteAfterDeactivation(ctx, []int64{id}, false))
		require.NoError(t, st.MarkRequestAccepted(ctx, req, "req-keep", nil))
		dc, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: id, Status: change.Processed,
			Outcome: string(change.Deactivated), FinalState: "deactive"})
		require.NoError(t, err)
		require.False(t, dc.RemovedFromThingSpace)
		require.Nil(t, device(t, st, dc.ICCID).Removed)
	})

	t.Run("an error message is recorded without the device's PPU", func(t *testing.T) {
		d := devs(change.Activate, 1, 1)
		d[0].PPU = ppuJSON("Zebulon", "742 Evergreen Terrace")
		b := createBulk(t, st, d...)
		id := changeIDs(t, st, b.ID)[0]
		dc, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: id, Status: change.Failed,
			ErrorCode: "REQUEST_FAILED.InvalidAddress", ErrorMessage: "address 742 Evergreen Terrace of Zebulon refused"})
		require.NoError(t, err)
		require.Equal(t, "address "+thingspace.Redacted+" of "+thingspace.Redacted+" refused", dc.ErrorMessage)
		require.Zero(t, queryInt(t, st, `SELECT count(*) FROM m2m_log WHERE error_message LIKE '%Zebulon%'`))
	})

	t.Run("an error keeps what our view knew of the device, or learns what ThingSpace showed", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			known    string // the device's status before ("" for a device never seen)
			observed string
			want     string
		}{
			{"unknown device, nothing observed", "", "", "unknown"},
			{"unknown device, state observed", "", "suspended", "suspended"},
			{"known device, nothing observed", "active", "", "active"},
			{"known device, state observed", "active", "deactive", "deactive"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				iccid := dbtest.NewICCID()
				if tc.known != "" {
					exec(t, st, `INSERT INTO devices (iccid, status) VALUES ($1, $2)`, iccid, tc.known)
				}
				b := createBulk(t, st, dev(iccid, change.Suspend, 1))
				_, changed, err := st.Complete(ctx, db.Completion{DeviceChangeID: changeIDs(t, st, b.ID)[0],
					Status: change.Failed, ErrorCode: change.PollStateMismatch, ObservedState: tc.observed})
				require.NoError(t, err)
				require.True(t, changed)
				require.Equal(t, tc.want, device(t, st, iccid).Status)
			})
		}
	})

	t.Run("an unknown device change is an error", func(t *testing.T) {
		_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: 1 << 40, Status: change.Processed})
		require.ErrorIs(t, err, db.ErrNotFound)
	})
}

func TestDeviceChangeUpdates(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("billing status and its failure", func(t *testing.T) {
		_, id := newChange(t, st, change.Activate)
		require.NoError(t, st.SetBillingStatus(ctx, id, change.BillingError, string(change.MSISDNUnknown), "no number"))
		dc := getChange(t, st, id)
		require.Equal(t, change.BillingError, dc.BillingStatus)
		require.Equal(t, string(change.MSISDNUnknown), dc.BillingErrorCode)
		require.Equal(t, "no number", dc.BillingError)
		require.NoError(t, st.SetBillingStatus(ctx, id, change.BillingCreated, "", ""))
		dc = getChange(t, st, id)
		require.Equal(t, change.BillingCreated, dc.BillingStatus)
		require.Empty(t, dc.BillingErrorCode, "a success clears the failure")
		require.Empty(t, dc.BillingError)
		require.Error(t, st.SetBillingStatus(ctx, id, "PAID", "", ""), "a status outside the schema's list")
	})

	t.Run("an MSISDN learned later reaches our view only from the device's last change", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		first := createBulk(t, st, dev(iccid, change.Activate, 1))
		firstID := changeIDs(t, st, first.ID)[0]
		accept(t, st, first.ID, 1, "req-m1")
		_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: firstID, Status: change.Processed,
			Outcome: string(change.Activated), FinalState: "active"})
		require.NoError(t, err)
		require.NoError(t, st.SetMSISDN(ctx, firstID, "5550001111"))
		require.Equal(t, "5550001111", getChange(t, st, firstID).MSISDN)
		require.Equal(t, "5550001111", device(t, st, iccid).MSISDN)

		second := createBulk(t, st, dev(iccid, change.Suspend, 1))
		accept(t, st, second.ID, 1, "req-m2")
		_, _, err = st.Complete(ctx, db.Completion{DeviceChangeID: changeIDs(t, st, second.ID)[0],
			Status: change.Processed, Outcome: string(change.Suspended), FinalState: "suspended"})
		require.NoError(t, err)
		require.NoError(t, st.SetMSISDN(ctx, firstID, "5559999999"))
		require.Equal(t, "5559999999", getChange(t, st, firstID).MSISDN)
		require.Equal(t, "5550001111", device(t, st, iccid).MSISDN, "an older change does not overwrite the device")
	})

	t.Run("the default site goes to inventory adds and pending devices without one", func(t *testing.T) {
		added, pending, active := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()
		sited, unseen := dbtest.NewICCID(), dbtest.NewICCID()
		exec(t, st, `INSERT INTO devices (iccid, status) VALUES ($1, 'pending activation'), ($2, 'active')`, pending, active)
		exec(t, st, `INSERT INTO devices (iccid, status, site) VALUES ($1, 'preactive', 'OTHER')`, sited)
		b := createBulk(t, st, dev(added, change.Inventory, 1), dev(unseen, change.Inventory, 1),
			dev(pending, change.Activate, 2), dev(active, change.Suspend, 3), dev(sited, change.Activate, 4))
		accept(t, st, b.ID, 1, "req-site")
		_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: changeIDs(t, st, b.ID)[0], Status: change.Processed,
			Outcome: string(change.AddedToInventory), FinalState: "preactive"})
		require.NoError(t, err)

		n, err := st.AssignDefaultSite(ctx, b.ID, "")
		require.NoError(t, err)
		require.Zero(t, n, "no site, nothing to do")
		require.Nil(t, device(t, st, unseen))

		n, err = st.AssignDefaultSite(ctx, b.ID, "SITE-1")
		require.NoError(t, err)
		require.Equal(t, 3, n)
		for iccid, want := range map[string]string{added: "SITE-1", unseen: "SITE-1", pending: "SITE-1", active: "",
			sited: "OTHER"} {
			require.Equal(t, want, device(t, st, iccid).Site, iccid)
		}
		require.Equal(t, "unknown", device(t, st, unseen).Status, "an add our view had not seen is recorded")

		n, err = st.AssignDefaultSite(ctx, b.ID, "SITE-2")
		require.NoError(t, err)
		require.Zero(t, n, "a site once given stays")
	})
}

func TestDeviceChangeReads(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("unknown ids are ErrNotFound; a device without a change in flight too", func(t *testing.T) {
		_, err := st.GetDeviceChange(ctx, 1<<40)
		require.ErrorIs(t, err, db.ErrNotFound)
		_, err = st.InFlightChange(ctx, dbtest.NewICCID())
		require.ErrorIs(t, err, db.ErrNotFound)
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		_, err = st.InFlightChange(ctx, getChange(t, st, changeIDs(t, st, b.ID)[0]).ICCID)
		require.ErrorIs(t, err, db.ErrNotFound, "a pending change is not in flight")
	})

	t.Run("devices to start: after the cursor, up to the batch sent, unfinished below a batch", func(t *testing.T) {
		d := devs(change.Suspend, 1, 3)
		d = append(d, devs(change.Suspend, 2, 2)...)
		d = append(d, devs(change.Suspend, 3, 2)...)
		b := createBulk(t, st, d...)
		ids := changeIDs(t, st, b.ID)
		accept(t, st, b.ID, 1, "req-start")
		_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: ids[1], Status: change.Processed,
			Outcome: string(change.Suspended), FinalState: "suspended"})
		require.NoError(t, err)

		for _, tc := range []struct {
			name                       string
			after                      db.StartCursor
			maxBatch, limit, unfinBelw int
			want                       []int64
		}{
			{"from the start, batches 1 and 2", db.StartCursor{}, 2, 100, 0, ids[:5]},
			{"a page", db.StartCursor{}, 3, 2, 0, ids[:2]},
			{"after the cursor", db.StartCursor{BatchNo: 1, Seq: 2}, 3, 100, 0, ids[2:]},
			{"after a whole batch", db.StartCursor{BatchNo: 1, Seq: 3}, 2, 100, 0, ids[3:5]},
			{"finished changes of batch 1 skipped", db.StartCursor{}, 3, 100, 2, []int64{ids[0], ids[2], ids[3], ids[4], ids[5], ids[6]}},
		} {
			got, err := st.ListDevicesToStart(ctx, b.ID, tc.after, tc.maxBatch, tc.limit, tc.unfinBelw)
			require.NoError(t, err, tc.name)
			gotIDs := make([]int64, len(got))
			for i, g := range got {
				gotIDs[i] = g.ID
			}
			require.Equal(t, tc.want, gotIDs, tc.name)
		}
		first, err := st.ListDevicesToStart(ctx, b.ID, db.StartCursor{}, 1, 1, 0)
		require.NoError(t, err)
		require.Equal(t, db.DeviceToStart{ID: ids[0], Seq: 1, BatchNo: 1, ICCID: d[0].ICCID, Operation: change.Suspend},
			first[0])

		for batch, want := range map[int]int{1: 3, 2: 2, 3: 2, 4: 0} {
			n, err := st.CountBatchDevices(ctx, b.ID, batch)
			require.NoError(t, err)
			require.Equal(t, want, n, "batch %d", batch)
		}
	})

	// A shard started again after a cancellation reads its part: the
	// device changes cancelled before they were sent are neither unfinished
	// nor to start (their device workflow would find nothing to do and be
	// counted an error).
	t.Run("cancelled changes are final for a recovering shard", func(t *testing.T) {
		d := append(devs(change.Suspend, 1, 2), devs(change.Suspend, 2, 2)...)
		b := createBulk(t, st, d...)
		ids := changeIDs(t, st, b.ID)
		accept(t, st, b.ID, 1, "req-cancelled-shard")
		_, err := st.CancelUnsent(ctx, b.ID, "cancelled by alice")
		require.NoError(t, err)

		rc, err := st.RecoveryStateOf(ctx, b.ID, 1, 2)
		require.NoError(t, err)
		require.Equal(t, 3, rc.NextBatch, "batch 2 was cancelled: nothing left to send")
		require.Equal(t, 2, rc.Unfinished, "batch 1's two sent changes")
		require.Equal(t, 2, rc.Sent)
		got, err := st.ListDevicesToStart(ctx, b.ID, db.StartCursor{BatchNo: 1, Seq: -1}, 2, 100, 3)
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, []int64{ids[0], ids[1]}, []int64{got[0].ID, got[1].ID})
	})

	t.Run("owed Rev.io steps are paged in id order", func(t *testing.T) {
		b, ids := newBatch(t, st, change.Activate, 5)
		for i, s := range []change.BillingStatus{change.BillingPending, change.BillingCreated, change.BillingError,
			change.BillingNone, change.BillingPending} {
			require.NoError(t, st.SetBillingStatus(ctx, ids[i], s, "", ""))
		}
		page, err := st.OwedBillings(ctx, b.ID, 0, 2)
		require.NoError(t, err)
		require.Equal(t, []db.OwedBilling{
			{ID: ids[0], ICCID: getChange(t, st, ids[0]).ICCID, Operation: change.Activate, Status: change.BillingPending},
			{ID: ids[2], ICCID: getChange(t, st, ids[2]).ICCID, Operation: change.Activate, Status: change.BillingError},
		}, page)
		page, err = st.OwedBillings(ctx, b.ID, ids[2], 2)
		require.NoError(t, err)
		require.Len(t, page, 1)
		require.Equal(t, ids[4], page[0].ID)
	})

	t.Run("device change states come with their callbacks in the order received", func(t *testing.T) {
		b, ids := newBatch(t, st, change.Suspend, 3)
		accept(t, st, b.ID, 1, "req-states")
		storeCB := func(requestID string, id int64) int64 {
			cb, _, err := st.StoreCallback(ctx, db.NewCallback{RequestID: requestID, ICCID: getChange(t, st, id).ICCID,
				Status: "Success", Payload: []byte(`{}`)})
			require.NoError(t, err)
			return cb.ID
		}
		storeCB("req-states", ids[0])
		storeCB("req-states", ids[0]) // a copy
		storeCB("req-states", ids[1])
		// A callback of another request, received before: matched here by
		// hand, to see the order.
		earlier := storeCB("req-earlier", ids[0])
		exec(t, st, `UPDATE callbacks SET device_change_id = $2, received_at = received_at - interval '1 minute'
			WHERE id = $1`, earlier, ids[0])
		changes, callbacks, err := st.DeviceChangeStates(ctx, []int64{ids[0], ids[1], ids[2], 1 << 40})
		require.NoError(t, err)
		require.Len(t, changes, 3, "unknown ids are absent")
		require.Equal(t, change.Sent, changes[ids[2]].Status)
		require.Len(t, callbacks[ids[0]], 2, "a copy of a callback is not another")
		require.Equal(t, earlier, callbacks[ids[0]][0].ID, "oldest first")
		require.Equal(t, 2, callbacks[ids[0]][1].Copies)
		require.Equal(t, b.ID, callbacks[ids[0]][1].BulkChangeID)
		require.Len(t, callbacks[ids[1]], 1)
		require.Empty(t, callbacks[ids[2]])
	})
}
