package db_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

func TestClaimBatch(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("the first call claims the batch's devices; later calls return the request as it stands", func(t *testing.T) {
		d := devs(change.Suspend, 1, 3)
		b := createBulk(t, st, append(d, devs(change.Suspend, 2, 1)...)...)
		ids := changeIDs(t, st, b.ID)

		req, claimed, fresh, err := st.ClaimBatch(ctx, b.ID, 1, db.ClaimLimits{})
		require.NoError(t, err)
		require.True(t, fresh)
		require.Equal(t, db.BatchKey(1), req.Key)
		require.Equal(t, db.RequestSending, req.State)
		require.Equal(t, 1, req.Attempts)
		require.Equal(t, 3, req.Devices)
		require.EqualValues(t, "suspend", req.Operation)
		require.Equal(t, account, req.AccountName)
		require.Equal(t, b.ID, req.BulkChangeID)
		require.Equal(t, []int64{ids[0], ids[1], ids[2]}, claimedIDs(claimed), "in file order")
		require.Equal(t, d[0].ICCID, claimed[0].ICCID)
		require.Equal(t, change.Suspend, claimed[0].Operation)
		require.Nil(t, claimed[0].DeleteAfterDeactivation)

		again, claimedAgain, fresh, err := st.ClaimBatch(ctx, b.ID, 1, db.ClaimLimits{})
		require.NoError(t, err)
		require.False(t, fresh)
		require.Equal(t, req.PK, again.PK)
		require.Equal(t, 1, again.Attempts, "returning the request is not another attempt")
		require.Equal(t, claimedIDs(claimed), claimedIDs(claimedAgain))
		require.Equal(t, change.Pending, getChange(t, st, ids[3]).Status, "another batch is left alone")

		require.NoError(t, st.MarkRequestAccepted(ctx, again, "req-claim", nil))
		done, left, fresh, err := st.ClaimBatch(ctx, b.ID, 1, db.ClaimLimits{})
		require.NoError(t, err)
		require.False(t, fresh)
		require.Equal(t, db.RequestAccepted, done.State)
		require.Equal(t, "req-claim", done.RequestID)
		require.Empty(t, left, "an accepted request's devices are no longer being submitted")
	})

	t.Run("a batch that does not exist is an error", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		_, _, _, err := st.ClaimBatch(ctx, b.ID, 2, db.ClaimLimits{})
		require.ErrorContains(t, err, "has no batch 2")
	})

	t.Run("a device another tenant's bulk change has in flight is refused without naming it", func(t *testing.T) {
		busy := dbtest.NewICCID()
		first := createBulkWith(t, st, db.NewBulkChange{Tenant: "acme"}, dev(busy, change.Suspend, 1))
		claim(t, st, first.ID, 1)
		second := createBulkWith(t, st, db.NewBulkChange{Tenant: "beta"}, dev(busy, change.Restore, 1))
		id := changeIDs(t, st, second.ID)[0]
		_, _, _, err := st.ClaimBatch(ctx, second.ID, 1, db.ClaimLimits{})
		require.NoError(t, err)
		refused := getChange(t, st, id)
		require.Equal(t, change.DeviceBusy, refused.ErrorCode)
		require.Contains(t, refused.ErrorMessage, "another change of this device is in flight (another tenant's)")
		require.NotContains(t, refused.ErrorMessage, first.ID)
		require.NotContains(t, refused.ErrorMessage, "suspend")
	})

	t.Run("a device another bulk change has in flight is refused DEVICE_BUSY", func(t *testing.T) {
		busy := dbtest.NewICCID()
		first := createBulk(t, st, dev(busy, change.Suspend, 1))
		claim(t, st, first.ID, 1)

		free := dbtest.NewICCID()
		second := createBulk(t, st, dev(busy, change.Restore, 1), dev(free, change.Restore, 1))
		ids := changeIDs(t, st, second.ID)
		req, claimed, fresh, err := st.ClaimBatch(ctx, second.ID, 1, db.ClaimLimits{})
		require.NoError(t, err)
		require.True(t, fresh)
		require.Equal(t, 1, req.Devices)
		require.Equal(t, []int64{ids[1]}, claimedIDs(claimed))
		refused := getChange(t, st, ids[0])
		require.Equal(t, change.Failed, refused.Status)
		require.Equal(t, change.DeviceBusy, refused.ErrorCode)
		require.Contains(t, refused.ErrorMessage, first.ID)
		require.Contains(t, refused.ErrorMessage, "suspend")
		require.NotNil(t, refused.CompletedAt)

		// A bulk change with nothing left to send has its request ended at
		// once.
		third := createBulk(t, st, dev(busy, change.Deactivate, 1))
		req, claimed, fresh, err = st.ClaimBatch(ctx, third.ID, 1, db.ClaimLimits{})
		require.NoError(t, err)
		require.True(t, fresh)
		require.Empty(t, claimed)
		require.Equal(t, db.RequestRejected, req.State)
		require.Zero(t, req.Devices)
		out, err := st.BatchRequests(ctx, third.ID, 1)
		require.NoError(t, err)
		require.Equal(t, "NOTHING_TO_SEND", out.Root.ErrorCode)
		require.Zero(t, out.Root.Attempts, "nothing was sent")
	})

	t.Run("a device is claimed again once its earlier change ended", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		first := createBulk(t, st, dev(iccid, change.Suspend, 1))
		accept(t, st, first.ID, 1, "req-ended")
		_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: changeIDs(t, st, first.ID)[0],
			Status: change.Processed, Outcome: string(change.Suspended), FinalState: "suspended"})
		require.NoError(t, err)
		second := createBulk(t, st, dev(iccid, change.Restore, 1))
		_, claimed := claim(t, st, second.ID, 1)
		require.Len(t, claimed, 1)
	})

	t.Run("ClaimSingle", func(t *testing.T) { testClaimSingle(t, st) })
}

