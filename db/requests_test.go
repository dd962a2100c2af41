package db_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

func TestRequestKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key   string
		depth int
		root  string
	}{
		{db.BatchKey(7), 0, "batch:7"},
		{db.SubRequestKey(db.BatchKey(7), 0), 1, "batch:7"},
		{db.SubRequestKey(db.BatchKey(7), 1), 1, "batch:7"},
		{db.SubRequestKey(db.SubRequestKey(db.BatchKey(7), 1), 0), 2, "batch:7"},
		{db.SubRequestKey(db.SubRequestKey(db.SubRequestKey(db.BatchKey(12), 0), 1), 1), 3, "batch:12"},
	} {
		require.Equal(t, tc.depth, db.RequestDepth(tc.key), tc.key)
		require.Equal(t, tc.root, db.BatchRootKey(tc.key), tc.key)
	}
	require.Equal(t, "batch:7", db.BatchKey(7))
	require.Equal(t, "batch:7/1", db.SubRequestKey("batch:7", 1))
	require.Equal(t, "batch:7/10", db.SubRequestKey("batch:7/1", 0))
	require.Equal(t, "ppu:42", db.PPUKey(42))
}

// Every transition of a request is fenced by the state and the attempt it
// was read at: a copy read before another attempt took the request can no
// longer change it, nor its devices.
func TestRequestFencing(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("retry, claim, send: a stale copy is refused at every step", func(t *testing.T) {
		b, ids := newBatch(t, st, change.Suspend, 2)
		req, _ := claim(t, st, b.ID, 1)
		stale := *req
		require.NoError(t, st.FenceSend(ctx, req))
		require.NoError(t, st.MarkRequestRetry(ctx, req, "HTTP_503", "unavailable"))

		require.ErrorIs(t, st.FenceSend(ctx, &stale), db.ErrStaleAttempt)
		require.ErrorIs(t, st.MarkRequestRetry(ctx, &stale, "X", "x"), db.ErrStaleAttempt)
		require.ErrorIs(t, st.MarkRequestAccepted(ctx, &stale, "req-stale", nil), db.ErrStaleAttempt)
		require.ErrorIs(t, st.MarkRequestRejected(ctx, &stale, "X", "x"), db.ErrStaleAttempt)
		for _, id := range ids {
			require.Equal(t, change.Sending, getChange(t, st, id).Status, "a refused transition changes no device")
		}

		retry := *req
		retry.State = db.RequestRetry
		claimed, err := st.ClaimAttempt(ctx, &retry)
		require.NoError(t, err)
		require.True(t, claimed)
		require.Equal(t, db.RequestSending, retry.State)
		require.Equal(t, 2, retry.Attempts)

		oldRetry := *req
		oldRetry.State = db.RequestRetry
		claimed, err = st.ClaimAttempt(ctx, &oldRetry)
		require.NoError(t, err)
		require.False(t, claimed, "attempt 2 took it already")
		require.Equal(t, 1, oldRetry.Attempts, "a lost claim leaves the copy as it was")

		require.NoError(t, st.FenceSend(ctx, &retry))
		require.NoError(t, st.MarkRequestAccepted(ctx, &retry, "req-fenced", nil))
		require.ErrorIs(t, st.MarkRequestAccepted(ctx, &retry, "req-fenced", nil), db.ErrStaleAttempt,
			"an answer is recorded once")
		for _, id := range ids {
			require.Equal(t, change.Sent, getChange(t, st, id).Status)
		}
	})

	t.Run("ClaimAttempt takes only a request that may be sent again, at the attempt read", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		req, _ := claim(t, st, b.ID, 1)
		asRetry := *req
		asRetry.State = db.RequestRetry
		claimed, err := st.ClaimAttempt(ctx, &asRetry)
		require.NoError(t, err)
		require.False(t, claimed, "a request being sent (its answer unknown) is reconciled, never sent blindly")

		require.NoError(t, st.MarkRequestRetry(ctx, req, "HTTP_503", "unavailable"))
		req.State = db.RequestRetry
		stale := *req
		require.True(t, mustClaimAttempt(t, st, req))
		require.NoError(t, st.MarkRequestRetry(ctx, req, "HTTP_503", "unavailable again"))
		claimed, err = st.ClaimAttempt(ctx, &stale)
		require.NoError(t, err)
		require.False(t, claimed, "RETRY again, but after attempt 2: a copy of attempt 1 is stale")
	})

	t.Run("ClaimAttempt: overlapping attempts, exactly one takes the request", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		req, _ := claim(t, st, b.ID, 1)
		require.NoError(t, st.MarkRequestRetry(ctx, req, "HTTP_503", "unavailable"))
		req.State = db.RequestRetry
		type out struct {
			won      bool
			attempts int
			err      error
		}
		results := dbtest.Race(8, func(int) out {
			c := *req
			won, err := st.ClaimAttempt(ctx, &c)
			return out{won: won, attempts: c.Attempts, err: err}
		})
		won := 0
		for _, r := range results {
			require.NoError(t, r.err)
			if r.won {
				won++
				require.Equal(t, 2, r.attempts)
			}
		}
		require.Equal(t, 1, won)
		batch, err := st.BatchRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Equal(t, 2, batch.Root.Attempts)
		require.Equal(t, db.RequestSending, batch.Root.State)
	})

	t.Run("StartAttempt: a one-device request is sent again by exactly one attempt", func(t *testing.T) {
		_, id := newChange(t, st, change.Activate)
		req, _, err := st.ClaimSingle(ctx, id, db.PPUKey(id), "ppu")
		require.NoError(t, err)
		dbtest.RequireOneSucceeds(t, 8, db.ErrStaleAttempt, func(int) error {
			c := *req
			return st.StartAttempt(ctx, &c)
		})

		cur, _, err := st.ClaimSingle(ctx, id, db.PPUKey(id), "ppu")
		require.NoError(t, err)
		require.Equal(t, 2, cur.Attempts)
		require.NoError(t, st.MarkSingleAccepted(ctx, cur, "req-ppu"))
		require.ErrorIs(t, st.StartAttempt(ctx, cur), db.ErrStaleAttempt, "an accepted request is not sent again")
		found, err := st.RequestByRequestID(ctx, "req-ppu")
		require.NoError(t, err)
		require.Equal(t, cur.PK, found.PK)
		require.Equal(t, db.RequestAccepted, found.State)
		require.Equal(t, change.Pending, getChange(t, st, id).Status, "a one-device request leaves its change as it is")
	})

	t.Run("a refused one-device request keeps ThingSpace's code", func(t *testing.T) {
		_, id := newChange(t, st, change.Activate)
		req, _, err := st.ClaimSingle(ctx, id, db.PPUKey(id), "ppu")
		require.NoError(t, err)
		require.NoError(t, st.MarkSingleRejected(ctx, req, "REQUEST_FAILED.InvalidAddress", "bad address"))
		again, _, err := st.ClaimSingle(ctx, id, db.PPUKey(id), "ppu")
		require.NoError(t, err)
		require.Equal(t, db.RequestRejected, again.State)
		require.Equal(t, "REQUEST_FAILED.InvalidAddress", again.ErrorCode)
		require.Equal(t, "bad address", again.ErrorMessage)
		require.ErrorIs(t, st.MarkSingleAccepted(ctx, req, "late"), db.ErrStaleAttempt)
	})

	t.Run("unknown request ids are ErrNotFound", func(t *testing.T) {
		_, err := st.RequestByRequestID(ctx, "no-such-request")
		require.ErrorIs(t, err, db.ErrNotFound)
	})
}

