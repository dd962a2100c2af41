package db_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

func TestRevioRecords(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("the first service stored for a device change wins", func(t *testing.T) {
		_, id := newChange(t, st, change.Activate)
		_, err := st.RevioServiceOf(ctx, id)
		require.ErrorIs(t, err, db.ErrNotFound)

		first := db.RevioService{DeviceChangeID: id, ICCID: getChange(t, st, id).ICCID, Number: "5551230000",
			CustomerID: 7, ServiceID: 100, FoundBy: "created"}
		got, err := st.SaveRevioService(ctx, first)
		require.NoError(t, err)
		require.Equal(t, first, *got)
		second := first
		second.ServiceID, second.FoundBy = 200, "search"
		got, err = st.SaveRevioService(ctx, second)
		require.NoError(t, err)
		require.Equal(t, first, *got, "the stored service is returned, not the new one")
	})

	t.Run("the first product stored at an index wins; products in index order", func(t *testing.T) {
		_, id := newChange(t, st, change.Activate)
		for _, p := range []db.RevioProduct{
			{DeviceChangeID: id, Idx: 1, ProductID: 11, Rate: "2.50", ServiceProductID: 501, FoundBy: "created"},
			{DeviceChangeID: id, Idx: 0, ProductID: 10, Rate: "9.99", ServiceProductID: 500, FoundBy: "created"},
			{DeviceChangeID: id, Idx: 1, ProductID: 11, Rate: "2.50", ServiceProductID: 999, FoundBy: "search"},
		} {
			require.NoError(t, st.SaveRevioProduct(ctx, p))
		}
		products, err := st.RevioProducts(ctx, id)
		require.NoError(t, err)
		require.Equal(t, []db.RevioProduct{
			{DeviceChangeID: id, Idx: 0, ProductID: 10, Rate: "9.99", ServiceProductID: 500, FoundBy: "created"},
			{DeviceChangeID: id, Idx: 1, ProductID: 11, Rate: "2.50", ServiceProductID: 501, FoundBy: "created"},
		}, products)
	})

	t.Run("the active service of a device is its newest not disconnected", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		var ids []int64
		for i := range 2 {
			b := createBulk(t, st, dev(iccid, change.Activate, 1))
			id := changeIDs(t, st, b.ID)[0]
			ids = append(ids, id)
			_, err := st.SaveRevioService(ctx, db.RevioService{DeviceChangeID: id, ICCID: iccid, Number: "555",
				CustomerID: 1, ServiceID: int64(100 + i), FoundBy: "created"})
			require.NoError(t, err)
			require.NoError(t, st.SaveRevioProduct(ctx, db.RevioProduct{DeviceChangeID: id, Idx: 0, ProductID: 1,
				Rate: "1", ServiceProductID: int64(600 + i), FoundBy: "created"}))
		}
		exec(t, st, `UPDATE revio_services SET created_at = now() - interval '1 day' WHERE device_change_id = $1`, ids[0])

		active, err := st.ActiveRevioServiceByICCID(ctx, "default", iccid)
		require.NoError(t, err)
		require.Equal(t, int64(101), active.ServiceID)

		require.NoError(t, st.MarkRevioDisconnected(ctx, ids[1]))
		active, err = st.ActiveRevioServiceByICCID(ctx, "default", iccid)
		require.NoError(t, err)
		require.Equal(t, int64(100), active.ServiceID)

		var at time.Time
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT disconnected_at FROM revio_service_products
			WHERE device_change_id = $1`, ids[1]).Scan(&at))
		require.NoError(t, st.MarkRevioDisconnected(ctx, ids[1]))
		var again time.Time
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT disconnected_at FROM revio_service_products
			WHERE device_change_id = $1`, ids[1]).Scan(&again))
		require.True(t, at.Equal(again), "disconnecting again keeps the first time")

		require.NoError(t, st.MarkRevioDisconnected(ctx, ids[0]))
		_, err = st.ActiveRevioServiceByICCID(ctx, "default", iccid)
		require.ErrorIs(t, err, db.ErrNotFound)
	})

	t.Run("another tenant's service of the line is not this tenant's to disconnect", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		b := createBulkWith(t, st, db.NewBulkChange{Tenant: "acme"}, dev(iccid, change.Activate, 1))
		id := changeIDs(t, st, b.ID)[0]
		_, err := st.SaveRevioService(ctx, db.RevioService{DeviceChangeID: id, ICCID: iccid, Number: "555",
			CustomerID: 1, ServiceID: 700, FoundBy: "created"})
		require.NoError(t, err)
		_, err = st.ActiveRevioServiceByICCID(ctx, "beta", iccid)
		require.ErrorIs(t, err, db.ErrNotFound, "beta's deactivation finds nothing of acme's")
		active, err := st.ActiveRevioServiceByICCID(ctx, "acme", iccid)
		require.NoError(t, err)
		require.Equal(t, int64(700), active.ServiceID)
	})

	t.Run("LockBillingStep", func(t *testing.T) { testLockBillingStep(t, st) })
}