// The daily limit counts the state changes ThingSpace accepted for the line
// in the last 24 hours (inventory adds excepted) and refuses the change that
// would reach it; an inventory add is never refused.
func TestClaimBatchDailyLimit(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)
	for _, tc := range []struct {
		name       string
		limit      int
		recent     int // accepted state changes in the last 24 hours
		older      int // accepted more than 24 hours ago
		recentAdds int // inventory adds in the last 24 hours
		op         change.Operation
		refused    bool
	}{
		{name: "no limit", limit: 0, recent: 5, op: change.Suspend},
		{name: "below the limit", limit: 3, recent: 2, op: change.Suspend},
		{name: "at the limit", limit: 3, recent: 3, op: change.Suspend, refused: true},
		{name: "over the limit", limit: 2, recent: 3, op: change.Restore, refused: true},
		{name: "older changes do not count", limit: 2, recent: 1, older: 4, op: change.Suspend},
		{name: "inventory adds do not count", limit: 2, recent: 1, recentAdds: 3, op: change.Suspend},
		{name: "an inventory add is never refused", limit: 1, recent: 3, op: change.Inventory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iccid := dbtest.NewICCID()
			past := func(n int, op change.Operation, ago string) {
				for range n {
					b := createBulk(t, st, dev(iccid, op, 1))
					exec(t, st, `UPDATE device_changes SET status = 'PROCESSED', submitted_at = now() - $2::interval
						WHERE bulk_change_id = $1`, b.ID, ago)
				}
			}
			past(tc.recent, change.Suspend, "1 hour")
			past(tc.older, change.Suspend, "25 hours")
			past(tc.recentAdds, change.Inventory, "1 hour")

			other := dbtest.NewICCID()
			b := createBulk(t, st, dev(iccid, tc.op, 1), dev(other, tc.op, 1))
			ids := changeIDs(t, st, b.ID)
			_, claimed, _, err := st.ClaimBatch(ctx, b.ID, 1, db.ClaimLimits{ActionsPerLinePerDay: tc.limit})
			require.NoError(t, err)
			dc := getChange(t, st, ids[0])
			if !tc.refused {
				require.Equal(t, []int64{ids[0], ids[1]}, claimedIDs(claimed))
				require.Equal(t, change.Sending, dc.Status)
				return
			}
			require.Equal(t, []int64{ids[1]}, claimedIDs(claimed))
			require.Equal(t, change.Failed, dc.Status)
			require.Equal(t, change.DailyLimit, dc.ErrorCode)
			require.Equal(t, fmt.Sprintf("line already had %d state changes in the last 24 hours (limit %d)",
				tc.recent, tc.limit), dc.ErrorMessage)
		})
	}
}