func TestRequestAnswers(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("accepted: devices submitted with the request id; known outcomes kept", func(t *testing.T) {
		b, ids := newBatch(t, st, change.Inventory, 2)
		req, _ := claim(t, st, b.ID, 1)
		sync := db.SyncResult{Success: true, State: "preactive"}
		require.NoError(t, st.MarkRequestAccepted(ctx, req, "req-acc", map[int64]db.SyncResult{ids[0]: sync}))
		for i, id := range ids {
			dc := getChange(t, st, id)
			require.Equal(t, change.Sent, dc.Status)
			require.Equal(t, "req-acc", dc.RequestID)
			require.NotNil(t, dc.SentAt)
			if i == 0 {
				require.Equal(t, &sync, dc.SyncResult)
			} else {
				require.Nil(t, dc.SyncResult)
			}
		}
		in, err := st.InFlightChange(ctx, getChange(t, st, ids[0]).ICCID)
		require.NoError(t, err)
		require.Equal(t, ids[0], in.ID)
	})

	t.Run("rejected: devices end in error with ThingSpace's code", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 2)...)
		req, _ := claim(t, st, b.ID, 1)
		require.NoError(t, st.MarkRequestRejected(ctx, req, "REQUEST_FAILED.AccountNotFound", "no account"))
		for _, id := range changeIDs(t, st, b.ID) {
			dc := getChange(t, st, id)
			require.Equal(t, change.Failed, dc.Status)
			require.Equal(t, change.Code("REQUEST_FAILED.AccountNotFound"), dc.ErrorCode)
			require.Equal(t, "no account", dc.ErrorMessage)
			_, err := st.InFlightChange(ctx, dc.ICCID)
			require.ErrorIs(t, err, db.ErrNotFound)
		}
		out, err := st.BatchRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Equal(t, db.RequestRejected, out.Root.State)
		require.Equal(t, "REQUEST_FAILED.AccountNotFound", out.Root.ErrorCode)
	})

	t.Run("refused per device: each keeps its outcome and stays in flight", func(t *testing.T) {
		b, id := newChange(t, st, change.Activate)
		req, _ := claim(t, st, b.ID, 1)
		res := db.SyncResult{FaultCode: change.FaultAlreadyActive, FaultMessage: "already active"}
		require.NoError(t, st.MarkDeviceRefusals(ctx, req, string(change.FaultAlreadyActive), "already active",
			map[int64]db.SyncResult{id: res}))
		dc := getChange(t, st, id)
		require.Equal(t, change.Sent, dc.Status)
		require.Equal(t, &res, dc.SyncResult)
		require.Empty(t, dc.RequestID)
		out, err := st.BatchRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Equal(t, db.RequestRejected, out.Root.State)
	})

	t.Run("deleteAfterDeactivation is recorded for the changes being sent only", func(t *testing.T) {
		b := createBulk(t, st, append(devs(change.Deactivate, 1, 2), devs(change.Deactivate, 2, 1)...)...)
		ids := changeIDs(t, st, b.ID)
		req, _ := claim(t, st, b.ID, 1)
		require.NoError(t, st.SetDeleteAfterDeactivation(ctx, ids, true))
		again, err := st.RequestDevices(ctx, req.PK)
		require.NoError(t, err)
		require.Len(t, again, 2)
		for _, d := range again {
			require.NotNil(t, d.DeleteAfterDeactivation)
			require.True(t, *d.DeleteAfterDeactivation)
		}
		require.Zero(t, queryInt(t, st, `SELECT count(*) FROM device_changes WHERE id = $1
			AND delete_after_deactivation IS NOT NULL`, ids[2]), "a change not being sent is left alone")
	})

	t.Run("FailUnsent", func(t *testing.T) { testFailUnsent(t, st) })
	t.Run("FailUnsent of a shard's batches", func(t *testing.T) { testFailUnsentOfAShard(t, st) })
	t.Run("DeviceChangesWithCallbacks", func(t *testing.T) { testDeviceChangesWithCallbacks(t, st) })
	t.Run("BulkRequestStats", func(t *testing.T) { testBulkRequestStats(t, st) })
}

