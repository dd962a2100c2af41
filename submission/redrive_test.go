package submission_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const notFound = "REQUEST_FAILED.DeviceNotFound"

// storedRow is what a device change was written with.
type storedRow struct {
	Row                  int
	IMEI, Op             string
	Params, PPU, Billing json.RawMessage
	Status               change.Status
	BatchNo, Seq         int
	BulkID               string
}

func storedRows(t *testing.T, st *db.Store, bulkID string) map[string]storedRow {
	t.Helper()
	rows, err := st.Pool.Query(testCtx(t), `SELECT iccid, row_number, coalesce(imei, ''), operation, params, ppu, billing,
		status, batch_no, seq, bulk_change_id::text FROM device_changes WHERE bulk_change_id = $1`, bulkID)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]storedRow{}
	for rows.Next() {
		var iccid string
		var r storedRow
		require.NoError(t, rows.Scan(&iccid, &r.Row, &r.IMEI, &r.Op, &r.Params, &r.PPU, &r.Billing, &r.Status, &r.BatchNo,
			&r.Seq, &r.BulkID))
		out[iccid] = r
	}
	require.NoError(t, rows.Err())
	return out
}

func TestRedrive(t *testing.T) {
	t.Parallel()
	sub, st, fake := newSubmitter(t)
	ctx := testCtx(t)

	act, done, busy, deact := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()
	header := activateHeader + ",ppu_first_name,ppu_last_name,ppu_address_line1,ppu_city,ppu_state,ppu_zip,ppu_country," +
		"rev_customer_id,rev_service_type_id,rev_provider_id,rev_product_ids,rev_rates,delete_after_deactivation"
	orig, err := sub.Submit(ctx, csvRequest(csvFile(header,
		act+",activate,"+imei(8)+",m2m_4G,98801,Ann,Lee,1 Main St,Springfield,OR,97477-1234,US,1001,5,3,101,9.99,",
		done+",suspend"+strings.Repeat(",", 16),
		busy+",suspend"+strings.Repeat(",", 16),
		deact+",deactivate"+strings.Repeat(",", 16)+"false",
	)))
	require.NoError(t, err)
	for iccid, c := range map[string]db.Completion{
		act:   {Status: change.Failed, ErrorCode: notFound},
		done:  {Status: change.Processed, Outcome: string(change.Suspended), FinalState: "suspended"},
		busy:  {Status: change.Failed, ErrorCode: change.DeviceBusy},
		deact: {Status: change.Failed, ErrorCode: notFound},
	} {
		c.DeviceChangeID = changeID(t, st, orig.ID, iccid)
		_, _, err := st.Complete(ctx, c)
		require.NoError(t, err)
	}

	t.Run("a new bulk change of the failed lines only, as they were submitted, linked to the original", func(t *testing.T) {
		re, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob", BatchSize: 100})
		require.NoError(t, err)
		require.True(t, re.Created)
		b := re.BulkChange
		require.Equal(t, orig.ID, b.RedriveOf)
		require.Equal(t, "redrive:"+orig.ID+":", b.IdempotencyKey)
		require.Equal(t, "re-drive of "+orig.ID, b.SourceName)
		require.Equal(t, account, b.AccountName)
		require.Equal(t, "bob", b.SubmittedBy)
		require.Empty(t, b.ContentHash, "a re-drive's key names what it re-drives")
		require.Equal(t, 3, b.Total)
		require.Equal(t, re.WorkflowID, fake.last().Options.ID)

		before, after := storedRows(t, st, orig.ID), storedRows(t, st, re.ID)
		require.Len(t, after, 3)
		for _, iccid := range []string{act, busy, deact} {
			o, r := before[iccid], after[iccid]
			require.Equal(t, o.Row, r.Row, "%s keeps the row of the original file", iccid)
			require.Equal(t, o.IMEI, r.IMEI)
			require.Equal(t, o.Op, r.Op)
			require.JSONEq(t, string(o.Params), string(r.Params))
			if o.PPU == nil {
				require.Nil(t, r.PPU)
			} else {
				require.JSONEq(t, string(o.PPU), string(r.PPU), "the PPU travels as it was stored")
				require.JSONEq(t, string(o.Billing), string(r.Billing))
			}
			require.Equal(t, change.Pending, r.Status)
		}
		require.Equal(t, []int{1, 2, 3}, []int{after[act].Seq, after[busy].Seq, after[deact].Seq}, "file order")
		require.JSONEq(t, `{"reasonCode":"FF","deleteAfterDeactivation":false}`, string(after[deact].Params),
			"the file's delete choice is re-driven as given")

		again, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "carol", BatchSize: 100})
		require.NoError(t, err)
		require.False(t, again.Created, "the same original and codes: the same re-drive")
		require.Equal(t, re.ID, again.ID)
		require.Equal(t, re.WorkflowID, fake.last().Options.ID, "started again, in case it did not")
	})

	t.Run("only the codes asked for, whatever their order", func(t *testing.T) {
		re, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob", BatchSize: 100,
			Codes: []string{notFound}})
		require.NoError(t, err)
		require.True(t, re.Created)
		got := storedRows(t, st, re.ID)
		require.Len(t, got, 2)
		require.Contains(t, got, act)
		require.Contains(t, got, deact)

		both, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob", BatchSize: 100,
			Codes: []string{notFound, string(change.DeviceBusy)}})
		require.NoError(t, err)
		require.True(t, both.Created)
		require.Equal(t, "redrive:"+orig.ID+":DEVICE_BUSY,"+notFound, both.BulkChange.IdempotencyKey)
		swapped, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob", BatchSize: 100,
			Codes: []string{string(change.DeviceBusy), notFound}})
		require.NoError(t, err)
		require.False(t, swapped.Created)
		require.Equal(t, both.ID, swapped.ID)

		list, err := st.Redrives(ctx, orig.ID)
		require.NoError(t, err)
		require.Len(t, list, 3)
	})

	t.Run("nothing failed with those codes: nothing to re-drive", func(t *testing.T) {
		before := bulkCount(t, st)
		_, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob",
			Codes: []string{"NO_SUCH", "NOR_THIS"}})
		require.ErrorContains(t, err, "has no failed device changes with code NOR_THIS or NO_SUCH: nothing to re-drive")
		require.Equal(t, before, bulkCount(t, st))

		clean, err := sub.Submit(ctx, csvRequest(csvFile("iccid,operation", dbtest.NewICCID()+",suspend")))
		require.NoError(t, err)
		_, err = sub.Redrive(ctx, submission.RedriveRequest{Original: clean.ID, SubmittedBy: "bob"})
		require.ErrorContains(t, err, "has no failed device changes: nothing to re-drive")
	})

	t.Run("an unknown original, or a bad name, is refused", func(t *testing.T) {
		_, err := sub.Redrive(ctx, submission.RedriveRequest{Original: uuid.NewString(), SubmittedBy: "bob"})
		require.ErrorIs(t, err, db.ErrNotFound)
		_, err = sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob\u200b"})
		require.ErrorContains(t, err, "not printable")
	})

	t.Run("the worker's approval rule and the daily limit apply as to a file", func(t *testing.T) {
		rule := submission.NewApprovalRule([]string{"deactivate"}, 1, time.Hour)
		re, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob", BatchSize: 100,
			Codes: []string{notFound, "X-unused"}, Approval: rule})
		require.NoError(t, err)
		var opts api.Options
		require.NoError(t, json.Unmarshal(re.BulkChange.Options, &opts))
		require.Equal(t, &api.Approval{Reason: "1 deactivate", ExpiresAfter: time.Hour}, opts.Approval)

		// The earlier re-drives queued the lines again: a limit of one
		// change a day refuses them.
		_, err = sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob", BatchSize: 100,
			Codes: []string{string(change.DeviceBusy)}, ActionsPerLinePerDay: 1})
		var ve *changefile.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Contains(t, ve.Errors[0].Message, busy)
	})

	t.Run("a stored activation without IMEI or SKU is not re-driven", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		id := uuid.NewString()
		_, _, err := st.CreateBulkChange(ctx, db.NewBulkChange{ID: id, AccountName: account, WorkflowID: "bulk-change/" + id,
			Batches: 1, Devices: []db.NewDeviceChange{{Seq: 1, RowNumber: 7, ICCID: iccid, Operation: change.Activate,
				BatchNo: 1, Params: json.RawMessage(`{"servicePlan":"m2m_4G","mdnZipCode":"98801"}`)}}})
		require.NoError(t, err)
		_, _, err = st.Complete(ctx, db.Completion{DeviceChangeID: changeID(t, st, id, iccid), Status: change.Failed,
			ErrorCode: notFound})
		require.NoError(t, err)
		_, err = sub.Redrive(ctx, submission.RedriveRequest{Original: id, SubmittedBy: "bob"})
		require.ErrorContains(t, err, "row 7 ("+iccid+"): an activation needs the device's IMEI or its SKU")
	})

	t.Run("concurrent re-drives of one original: one bulk change", func(t *testing.T) {
		codes := []string{notFound, "concurrent"}
		dbtest.RequireOneWinner(t, 4, func(int) (string, bool, error) {
			re, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, SubmittedBy: "bob", BatchSize: 100,
				Codes: codes})
			if err != nil {
				return "", false, err
			}
			return re.ID, re.Created, nil
		})
	})
}
