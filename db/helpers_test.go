package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

const account = "0000123456-00001"

// newStore is a store on a fresh database of the test's own, and the
// context of the test's calls to it (testCtx). Creating one takes about a
// second, so a test makes one and its subtests share it, each with ICCIDs
// and bulk changes of its own.
func newStore(t *testing.T) (*db.Store, context.Context) {
	t.Helper()
	return dbtest.New(t), testCtx(t)
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// devs are n device changes of one operation and batch, on new ICCIDs.
func devs(op change.Operation, batch, n int) []db.NewDeviceChange {
	out := make([]db.NewDeviceChange, n)
	for i := range out {
		out[i] = db.NewDeviceChange{ICCID: dbtest.NewICCID(), Operation: op, BatchNo: batch}
	}
	return out
}

// numbered gives devices their place in the file: Seq from 1, and the
// line after the header.
func numbered(devices []db.NewDeviceChange) []db.NewDeviceChange {
	for i := range devices {
		devices[i].Seq, devices[i].RowNumber = i+1, i+2
	}
	return devices
}

// dev is one device change of an ICCID given by the test.
func dev(iccid string, op change.Operation, batch int) db.NewDeviceChange {
	return db.NewDeviceChange{ICCID: iccid, Operation: op, BatchNo: batch}
}

// createBulk writes a bulk change of the devices (numbered in the order
// given, when their Seq is unset) without an idempotency key.
func createBulk(t *testing.T, st *db.Store, devices ...db.NewDeviceChange) *db.BulkChange {
	t.Helper()
	return createBulkWith(t, st, db.NewBulkChange{}, devices...)
}

// createBulkWith is createBulk with the bulk change's own fields from n.
func createBulkWith(t *testing.T, st *db.Store, n db.NewBulkChange, devices ...db.NewDeviceChange) *db.BulkChange {
	t.Helper()
	if n.ID == "" {
		n.ID = uuid.NewString()
	}
	if n.AccountName == "" {
		n.AccountName = account
	}
	if n.WorkflowID == "" {
		n.WorkflowID = "bulk-change/" + n.ID
	}
	n.Devices = append([]db.NewDeviceChange(nil), devices...)
	for i := range n.Devices {
		if n.Devices[i].Seq == 0 {
			n.Devices[i].Seq = i + 1
		}
		if n.Devices[i].RowNumber == 0 {
			n.Devices[i].RowNumber = n.Devices[i].Seq + 1
		}
		n.Batches = max(n.Batches, n.Devices[i].BatchNo)
	}
	b, created, err := st.CreateBulkChange(testCtx(t), n)
	require.NoError(t, err)
	require.True(t, created)
	return b
}

// newBatch writes a bulk change of n new devices of one operation, all in
// batch 1, and returns it with its device changes' ids in file order.
func newBatch(t *testing.T, st *db.Store, op change.Operation, n int) (*db.BulkChange, []int64) {
	t.Helper()
	b := createBulk(t, st, devs(op, 1, n)...)
	return b, changeIDs(t, st, b.ID)
}

// newChange writes a bulk change of one new device of op and returns it
// with its device change's id.
func newChange(t *testing.T, st *db.Store, op change.Operation) (*db.BulkChange, int64) {
	t.Helper()
	b, ids := newBatch(t, st, op, 1)
	return b, ids[0]
}

// changeIDs are the ids of a bulk change's device changes, in file order.
func changeIDs(t *testing.T, st *db.Store, bulkID string) []int64 {
	t.Helper()
	var ids []int64
	rows, err := st.Pool.Query(testCtx(t), `SELECT id FROM device_changes WHERE bulk_change_id = $1 ORDER BY seq`, bulkID)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

// getChange reads a device change.
func getChange(t *testing.T, st *db.Store, id int64) *db.DeviceChange {
	t.Helper()
	dc, err := st.GetDeviceChange(testCtx(t), id)
	require.NoError(t, err)
	return dc
}

// claim starts the request of a batch and requires it to be new.
func claim(t *testing.T, st *db.Store, bulkID string, batch int) (*db.ThingSpaceRequest, []db.ClaimedDevice) {
	t.Helper()
	req, claimed, fresh, err := st.ClaimBatch(testCtx(t), bulkID, batch, db.ClaimLimits{})
	require.NoError(t, err)
	require.True(t, fresh, "batch %d was claimed before", batch)
	return req, claimed
}

// accept claims a batch and records ThingSpace's acceptance of it: its
// devices are then SUBMITTED with the request id.
func accept(t *testing.T, st *db.Store, bulkID string, batch int, requestID string) *db.ThingSpaceRequest {
	t.Helper()
	req, _ := claim(t, st, bulkID, batch)
	require.NoError(t, st.MarkRequestAccepted(testCtx(t), req, requestID, nil))
	return req
}

// exec runs SQL the product has no query for: moving a row back in time,
// or reading a column no query returns.
func exec(t *testing.T, st *db.Store, sql string, args ...any) {
	t.Helper()
	_, err := st.Pool.Exec(testCtx(t), sql, args...)
	require.NoError(t, err)
}

// queryInt reads one integer.
func queryInt(t *testing.T, st *db.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool.QueryRow(testCtx(t), sql, args...).Scan(&n))
	return n
}

// resultEntries counts the audit log's result entries of a device change.
func resultEntries(t *testing.T, st *db.Store, id int64) int {
	t.Helper()
	return queryInt(t, st, `SELECT count(*) FROM m2m_log WHERE device_change_id = $1 AND service = 'workflow'`, id)
}

// each is f of every element of xs, in order: the ids or keys of what a
// query returned, for a test to compare.
func each[T, V any](xs []T, f func(T) V) []V {
	out := make([]V, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// ppuJSON is a stored PPU whose free-text values tests look for.
func ppuJSON(first, line1 string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"customerName":{"firstName":%q,"lastName":"Quimby"},`+
		`"address":{"addressLine1":%q,"city":"Springfield","state":"OR","zip":"97477","country":"USA"}}`, first, line1))
}