// A request whose answer was lost is reconciled: the devices ThingSpace
// shows changed are submitted, the others are sent again, but only once the
// settle time since the last send has passed on the database's clock.
func TestApplyReconciliation(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("untouched devices wait for the settle time; nothing is recorded before", func(t *testing.T) {
		b, ids := newBatch(t, st, change.Suspend, 2)
		req, _ := claim(t, st, b.ID, 1)
		found := []db.Reconciled{{DeviceChangeID: ids[0], Applied: true}, {DeviceChangeID: ids[1]}}
		remaining, wait, err := st.ApplyReconciliation(ctx, req, found, time.Hour)
		require.NoError(t, err)
		require.Zero(t, remaining)
		require.Greater(t, wait, 59*time.Minute)
		require.LessOrEqual(t, wait, time.Hour)
		require.Equal(t, db.RequestSending, req.State)
		for _, id := range ids {
			require.Equal(t, change.Sending, getChange(t, st, id).Status)
		}

		remaining, wait, err = st.ApplyReconciliation(ctx, req, found, 0)
		require.NoError(t, err)
		require.Zero(t, wait)
		require.Equal(t, 1, remaining)
		require.Equal(t, db.RequestRetry, req.State)
		require.Equal(t, 1, req.Attempts, "reconciling is not an attempt")
		applied := getChange(t, st, ids[0])
		require.Equal(t, change.Sent, applied.Status)
		require.Equal(t, change.Sending, getChange(t, st, ids[1]).Status)

		var sentAt time.Time
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT sent_at FROM thingspace_requests WHERE id = $1`, req.PK).Scan(&sentAt))
		require.True(t, sentAt.Equal(*applied.SentAt), "submitted when the lost attempt was sent")
		batch, err := st.BatchRequests(ctx, b.ID, 1)
		require.NoError(t, err)
		require.Equal(t, "RECONCILED", batch.Root.ErrorCode)

		left, err := st.RequestDevices(ctx, req.PK)
		require.NoError(t, err)
		require.Equal(t, []int64{ids[1]}, claimedIDs(left), "only the untouched device is sent again")
		claimed, err := st.ClaimAttempt(ctx, req)
		require.NoError(t, err)
		require.True(t, claimed)
	})

	t.Run("every device applied: ACCEPTED at once, outcomes kept", func(t *testing.T) {
		b, ids := newBatch(t, st, change.Suspend, 2)
		req, _ := claim(t, st, b.ID, 1)
		res := db.SyncResult{Success: true, State: "suspended"}
		remaining, wait, err := st.ApplyReconciliation(ctx, req, []db.Reconciled{
			{DeviceChangeID: ids[0], Applied: true, Result: &res}, {DeviceChangeID: ids[1], Applied: true},
		}, time.Hour)
		require.NoError(t, err)
		require.Zero(t, wait, "with nothing to send again there is nothing to wait for")
		require.Zero(t, remaining)
		require.Equal(t, db.RequestAccepted, req.State)
		require.Equal(t, &res, getChange(t, st, ids[0]).SyncResult)
		require.Equal(t, change.Sent, getChange(t, st, ids[1]).Status)
	})

	t.Run("a request another attempt took is stale", func(t *testing.T) {
		b, ids := newBatch(t, st, change.Suspend, 1)
		req, _ := claim(t, st, b.ID, 1)
		stale := *req
		require.NoError(t, st.MarkRequestRetry(ctx, req, "HTTP_503", "unavailable"))
		_, _, err := st.ApplyReconciliation(ctx, &stale, []db.Reconciled{{DeviceChangeID: ids[0], Applied: true}}, 0)
		require.ErrorIs(t, err, db.ErrStaleAttempt)
		require.Equal(t, change.Sending, getChange(t, st, ids[0]).Status)
	})
}

func testFailUnsent(t *testing.T, st *db.Store) {
	ctx := testCtx(t)

	d := append(devs(change.Suspend, 1, 1), devs(change.Suspend, 2, 2)...)
	d = append(d, devs(change.Suspend, 3, 1)...)
	d = append(d, devs(change.Suspend, 4, 1)...)
	b := createBulk(t, st, d...)
	ids := changeIDs(t, st, b.ID)
	accept(t, st, b.ID, 1, "req-unsent")
	// Batch 2 was split and its halves not sent yet; batch 3's request is
	// being sent; batch 4 is pending.
	req2, _ := claim(t, st, b.ID, 2)
	subs, err := st.SplitRequest(ctx, req2, "REQUEST_FAILED.Unknown", "split")
	require.NoError(t, err)
	claim(t, st, b.ID, 3)

	n, err := st.FailUnsent(ctx, b.ID, 2, 0, change.SendFailed, "batch 2 could not be sent")
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Equal(t, change.Sent, getChange(t, st, ids[0]).Status, "an accepted batch is left alone")
	for _, id := range ids[1:] {
		dc := getChange(t, st, id)
		require.Equal(t, change.Failed, dc.Status)
		require.Equal(t, change.SendFailed, dc.ErrorCode)
		require.Equal(t, 1, resultEntries(t, st, id))
	}
	for _, sub := range subs {
		require.Equal(t, db.RequestRejected, requestState(t, st, sub.PK))
	}
	open, err := st.OpenSubRequests(ctx, b.ID, 2)
	require.NoError(t, err)
	require.Empty(t, open)
	batch3, err := st.BatchRequests(ctx, b.ID, 3)
	require.NoError(t, err)
	require.Equal(t, db.RequestRejected, batch3.Root.State)
	require.Equal(t, string(change.SendFailed), batch3.Root.ErrorCode)

	n, err = st.FailUnsent(ctx, b.ID, 2, 0, change.SendFailed, "again")
	require.NoError(t, err)
	require.Zero(t, n, "nothing is left unsent")
	require.Equal(t, 1, resultEntries(t, st, ids[1]))
}

// A shard that stops sending ends its own batches only: another shard's
// request being sent stays its own (its devices are not failed, nor is the
// request called rejected under it).
func testFailUnsentOfAShard(t *testing.T, st *db.Store) {
	ctx := testCtx(t)
	d := append(devs(change.Suspend, 1, 2), devs(change.Suspend, 2, 2)...)
	d = append(d, devs(change.Suspend, 12, 1)...)
	b := createBulk(t, st, d...)
	ids := changeIDs(t, st, b.ID)
	claim(t, st, b.ID, 1)
	req2, _ := claim(t, st, b.ID, 2)
	req12, _ := claim(t, st, b.ID, 12)

	n, err := st.FailUnsent(ctx, b.ID, 1, 1, change.AuthFailed, "refused")
	require.NoError(t, err)
	require.Equal(t, 2, n, "the shard's batch 1")
	require.Equal(t, change.Failed, getChange(t, st, ids[0]).Status)
	require.Equal(t, change.Sending, getChange(t, st, ids[2]).Status, "batch 2 is another shard's")
	require.Equal(t, db.RequestSending, requestState(t, st, req2.PK), "another shard's request is its own")
	require.Equal(t, db.RequestSending, requestState(t, st, req12.PK), "batch 12 is not batch 1")
}

func requestState(t *testing.T, st *db.Store, pk int64) string {
	t.Helper()
	var s string
	require.NoError(t, st.Pool.QueryRow(testCtx(t), `SELECT state FROM thingspace_requests WHERE id = $1`, pk).Scan(&s))
	return s
}

// A stored callback proves that a request whose answer was lost reached
// ThingSpace only when it is that request's: by its requestId, or received
// after the request was made with a requestId no other request of ours
// holds.
func testDeviceChangesWithCallbacks(t *testing.T, st *db.Store) {
	ctx := testCtx(t)

	older := createBulk(t, st, devs(change.Suspend, 1, 1)...)
	accept(t, st, older.ID, 1, "req-older")

	b, ids := newBatch(t, st, change.Suspend, 5)
	req, _ := claim(t, st, b.ID, 1)
	store := func(requestID string, id int64) int64 {
		cb, _, err := st.StoreCallback(ctx, db.NewCallback{RequestID: requestID, ICCID: getChange(t, st, id).ICCID,
			Status: "Success", Payload: []byte(`{}`)})
		require.NoError(t, err)
		// Matched to the change here, whatever storing found, to test this
		// query's own rule.
		exec(t, st, `UPDATE callbacks SET device_change_id = $2 WHERE id = $1`, cb.ID, id)
		return cb.ID
	}
	store("req-lost", ids[0])
	store("req-older", ids[1]) // another request's
	early := store("req-lost-too", ids[2])
	exec(t, st, `UPDATE callbacks SET received_at = (SELECT created_at FROM thingspace_requests WHERE id = $2)
		- interval '1 minute' WHERE id = $1`, early, req.PK)
	// ids[3] has no callback.

	got, err := st.DeviceChangesWithCallbacks(ctx, req.PK, ids[:4])
	require.NoError(t, err)
	require.Equal(t, map[int64]bool{ids[0]: true}, got)

	// Once the request's own id is known, its callbacks count whenever
	// they came.
	require.NoError(t, st.MarkRequestAccepted(ctx, req, "req-own", nil))
	own := store("req-own", ids[4])
	exec(t, st, `UPDATE callbacks SET received_at = received_at - interval '1 day' WHERE id = $1`, own)
	got, err = st.DeviceChangesWithCallbacks(ctx, req.PK, ids)
	require.NoError(t, err)
	require.Equal(t, map[int64]bool{ids[0]: true, ids[4]: true}, got)

	got, err = st.DeviceChangesWithCallbacks(ctx, req.PK, ids[1:4])
	require.NoError(t, err)
	require.Empty(t, got, "only the ids asked about")
}

func testBulkRequestStats(t *testing.T, st *db.Store) {
	ctx := testCtx(t)
	b := createBulk(t, st, append(devs(change.Suspend, 1, 4), devs(change.Suspend, 2, 1)...)...)

	none, err := st.BulkRequestStats(ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, db.RequestStats{}, none)

	req, _ := claim(t, st, b.ID, 1)
	subs, err := st.SplitRequest(ctx, req, "REQUEST_FAILED.Unknown", "split")
	require.NoError(t, err)
	claimed, err := st.ClaimAttempt(ctx, subs[0])
	require.NoError(t, err)
	require.True(t, claimed)
	require.NoError(t, st.MarkRequestAccepted(ctx, subs[0], "req-half", nil))
	accept(t, st, b.ID, 2, "req-two")

	stats, err := st.BulkRequestStats(ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, 4, stats.Requests, "batch 1, its two halves, batch 2")
	require.Equal(t, 3, stats.Attempts, "batch 1, one half, batch 2")
	require.Equal(t, 5, stats.Devices, "a split request's devices count once")
	require.NotNil(t, stats.First)
	require.NotNil(t, stats.Last)
	require.False(t, stats.Last.Before(*stats.First))
}
