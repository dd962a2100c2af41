package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
)

// The operator's requests through the starter, on a bulk change scheduled
// an hour ahead (so nothing is sent while the test runs): each refusal
// gives the bulk change's reason and changes nothing; cancel ends it.
func TestOperatorRequestsFromTheStarter(t *testing.T) {
	ds := devices(t, "8914811090", "active", 3)
	csv := "iccid,operation\n"
	for _, d := range ds {
		csv += d.ICCID + ",suspend\n"
	}
	at := time.Now().Add(time.Hour).Format(time.RFC3339)
	code, out, errOut := starter(t, "submit", "--file", file(t, "later.csv", csv), "--not-before", at, "--as", "alice")
	require.Equal(t, 0, code, errOut)
	id := strings.Fields(strings.SplitN(out, "bulk change ", 2)[1])[0]
	ctx := context.Background()
	require.Eventually(t, func() bool {
		b, err := st.Store.GetBulkChange(ctx, id)
		return err == nil && b.Status == change.BulkScheduled
	}, time.Minute, 200*time.Millisecond)

	code, _, errOut = starter(t, "pause", id, "--as", "bob")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "pause refused: ")
	require.Contains(t, errOut, "has not started (SCHEDULED)")
	code, _, errOut = starter(t, "resume", id, "--as", "bob")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "resume refused: ")

	code, out, errOut = starter(t, "cancel", id, "--as", "bob", "--reason", "wrong file")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "bulk change "+id+": ")
	code, _, errOut = starter(t, "cancel", id, "--as", "bob")
	require.Equal(t, 1, code, "cancel twice")
	require.Contains(t, errOut, "cancel refused: ")

	code, out, errOut = starter(t, "status", id)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "CANCELLED")
	b, err := st.Store.GetBulkChange(ctx, id)
	require.NoError(t, err)
	require.EqualValues(t, change.BulkCancelled, b.Status)
	require.Equal(t, len(ds), b.Cancelled)
	for _, d := range ds {
		require.Zero(t, changesSentTo(d.ICCID), "nothing sent for %s", d.ICCID)
	}
	// Who cancelled, and why, is in the audit log.
	var who, why string
	require.NoError(t, st.Store.Pool.QueryRow(ctx, `SELECT request_body::jsonb->>'by', request_body::jsonb->>'reason'
		FROM m2m_log WHERE bulk_change_id = $1 AND service = 'operator' AND operation = 'cancel'`, id).Scan(&who, &why))
	require.Equal(t, "bob", who)
	require.Equal(t, "wrong file", why)
}

// changesSentTo counts the state-change requests ThingSpace received for a
// device.
func changesSentTo(iccid string) int {
	n := 0
	for _, count := range st.TS.Stats(0).AcceptedChanges[iccid] {
		n += count
	}
	return n
}