func TestClaimBatchConcurrent(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("overlapping claims of one batch: exactly one starts the request", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 20)...)
		type claimed struct {
			pk      int64
			devices int
		}
		got := dbtest.RequireOneWinner(t, 6, func(int) (claimed, bool, error) {
			req, devices, fresh, err := st.ClaimBatch(ctx, b.ID, 1, db.ClaimLimits{})
			if err != nil {
				return claimed{}, false, err
			}
			return claimed{req.PK, len(devices)}, fresh, nil
		})
		require.Equal(t, 20, got.devices)
		require.Equal(t, 1, queryInt(t, st, `SELECT count(*) FROM thingspace_requests WHERE bulk_change_id = $1`, b.ID))
	})

	// Two bulk changes sending the same ICCID at once: the partial unique
	// index lets only one have it in flight. The loser's claim loses the
	// race, claims again and then refuses the device.
	t.Run("one ICCID claimed by two bulk changes at once: one has it in flight, the other DEVICE_BUSY", func(t *testing.T) {
		for round := range 10 {
			iccid := dbtest.NewICCID()
			bulks := []*db.BulkChange{
				createBulk(t, st, dev(iccid, change.Suspend, 1), dev(dbtest.NewICCID(), change.Suspend, 1)),
				createBulk(t, st, dev(iccid, change.Suspend, 1), dev(dbtest.NewICCID(), change.Suspend, 1)),
			}
			errs := dbtest.Race(2, func(i int) error {
				_, _, _, err := st.ClaimBatch(ctx, bulks[i].ID, 1, db.ClaimLimits{})
				return err
			})
			for _, err := range errs {
				require.NoError(t, err, "round %d", round)
			}
			statuses := map[change.Status]int{}
			for _, b := range bulks {
				dc := getChange(t, st, changeIDs(t, st, b.ID)[0])
				statuses[dc.Status]++
				if dc.Status == change.Failed {
					require.Equal(t, change.DeviceBusy, dc.ErrorCode)
				}
				require.Equal(t, change.Sending, getChange(t, st, changeIDs(t, st, b.ID)[1]).Status,
					"round %d: the other device of each bulk change is sent", round)
			}
			require.Equal(t, map[change.Status]int{change.Sending: 1, change.Failed: 1}, statuses, "round %d", round)
		}
	})
}

func testClaimSingle(t *testing.T, st *db.Store) {
	ctx := testCtx(t)

	t.Run("the first call starts the request; later calls return it", func(t *testing.T) {
		_, id := newChange(t, st, change.Activate)
		req, fresh, err := st.ClaimSingle(ctx, id, db.PPUKey(id), "ppu")
		require.NoError(t, err)
		require.True(t, fresh)
		require.Equal(t, db.PPUKey(id), req.Key)
		require.Equal(t, db.RequestSending, req.State)
		require.Equal(t, 1, req.Devices)
		require.Equal(t, 1, req.Attempts)
		require.EqualValues(t, "ppu", req.Operation)
		require.Equal(t, account, req.AccountName)

		again, fresh, err := st.ClaimSingle(ctx, id, db.PPUKey(id), "ppu")
		require.NoError(t, err)
		require.False(t, fresh)
		require.Equal(t, req.PK, again.PK)
		require.Equal(t, 1, again.Attempts)
		require.Equal(t, change.Pending, getChange(t, st, id).Status, "the device change itself is not claimed")
	})

	t.Run("overlapping calls: exactly one starts the request", func(t *testing.T) {
		_, id := newChange(t, st, change.Activate)
		dbtest.RequireOneWinner(t, 6, func(int) (int64, bool, error) {
			req, fresh, err := st.ClaimSingle(ctx, id, db.PPUKey(id), "ppu")
			if err != nil {
				return 0, false, err
			}
			return req.PK, fresh, nil
		})
	})

	t.Run("an unknown device change is an error", func(t *testing.T) {
		_, _, err := st.ClaimSingle(ctx, 1<<40, "ppu:x", "ppu")
		require.Error(t, err)
		require.True(t, strings.Contains(err.Error(), "device change"), err.Error())
	})
}

func claimedIDs(ds []db.ClaimedDevice) []int64 {
	return each(ds, func(d db.ClaimedDevice) int64 { return d.ID })
}