func testLockBillingStep(t *testing.T, st *db.Store) {
	ctx := testCtx(t)
	activation := func(t *testing.T) int64 {
		_, id := newChange(t, st, change.Activate)
		return id
	}
	leaseLeft := func(t *testing.T, id int64) time.Duration {
		var secs float64
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT extract(epoch FROM billing_lease_until - clock_timestamp())
			FROM device_changes WHERE id = $1`, id).Scan(&secs))
		return time.Duration(secs * float64(time.Second))
	}

	t.Run("one step at a time; released, the next may run", func(t *testing.T) {
		id := activation(t)
		release, err := st.LockBillingStep(ctx, id)
		require.NoError(t, err)
		_, err = st.LockBillingStep(ctx, id)
		require.ErrorIs(t, err, db.ErrBillingBusy)

		other, err := st.LockBillingStep(ctx, activation(t))
		require.NoError(t, err, "another device change's step is not held up")
		other()

		release()
		release2, err := st.LockBillingStep(ctx, id)
		require.NoError(t, err)
		release2()
	})

	t.Run("overlapping steps: exactly one runs", func(t *testing.T) {
		id := activation(t)
		// The winner holds the step until every call has tried, as a worker
		// holds it while its step runs.
		var release func()
		dbtest.RequireOneSucceeds(t, 8, db.ErrBillingBusy, func(int) error {
			r, err := st.LockBillingStep(ctx, id)
			if err == nil {
				release = r
			}
			return err
		})
		release()
	})

	t.Run("the lease lasts to the step's deadline and a margin, or a default", func(t *testing.T) {
		id := activation(t)
		release, err := st.LockBillingStep(context.Background(), id)
		require.NoError(t, err)
		left := leaseLeft(t, id)
		require.Greater(t, left, 14*time.Minute)
		require.LessOrEqual(t, left, 15*time.Minute)
		release()

		deadline, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		release, err = st.LockBillingStep(deadline, id)
		require.NoError(t, err)
		defer release()
		left = leaseLeft(t, id)
		require.Greater(t, left, 5*time.Minute)
		require.LessOrEqual(t, left, 5*time.Minute+30*time.Second)
	})

	t.Run("an expired lease is taken over, and its holder's release leaves the new one", func(t *testing.T) {
		id := activation(t)
		releaseDead, err := st.LockBillingStep(ctx, id)
		require.NoError(t, err)
		// The holder's worker died: its lease runs out.
		exec(t, st, `UPDATE device_changes SET billing_lease_until = clock_timestamp() - interval '1 second' WHERE id = $1`, id)
		releaseNew, err := st.LockBillingStep(ctx, id)
		require.NoError(t, err)
		defer releaseNew()

		releaseDead()
		_, err = st.LockBillingStep(ctx, id)
		require.ErrorIs(t, err, db.ErrBillingBusy, "a stale holder's release must not free the new lease")
	})

	t.Run("released even when the step's context has ended", func(t *testing.T) {
		id := activation(t)
		stepCtx, cancel := context.WithCancel(ctx)
		release, err := st.LockBillingStep(stepCtx, id)
		require.NoError(t, err)
		cancel()
		release()
		release2, err := st.LockBillingStep(ctx, id)
		require.NoError(t, err)
		release2()
	})

	t.Run("an unknown device change is not busy, but not found", func(t *testing.T) {
		_, err := st.LockBillingStep(ctx, 1<<40)
		require.ErrorIs(t, err, db.ErrNotFound)
		require.False(t, errors.Is(err, db.ErrBillingBusy))
	})
}
