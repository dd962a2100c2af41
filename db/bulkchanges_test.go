package db_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

func TestCreateBulkChange(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("writes the bulk change and its devices in file order", func(t *testing.T) {
		d := devs(change.Activate, 1, 3)
		d[1].PPU = ppuJSON("Ann", "1 Main St")
		d[2].Billing = json.RawMessage(`{"customerId":7,"serviceTypeId":8,"providerId":9}`)
		d[2].IMEI = "356938035643809"
		b := createBulkWith(t, st, db.NewBulkChange{IdempotencyKey: "key-writes", SourceName: "devices.csv",
			SubmittedBy: "alice", ContentHash: "abc"}, d...)
		require.Equal(t, change.BulkPending, b.Status)
		require.Equal(t, 3, b.Total)
		require.Equal(t, 1, b.Batches)
		require.Equal(t, "key-writes", b.IdempotencyKey)
		require.Equal(t, "devices.csv", b.SourceName)
		require.Equal(t, "alice", b.SubmittedBy)
		require.Equal(t, "abc", b.ContentHash)
		require.Empty(t, b.RedriveOf)
		require.JSONEq(t, `{}`, string(b.Options), "no options are stored as {}")
		require.Nil(t, b.StartedAt)
		require.Nil(t, b.FinishedAt)

		ids := changeIDs(t, st, b.ID)
		require.Len(t, ids, 3)
		for i, id := range ids {
			dc := getChange(t, st, id)
			require.Equal(t, d[i].ICCID, dc.ICCID)
			require.Equal(t, i+1, dc.Seq)
			require.Equal(t, change.Pending, dc.Status)
			require.Equal(t, change.BillingNone, dc.BillingStatus)
			require.Equal(t, account, dc.AccountName)
			require.JSONEq(t, `{}`, string(dc.Params), "no params are stored as {}")
			require.Equal(t, i == 1, dc.HasPPU)
		}
		require.Equal(t, "356938035643809", getChange(t, st, ids[2]).IMEI)
		require.JSONEq(t, string(d[2].Billing), string(getChange(t, st, ids[2]).Billing))
		ppu, err := st.DeviceChangePPU(ctx, ids[1])
		require.NoError(t, err)
		require.JSONEq(t, string(d[1].PPU), string(ppu))
		ppu, err = st.DeviceChangePPU(ctx, ids[0])
		require.NoError(t, err)
		require.Nil(t, ppu)
	})

	t.Run("the same idempotency key returns the first bulk change and writes nothing", func(t *testing.T) {
		first := createBulkWith(t, st, db.NewBulkChange{IdempotencyKey: "key-again"}, devs(change.Suspend, 1, 2)...)
		againID := uuid.NewString()
		again, created, err := st.CreateBulkChange(ctx, db.NewBulkChange{ID: againID, AccountName: account,
			IdempotencyKey: "key-again", WorkflowID: "bulk-change/" + againID, Batches: 1,
			Devices: numbered(devs(change.Restore, 1, 5))})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, first.ID, again.ID)
		require.Equal(t, 2, again.Total)
		_, err = st.GetBulkChange(ctx, againID)
		require.ErrorIs(t, err, db.ErrNotFound)
		require.Zero(t, queryInt(t, st, `SELECT count(*) FROM device_changes WHERE bulk_change_id = $1`, againID))
		byKey, err := st.BulkChangeByKey(ctx, "default", "key-again")
		require.NoError(t, err)
		require.Equal(t, first.ID, byKey.ID)
	})

	t.Run("without a key every submission is a new bulk change", func(t *testing.T) {
		d := devs(change.Suspend, 1, 1)
		a := createBulk(t, st, d...)
		b := createBulk(t, st, d...)
		require.NotEqual(t, a.ID, b.ID)
		require.Empty(t, a.IdempotencyKey)
		require.Empty(t, b.IdempotencyKey)
	})

	t.Run("an ICCID twice in one bulk change writes nothing", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		id := uuid.NewString()
		_, _, err := st.CreateBulkChange(ctx, db.NewBulkChange{ID: id, AccountName: account, WorkflowID: "bulk-change/" + id,
			Batches: 1, Devices: []db.NewDeviceChange{
				{Seq: 1, RowNumber: 2, ICCID: iccid, Operation: change.Suspend, BatchNo: 1},
				{Seq: 2, RowNumber: 3, ICCID: iccid, Operation: change.Restore, BatchNo: 1},
			}})
		require.ErrorContains(t, err, "insert device changes")
		_, err = st.GetBulkChange(ctx, id)
		require.ErrorIs(t, err, db.ErrNotFound, "the bulk change row was rolled back with its devices")
	})

	t.Run("an operation outside the schema's list is refused", func(t *testing.T) {
		id := uuid.NewString()
		_, _, err := st.CreateBulkChange(ctx, db.NewBulkChange{ID: id, AccountName: account, WorkflowID: "bulk-change/" + id,
			Batches: 1, Devices: []db.NewDeviceChange{
				{Seq: 1, RowNumber: 2, ICCID: dbtest.NewICCID(), Operation: "reboot", BatchNo: 1},
			}})
		require.Error(t, err)
		_, err = st.GetBulkChange(ctx, id)
		require.ErrorIs(t, err, db.ErrNotFound)
	})

	t.Run("concurrent submissions with one key create exactly one bulk change", func(t *testing.T) {
		winner := dbtest.RequireOneWinner(t, 8, func(int) (string, bool, error) {
			id := uuid.NewString()
			b, created, err := st.CreateBulkChange(ctx, db.NewBulkChange{ID: id, AccountName: account,
				IdempotencyKey: "key-race", WorkflowID: "bulk-change/" + id, Batches: 1, Devices: numbered(devs(change.Suspend, 1, 3))})
			if err != nil {
				return "", false, err
			}
			return b.ID, created, nil
		})
		require.Equal(t, 1, queryInt(t, st, `SELECT count(*) FROM bulk_changes WHERE idempotency_key = 'key-race'`))
		require.Equal(t, 3, queryInt(t, st, `SELECT count(*) FROM device_changes WHERE bulk_change_id = $1`, winner))
	})

	t.Run("re-drives name their original and are listed oldest first", func(t *testing.T) {
		orig := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		r1 := createBulkWith(t, st, db.NewBulkChange{RedriveOf: orig.ID}, devs(change.Suspend, 1, 1)...)
		r2 := createBulkWith(t, st, db.NewBulkChange{RedriveOf: orig.ID}, devs(change.Suspend, 1, 1)...)
		exec(t, st, `UPDATE bulk_changes SET created_at = now() - interval '1 minute' WHERE id = $1`, r2.ID)
		require.Equal(t, orig.ID, r1.RedriveOf)
		list, err := st.Redrives(ctx, orig.ID)
		require.NoError(t, err)
		require.Equal(t, []string{r2.ID, r1.ID}, bulkIDs(list))
		none, err := st.Redrives(ctx, r1.ID)
		require.NoError(t, err)
		require.Empty(t, none)

		id := uuid.NewString()
		_, _, err = st.CreateBulkChange(ctx, db.NewBulkChange{ID: id, AccountName: account, WorkflowID: "bulk-change/" + id,
			RedriveOf: uuid.NewString(), Devices: numbered(devs(change.Suspend, 1, 1))})
		require.Error(t, err, "a re-drive of a bulk change that does not exist")
	})
}

