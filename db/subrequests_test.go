package db_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

func TestSplitRequest(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("halves in file order, the first rounded up, down to single devices", func(t *testing.T) {
		b, ids := newBatch(t, st, change.Suspend, 5)
		req, _ := claim(t, st, b.ID, 1)

		subs, err := st.SplitRequest(ctx, req, "REQUEST_FAILED.Unknown", "one of them")
		require.NoError(t, err)
		require.Len(t, subs, 2)
		for i, want := range [][]int64{ids[:3], ids[3:]} {
			sub := subs[i]
			require.Equal(t, db.SubRequestKey(db.BatchKey(1), i), sub.Key)
			require.Equal(t, db.RequestRetry, sub.State, "never sent, so safe to send")
			require.Zero(t, sub.Attempts)
			require.Equal(t, len(want), sub.Devices)
			require.EqualValues(t, "suspend", sub.Operation)
			require.Equal(t, account, sub.AccountName)
			got, err := st.RequestDevices(ctx, sub.PK)
			require.NoError(t, err)
			require.Equal(t, want, claimedIDs(got))
		}
		left, err := st.RequestDevices(ctx, req.PK)
		require.NoError(t, err)
		require.Empty(t, left, "the split request keeps no device")
		root, _, fresh, err := st.ClaimBatch(ctx, b.ID, 1, db.ClaimLimits{})
		require.NoError(t, err)
		require.False(t, fresh)
		require.Equal(t, db.RequestRejected, root.State)
		require.Equal(t, "REQUEST_FAILED.Unknown", root.ErrorCode)

		// The first half is refused again and split; the second is
		// accepted.
		require.True(t, mustClaimAttempt(t, st, subs[0]))
		grand, err := st.SplitRequest(ctx, subs[0], "REQUEST_FAILED.Unknown", "still one of them")
		require.NoError(t, err)
		require.Equal(t, []string{"batch:1/00", "batch:1/01"}, []string{grand[0].Key, grand[1].Key})
		require.Equal(t, []int{2, 1}, []int{grand[0].Devices, grand[1].Devices})

		open, err := st.OpenSubRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Equal(t, []string{"batch:1/1", "batch:1/00", "batch:1/01"}, requestKeys(open), "shallowest first")

		require.True(t, mustClaimAttempt(t, st, subs[1]))
		require.NoError(t, st.MarkRequestAccepted(ctx, subs[1], "req-second-half", nil))
		require.True(t, mustClaimAttempt(t, st, grand[1]))
		_, err = st.SplitRequest(ctx, grand[1], "REQUEST_FAILED.Unknown", "this one")
		require.ErrorContains(t, err, "1 device(s) in flight, need at least 2")

		open, err = st.OpenSubRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Equal(t, []string{"batch:1/00", "batch:1/01"}, requestKeys(open))

		refused, err := st.RefusedByDepth(ctx, b.ID, db.BatchKey(1))
		require.NoError(t, err)
		require.Equal(t, map[int]int{0: 1, 1: 1}, refused)

		out, err := st.BatchRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Equal(t, req.PK, out.Root.PK)
		require.Equal(t, 4, out.SubRequests)
		require.Equal(t, 1, out.Accepted)
		require.Equal(t, 4, out.Attempts, "the root, both halves, one quarter")
	})

	t.Run("another batch's requests are not its sub-requests", func(t *testing.T) {
		d := devs(change.Suspend, 1, 2)
		for i := 2; i <= 11; i++ {
			d = append(d, devs(change.Suspend, i, 2)...)
		}
		b := createBulk(t, st, d...)
		for _, batch := range []int{1, 11} {
			req, _ := claim(t, st, b.ID, batch)
			_, err := st.SplitRequest(ctx, req, "REQUEST_FAILED.Unknown", "split")
			require.NoError(t, err)
		}
		open, err := st.OpenSubRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Equal(t, []string{"batch:1/0", "batch:1/1"}, requestKeys(open), "batch:11's are not batch:1's")
		refused, err := st.RefusedByDepth(ctx, b.ID, db.BatchKey(1))
		require.NoError(t, err)
		require.Equal(t, map[int]int{0: 1}, refused)
	})

	t.Run("a stale copy does not split; overlapping splits: exactly one wins", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 4)...)
		req, _ := claim(t, st, b.ID, 1)
		dbtest.RequireOneSucceeds(t, 4, db.ErrStaleAttempt, func(int) error {
			c := *req
			_, err := st.SplitRequest(ctx, &c, "REQUEST_FAILED.Unknown", "split")
			return err
		})
		open, err := st.OpenSubRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Len(t, open, 2)

		_, err = st.SplitRequest(ctx, req, "REQUEST_FAILED.Unknown", "again")
		require.ErrorIs(t, err, db.ErrStaleAttempt)
	})

	t.Run("a batch without a request is ErrNotFound", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		_, err := st.BatchRequests(ctx, b.ID, 1)
		require.ErrorIs(t, err, db.ErrNotFound)
	})
}

func mustClaimAttempt(t *testing.T, st *db.Store, req *db.ThingSpaceRequest) bool {
	t.Helper()
	ok, err := st.ClaimAttempt(testCtx(t), req)
	require.NoError(t, err)
	return ok
}

func requestKeys(rs []*db.ThingSpaceRequest) []string {
	return each(rs, func(r *db.ThingSpaceRequest) string { return r.Key })
}
