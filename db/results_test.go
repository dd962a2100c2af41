package db_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
)

// A bulk change of four batches: batch 1 ended (one activated with a Rev.io
// step owed, one failed, one whose billing failed), batch 2 accepted and
// waiting, batch 3 being sent, batch 4 pending.
func TestResultsAndCounts(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	d := devs(change.Activate, 1, 3)
	d = append(d, devs(change.Suspend, 2, 1)...)
	d = append(d, devs(change.Suspend, 3, 1)...)
	d = append(d, devs(change.Suspend, 4, 2)...)
	b := createBulk(t, st, d...)
	ids := changeIDs(t, st, b.ID)
	accept(t, st, b.ID, 1, "req-r1")
	for _, c := range []db.Completion{
		{DeviceChangeID: ids[0], Status: change.Processed, Outcome: string(change.Activated), FinalState: "active",
			MSISDN: "5550100", ConfirmedBy: "callback", BillingPending: true},
		{DeviceChangeID: ids[1], Status: change.Failed, ErrorCode: "REQUEST_FAILED.DeviceNotFound", ErrorMessage: "not found"},
		{DeviceChangeID: ids[2], Status: change.Processed, Outcome: string(change.Activated), FinalState: "active",
			ConfirmedBy: "poll", BillingPending: true},
	} {
		_, _, err := st.Complete(ctx, c)
		require.NoError(t, err)
	}
	require.NoError(t, st.SetBillingStatus(ctx, ids[2], change.BillingError, "RevioError", "Rev.io said no"))
	accept(t, st, b.ID, 2, "req-r2")
	claim(t, st, b.ID, 3)

	t.Run("results: every device change in file order", func(t *testing.T) {
		rows, err := st.Results(ctx, b.ID)
		require.NoError(t, err)
		require.Len(t, rows, 7)
		for i, r := range rows {
			require.Equal(t, i+1, r.Seq)
			require.Equal(t, d[i].ICCID, r.ICCID)
		}
		require.Equal(t, db.ResultRow{Seq: 1, ICCID: d[0].ICCID, Operation: change.Activate, Status: change.Processed,
			Outcome: string(change.Activated), FinalState: "active", MSISDN: "5550100", RequestID: "req-r1",
			BillingStatus: change.BillingPending, ConfirmedBy: "callback"}, rows[0])
		require.Equal(t, change.Code("REQUEST_FAILED.DeviceNotFound"), rows[1].ErrorCode)
		require.Equal(t, "not found", rows[1].ErrorMessage)
		require.Equal(t, "Rev.io said no", rows[2].BillingError)
		require.Equal(t, change.Sent, rows[3].Status)
		require.Equal(t, change.Sending, rows[4].Status)
		require.Equal(t, change.Pending, rows[6].Status)
	})

	t.Run("counts by status, errors by code, billing", func(t *testing.T) {
		counts, err := st.CountStatuses(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, db.StatusCounts{
			ByStatus: map[change.Status]int{change.Processed: 2, change.Failed: 1, change.Sent: 1,
				change.Sending: 1, change.Pending: 2},
			ErrorsByCode:   map[change.Code]int{"REQUEST_FAILED.DeviceNotFound": 1},
			BillingErrors:  1,
			BillingPending: 1,
		}, counts)
	})

	t.Run("recovery: the first batch not sent, and what the batches before it came to", func(t *testing.T) {
		rc, err := st.RecoveryState(ctx, b.ID, 4)
		require.NoError(t, err)
		require.Equal(t, 3, rc.NextBatch, "batch 3 is still being sent")
		require.Equal(t, 4, rc.Sent)
		require.Equal(t, 1, rc.Unfinished)
		require.Equal(t, 2, rc.Processed)
		require.Equal(t, map[change.Outcome]int{change.Activated: 2}, rc.ByOutcome)
		require.Equal(t, 1, rc.Errors)
		require.Equal(t, map[change.Code]int{"REQUEST_FAILED.DeviceNotFound": 1}, rc.ErrorsByCode)

		_, err = st.FailUnsent(ctx, b.ID, 3, 0, change.SendFailed, "stop")
		require.NoError(t, err)
		rc, err = st.RecoveryState(ctx, b.ID, 4)
		require.NoError(t, err)
		require.Equal(t, 5, rc.NextBatch, "every batch was sent or ended: one past the last")
		require.Equal(t, 7, rc.Sent)
		require.Equal(t, 1, rc.Unfinished)
		require.Equal(t, 4, rc.Errors)
		require.Equal(t, 3, rc.ErrorsByCode[change.SendFailed])
	})

	t.Run("an unknown bulk change has no results", func(t *testing.T) {
		rows, err := st.Results(ctx, "00000000-0000-0000-0000-000000000000")
		require.NoError(t, err)
		require.Empty(t, rows)
		counts, err := st.CountStatuses(ctx, "00000000-0000-0000-0000-000000000000")
		require.NoError(t, err)
		require.Empty(t, counts.ByStatus)
	})
}