func bulkIDs(bs []db.BulkChange) []string {
	return each(bs, func(b db.BulkChange) string { return b.ID })
}

func TestBulkChangeStatus(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("RUNNING records the start once; an ended bulk change keeps its status", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		require.NoError(t, st.SetBulkStatus(ctx, b.ID, change.BulkRunning))
		got, err := st.GetBulkChange(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, change.BulkRunning, got.Status)
		require.NotNil(t, got.StartedAt)
		started := *got.StartedAt

		require.NoError(t, st.SetBulkStatus(ctx, b.ID, change.BulkPaused))
		require.NoError(t, st.SetBulkStatus(ctx, b.ID, change.BulkRunning))
		got, err = st.GetBulkChange(ctx, b.ID)
		require.NoError(t, err)
		require.True(t, started.Equal(*got.StartedAt), "a resumed bulk change keeps its first start")

		for _, ended := range []change.BulkStatus{change.BulkFinished, change.BulkFailed, change.BulkCancelled} {
			exec(t, st, `UPDATE bulk_changes SET status = $2 WHERE id = $1`, b.ID, ended)
			require.NoError(t, st.SetBulkStatus(ctx, b.ID, change.BulkRunning))
			got, err = st.GetBulkChange(ctx, b.ID)
			require.NoError(t, err)
			require.Equal(t, ended, got.Status)
		}
	})

	t.Run("a status outside the schema's list is refused", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		require.Error(t, st.SetBulkStatus(ctx, b.ID, "DONE"))
	})

	t.Run("finishing waits for owed Rev.io steps, then counts every device change", func(t *testing.T) {
		b := createBulk(t, st, append(devs(change.Activate, 1, 3), devs(change.Activate, 2, 1)...)...)
		ids := changeIDs(t, st, b.ID)
		accept(t, st, b.ID, 1, "req-finish")
		_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: ids[0], Status: change.Processed,
			Outcome: string(change.Activated), FinalState: "active", BillingPending: true})
		require.NoError(t, err)
		_, _, err = st.Complete(ctx, db.Completion{DeviceChangeID: ids[1], Status: change.Failed,
			ErrorCode: "REQUEST_FAILED.DeviceNotFound"})
		require.NoError(t, err)
		_, _, err = st.Complete(ctx, db.Completion{DeviceChangeID: ids[2], Status: change.Processed,
			Outcome: string(change.Activated), FinalState: "active"})
		require.NoError(t, err)
		_, err = st.CancelUnsent(ctx, b.ID, "cancelled by bob")
		require.NoError(t, err)

		got, owed, err := st.FinishBulkChange(ctx, b.ID, change.BulkFinished)
		require.NoError(t, err)
		require.Equal(t, 1, owed)
		require.Equal(t, change.BulkPending, got.Status, "nothing changes while a step is owed")
		require.Nil(t, got.FinishedAt)

		require.NoError(t, st.SetBillingStatus(ctx, ids[0], change.BillingCreated, "", ""))
		got, owed, err = st.FinishBulkChange(ctx, b.ID, change.BulkFinished)
		require.NoError(t, err)
		require.Zero(t, owed)
		require.Equal(t, change.BulkFinished, got.Status)
		require.Equal(t, 2, got.Processed)
		require.Equal(t, 1, got.Errors)
		require.Equal(t, 1, got.Cancelled)
		require.NotNil(t, got.FinishedAt)
		finished := *got.FinishedAt

		again, _, err := st.FinishBulkChange(ctx, b.ID, change.BulkFinished)
		require.NoError(t, err)
		require.True(t, finished.Equal(*again.FinishedAt), "finishing again keeps the first end")
	})

	t.Run("a failed bulk change stays FAILED when finished", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		require.NoError(t, st.FailBulkChange(ctx, b.ID, change.AuthFailed, "credentials refused"))
		got, _, err := st.FinishBulkChange(ctx, b.ID, change.BulkFinished)
		require.NoError(t, err)
		require.Equal(t, change.BulkFailed, got.Status)
	})

	t.Run("failing ends the unsent device changes with one result entry each", func(t *testing.T) {
		b := createBulk(t, st, append(devs(change.Suspend, 1, 1), devs(change.Suspend, 2, 2)...)...)
		ids := changeIDs(t, st, b.ID)
		accept(t, st, b.ID, 1, "req-fail")
		require.NoError(t, st.FailBulkChange(ctx, b.ID, change.AuthFailed, "credentials refused"))
		require.NoError(t, st.FailBulkChange(ctx, b.ID, change.AuthFailed, "credentials refused"))

		got, err := st.GetBulkChange(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, change.BulkFailed, got.Status)
		require.Equal(t, "credentials refused", got.ErrorMessage)
		require.Equal(t, 2, got.Errors)
		require.Zero(t, got.Processed)
		require.NotNil(t, got.FinishedAt)

		require.Equal(t, change.Sent, getChange(t, st, ids[0]).Status, "a sent change is left to finish")
		require.Zero(t, resultEntries(t, st, ids[0]))
		for _, id := range ids[1:] {
			dc := getChange(t, st, id)
			require.Equal(t, change.Failed, dc.Status)
			require.Equal(t, change.AuthFailed, dc.ErrorCode)
			require.Equal(t, "credentials refused", dc.ErrorMessage)
			require.NotNil(t, dc.CompletedAt)
			require.Equal(t, 1, resultEntries(t, st, id), "one result entry, however often it is failed")
		}
	})

	t.Run("cancelling ends only the unsent device changes and counts them per operation", func(t *testing.T) {
		d := append(devs(change.Suspend, 1, 1), devs(change.Suspend, 2, 2)...)
		d = append(d, devs(change.Deactivate, 3, 1)...)
		b := createBulk(t, st, d...)
		ids := changeIDs(t, st, b.ID)
		accept(t, st, b.ID, 1, "req-cancel")

		counts, err := st.CancelUnsent(ctx, b.ID, "wrong customer")
		require.NoError(t, err)
		require.Equal(t, map[change.Operation]int{change.Suspend: 2, change.Deactivate: 1}, counts)
		require.Equal(t, change.Sent, getChange(t, st, ids[0]).Status)
		for _, id := range ids[1:] {
			dc := getChange(t, st, id)
			require.Equal(t, change.Cancelled, dc.Status)
			require.Equal(t, "wrong customer", dc.ErrorMessage)
			require.Equal(t, 1, resultEntries(t, st, id))
		}

		counts, err = st.CancelUnsent(ctx, b.ID, "again")
		require.NoError(t, err)
		require.Empty(t, counts, "nothing is left to cancel")
		require.Equal(t, "wrong customer", getChange(t, st, ids[1]).ErrorMessage)
	})

	t.Run("RecordOperatorAction", func(t *testing.T) { testRecordOperatorAction(t, st) })
	t.Run("BulkChangeQueries", func(t *testing.T) { testBulkChangeQueries(t, st) })
}

func testRecordOperatorAction(t *testing.T, st *db.Store) {
	ctx := testCtx(t)
	operatorEntries := func(bulkID string) int {
		return queryInt(t, st, `SELECT count(*) FROM m2m_log WHERE bulk_change_id = $1 AND service = 'operator'`, bulkID)
	}

	t.Run("one audit entry per request key, with who, why and from where", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		pause := db.OperatorAction{BulkChangeID: b.ID, Action: "pause", By: "bob", Reason: "checking", Key: "k1",
			Identity: "bob@host", Status: change.BulkPaused}
		require.NoError(t, st.RecordOperatorAction(ctx, pause))
		require.NoError(t, st.RecordOperatorAction(ctx, pause))
		require.Equal(t, 1, operatorEntries(b.ID))
		var body, msg string
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT request_body, error_message FROM m2m_log
			WHERE bulk_change_id = $1 AND service = 'operator'`, b.ID).Scan(&body, &msg))
		require.JSONEq(t, `{"by":"bob","reason":"checking","status":"PAUSED","identity":"bob@host"}`, body)
		require.Equal(t, "bob: checking", msg)
		got, err := st.GetBulkChange(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, change.BulkPaused, got.Status)

		pause.Key = "k2"
		require.NoError(t, st.RecordOperatorAction(ctx, pause))
		require.Equal(t, 2, operatorEntries(b.ID))
	})

	t.Run("an approval records the approver and keeps its first time", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Deactivate, 1, 1)...)
		approve := db.OperatorAction{BulkChangeID: b.ID, Action: "approve", By: "carol", Key: "a1",
			Status: change.BulkRunning}
		require.NoError(t, st.RecordOperatorAction(ctx, approve))
		var at time.Time
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT approved_at FROM bulk_changes WHERE id = $1`, b.ID).Scan(&at))
		require.NoError(t, st.RecordOperatorAction(ctx, approve))
		var again time.Time
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT approved_at FROM bulk_changes WHERE id = $1`, b.ID).Scan(&again))
		require.True(t, at.Equal(again))
		got, err := st.GetBulkChange(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, "carol", got.ApprovedBy)
		require.Equal(t, change.BulkRunning, got.Status)
	})

	t.Run("an ended bulk change keeps its status; the request is still audited", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		_, _, err := st.FinishBulkChange(ctx, b.ID, change.BulkCancelled)
		require.NoError(t, err)
		require.NoError(t, st.RecordOperatorAction(ctx, db.OperatorAction{BulkChangeID: b.ID, Action: "resume",
			By: "dave", Key: "r1", Status: change.BulkRunning}))
		got, err := st.GetBulkChange(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, change.BulkCancelled, got.Status)
		require.Equal(t, 1, operatorEntries(b.ID))
	})

	t.Run("no status leaves the bulk change's as it is", func(t *testing.T) {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		require.NoError(t, st.RecordOperatorAction(ctx, db.OperatorAction{BulkChangeID: b.ID, Action: "note",
			By: "erin", Key: "n1"}))
		got, err := st.GetBulkChange(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, change.BulkPending, got.Status)
	})
}

func TestCountRecovery(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)
	b := createBulk(t, st, devs(change.Suspend, 1, 1)...)

	n, err := st.CountRecovery(ctx, b.ID, "run-1")
	require.NoError(t, err)
	require.Equal(t, 1, n, "the first recovered run")
	n, err = st.CountRecovery(ctx, b.ID, "run-1")
	require.NoError(t, err)
	require.Equal(t, 1, n, "a retry of the same run counts once")
	n, err = st.CountRecovery(ctx, b.ID, "run-2")
	require.NoError(t, err)
	require.Equal(t, 2, n, "a second recovery counts above the first")

	_, err = st.CountRecovery(ctx, uuid.NewString(), "run-1")
	require.ErrorIs(t, err, db.ErrNotFound)
}

func TestLineUsage(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	idle, queued, sent, old := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()
	inventory, unstarted, startedLate, twice := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()

	bQueued := createBulk(t, st, dev(queued, change.Suspend, 1), dev(twice, change.Suspend, 1))
	bSent := createBulk(t, st, dev(sent, change.Suspend, 1), dev(twice, change.Restore, 2))
	accept(t, st, bSent.ID, 1, "req-usage")
	bOld := createBulk(t, st, dev(old, change.Suspend, 1))
	oldIDs := changeIDs(t, st, bOld.ID)
	exec(t, st, `UPDATE device_changes SET status = 'PROCESSED', submitted_at = now() - interval '25 hours' WHERE id = $1`,
		oldIDs[0])
	bInventory := createBulk(t, st, dev(inventory, change.Inventory, 1))
	// A bulk change still PENDING long after it was written: its workflow
	// never started. One as old that did start still counts.
	bUnstarted := createBulk(t, st, dev(unstarted, change.Suspend, 1))
	exec(t, st, `UPDATE bulk_changes SET created_at = now() - $2::interval WHERE id = $1`, bUnstarted.ID,
		db.UnstartedAfter+time.Minute)
	bStartedLate := createBulk(t, st, dev(startedLate, change.Suspend, 1))
	exec(t, st, `UPDATE bulk_changes SET created_at = now() - $2::interval, status = 'RUNNING' WHERE id = $1`,
		bStartedLate.ID, db.UnstartedAfter+time.Minute)

	usage, err := st.LineUsage(ctx, "", []string{idle, queued, sent, old, inventory, unstarted, startedLate, twice})
	require.NoError(t, err)
	require.Equal(t, map[string]db.LineUse{
		queued:      {Queued: 1, OpenBulkChanges: []string{bQueued.ID}},
		sent:        {Last24h: 1, OpenBulkChanges: []string{bSent.ID}},
		inventory:   {OpenBulkChanges: []string{bInventory.ID}},
		startedLate: {Queued: 1, OpenBulkChanges: []string{bStartedLate.ID}},
		twice:       {Queued: 2, OpenBulkChanges: sortedPair(bQueued.ID, bSent.ID)},
	}, usage, "idle, a change older than a day and a never-started bulk change count for nothing")
}

// For a tenant, the counts are every tenant's (the limit is the line's)
// but only its own unfinished bulk changes are named; the others are
// counted.
func TestLineUsageOfATenant(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)
	shared, own := dbtest.NewICCID(), dbtest.NewICCID()
	bA := createBulkWith(t, st, db.NewBulkChange{Tenant: "acme"}, dev(shared, change.Suspend, 1), dev(own, change.Suspend, 1))
	bB := createBulkWith(t, st, db.NewBulkChange{Tenant: "globex", AccountName: "0000333333-00001"},
		dev(shared, change.Restore, 1))
	bC := createBulkWith(t, st, db.NewBulkChange{Tenant: "initech", AccountName: "0000444444-00001"},
		dev(shared, change.Suspend, 1))

	usage, err := st.LineUsage(ctx, "globex", []string{shared, own})
	require.NoError(t, err)
	require.Equal(t, map[string]db.LineUse{
		shared: {Queued: 3, OpenBulkChanges: []string{bB.ID}, OtherTenants: 2},
		own:    {Queued: 1, OpenBulkChanges: []string{}, OtherTenants: 1},
	}, usage)

	usage, err = st.LineUsage(ctx, "", []string{shared})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{bA.ID, bB.ID, bC.ID}, usage[shared].OpenBulkChanges)
	require.Zero(t, usage[shared].OtherTenants)
}

func sortedPair(a, b string) []string {
	if a < b {
		return []string{a, b}
	}
	return []string{b, a}
}

func testBulkChangeQueries(t *testing.T, st *db.Store) {
	ctx := testCtx(t)

	t.Run("unknown ids and keys are ErrNotFound", func(t *testing.T) {
		_, err := st.GetBulkChange(ctx, uuid.NewString())
		require.ErrorIs(t, err, db.ErrNotFound)
		_, err = st.BulkChangeByKey(ctx, "default", "no-such-key")
		require.ErrorIs(t, err, db.ErrNotFound)
	})

	t.Run("operations: distinct and sorted, and counted", func(t *testing.T) {
		d := append(devs(change.Suspend, 1, 2), devs(change.Activate, 2, 1)...)
		d = append(d, devs(change.Deactivate, 3, 3)...)
		b := createBulk(t, st, d...)
		ops, err := st.BulkOperations(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, []string{"activate", "deactivate", "suspend"}, ops)
		counts, err := st.BulkOperationCounts(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, map[string]int{"activate": 1, "deactivate": 3, "suspend": 2}, counts)
	})

	t.Run("the approval is recorded in the options, which keep the rest", func(t *testing.T) {
		b := createBulkWith(t, st, db.NewBulkChange{Options: json.RawMessage(`{"window":5}`)}, devs(change.Deactivate, 1, 1)...)
		require.NoError(t, st.SetBulkApproval(ctx, b.ID, map[string]any{"reason": "1 deactivate"}))
		got, err := st.GetBulkChange(ctx, b.ID)
		require.NoError(t, err)
		require.JSONEq(t, `{"window":5,"approval":{"reason":"1 deactivate"}}`, string(got.Options))
		require.Equal(t, 1, queryInt(t, st, `SELECT count(*) FROM bulk_changes WHERE id = $1 AND needs_approval`, b.ID))
	})

	t.Run("failed changes in file order, filtered by code", func(t *testing.T) {
		d := devs(change.Activate, 1, 4)
		d[0].PPU = ppuJSON("Bea", "2 Elm St")
		d[0].Billing = json.RawMessage(`{"customerId":1,"serviceTypeId":2,"providerId":3}`)
		d[0].Params = json.RawMessage(`{"servicePlan":"m2m_4G"}`)
		d[0].IMEI = "356938035643809"
		b := createBulk(t, st, d...)
		ids := changeIDs(t, st, b.ID)
		for i, code := range []change.Code{"REQUEST_FAILED.DeviceNotFound", "", "REQUEST_FAILED.DeviceNotFound", change.DeviceBusy} {
			if code == "" {
				continue
			}
			_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: ids[i], Status: change.Failed, ErrorCode: code})
			require.NoError(t, err)
		}

		all, err := st.FailedChanges(ctx, b.ID, nil)
		require.NoError(t, err)
		require.Equal(t, []string{d[0].ICCID, d[2].ICCID, d[3].ICCID}, failedICCIDs(all))
		require.Equal(t, "356938035643809", all[0].IMEI)
		require.Equal(t, change.Activate, all[0].Operation)
		require.Equal(t, 2, all[0].RowNumber)
		require.JSONEq(t, string(d[0].PPU), string(all[0].PPU))
		require.JSONEq(t, string(d[0].Billing), string(all[0].Billing))
		require.JSONEq(t, string(d[0].Params), string(all[0].Params))

		empty, err := st.FailedChanges(ctx, b.ID, []string{})
		require.NoError(t, err)
		require.Equal(t, failedICCIDs(all), failedICCIDs(empty), "an empty list of codes is no filter")

		busy, err := st.FailedChanges(ctx, b.ID, []string{string(change.DeviceBusy)})
		require.NoError(t, err)
		require.Equal(t, []string{d[3].ICCID}, failedICCIDs(busy))
		require.Equal(t, change.DeviceBusy, busy[0].ErrorCode)

		none, err := st.FailedChanges(ctx, b.ID, []string{"NO_SUCH_CODE"})
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

func failedICCIDs(fs []db.FailedChange) []string {
	return each(fs, func(f db.FailedChange) string { return f.ICCID })
}

// ListBulkChanges reads every bulk change of the database: it has one of
// its own.
func TestListBulkChanges(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)
	var want []string
	for i := range 4 {
		b := createBulk(t, st, devs(change.Suspend, 1, 1)...)
		exec(t, st, `UPDATE bulk_changes SET created_at = now() - make_interval(mins => $2) WHERE id = $1`, b.ID, 10-i)
		want = append([]string{b.ID}, want...)
	}
	list, err := st.ListBulkChanges(ctx, "", 3)
	require.NoError(t, err)
	require.Equal(t, want[:3], bulkIDs(list), "newest first, at most the limit")
	list, err = st.ListBulkChanges(ctx, "", 10)
	require.NoError(t, err)
	require.Equal(t, want, bulkIDs(list))
}
