package submission_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/submission"
)

const activateHeader = "iccid,operation,imei,service_plan,mdn_zip_code"

func TestPlan(t *testing.T) {
	t.Parallel()
	sub, st, fake := newSubmitter(t)
	ctx := testCtx(t)

	t.Run("every problem of the file at once, with its row; nothing written", func(t *testing.T) {
		req := csvRequest(csvFile(activateHeader,
			dbtest.NewICCID()+",suspend,,,",
			"8914800000000000001,suspend,,,", // bad check digit
			dbtest.NewICCID()+",activate,"+imei(1)+",,98801",
			dbtest.NewICCID()+",frobnicate,,,",
		))
		_, err := sub.Plan(ctx, req)
		var ve *changefile.ValidationError
		require.ErrorAs(t, err, &ve)
		rows := map[int]bool{}
		for _, e := range ve.Errors {
			rows[e.Row] = true
		}
		require.Equal(t, map[int]bool{3: true, 4: true, 5: true}, rows)
		require.Zero(t, bulkCount(t, st))
		require.Empty(t, fake.started())
	})

	t.Run("an unknown default operation is refused", func(t *testing.T) {
		req := csvRequest(csvFile("iccid", dbtest.NewICCID()))
		req.DefaultOperation = "reboot"
		_, err := sub.Plan(ctx, req)
		require.ErrorContains(t, err, "--operation")
	})

	t.Run("compatible changes share a batch, in file order, up to the batch size", func(t *testing.T) {
		a, b, c, d := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()
		e, f, g := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()
		req := csvRequest(csvFile(activateHeader,
			a+",suspend,,,",
			b+",restore,,,",
			c+",suspend,,,",
			d+",activate,"+imei(1)+",m2m_4G,98801",
			e+",activate,"+imei(2)+",m2m_5G,98801",
			f+",suspend,,,",
			g+",activate,"+imei(3)+",m2m_4G,98801",
		))
		req.BatchSize = 2
		plan, err := sub.Plan(ctx, req)
		require.NoError(t, err)
		require.Equal(t, []int{1, 2, 1, 3, 4, 5, 3}, plan.BatchOf)
		require.Equal(t, []submission.Batch{
			{No: 1, Operation: "suspend", Devices: 2},
			{No: 2, Operation: "restore", Devices: 1},
			{No: 3, Operation: "activate", Devices: 2, Request: submission.BatchRequest{ServicePlan: "m2m_4G", MdnZipCode: "98801"}},
			{No: 4, Operation: "activate", Devices: 1, Request: submission.BatchRequest{ServicePlan: "m2m_5G", MdnZipCode: "98801"}},
			{No: 5, Operation: "suspend", Devices: 1},
		}, plan.Batches)
		require.Equal(t, map[string]int{"suspend": 3, "restore": 1, "activate": 3}, plan.ByOperation)
		require.Equal(t, []string{"activate", "restore", "suspend"}, plan.SortedOperations())
		require.Len(t, plan.Devices, 7)
		require.Equal(t, a, plan.Devices[0].ICCID)
		require.Equal(t, 2, plan.Devices[0].Row)
		require.Empty(t, plan.Warnings)
	})

	t.Run("inventory adds are capped at ThingSpace's maximum per request", func(t *testing.T) {
		rows := make([]string, 201)
		for i := range rows {
			rows[i] = dbtest.NewICCID()
		}
		req := csvRequest(csvFile("iccid", rows...))
		req.DefaultOperation = "inventory"
		req.BatchSize = 1000
		plan, err := sub.Plan(ctx, req)
		require.NoError(t, err)
		require.Len(t, plan.Batches, 2)
		require.Equal(t, 200, plan.Batches[0].Devices)
		require.Equal(t, 1, plan.Batches[1].Devices)
	})

	t.Run("a batch size below 1 sends one device per request", func(t *testing.T) {
		req := csvRequest(csvFile("iccid,operation", dbtest.NewICCID()+",suspend", dbtest.NewICCID()+",suspend"))
		req.BatchSize = 0
		plan, err := sub.Plan(ctx, req)
		require.NoError(t, err)
		require.Equal(t, []int{1, 2}, plan.BatchOf)
	})

	t.Run("deactivations batch by reason, ETF waiver and the file's delete choice", func(t *testing.T) {
		req := csvRequest(csvFile("iccid,operation,reason_code,etf_waiver,delete_after_deactivation",
			dbtest.NewICCID()+",deactivate,,,",
			dbtest.NewICCID()+",deactivate,FF,false,",
			dbtest.NewICCID()+",deactivate,FF,true,",
			dbtest.NewICCID()+",deactivate,,,false",
		))
		plan, err := sub.Plan(ctx, req)
		require.NoError(t, err)
		require.Equal(t, []int{1, 1, 2, 3}, plan.BatchOf, "an empty reason is FF")
		no, yes, keep := false, true, false
		require.Equal(t, submission.BatchRequest{ReasonCode: "FF", EtfWaiver: &no}, plan.Batches[0].Request)
		require.Equal(t, submission.BatchRequest{ReasonCode: "FF", EtfWaiver: &yes}, plan.Batches[1].Request)
		require.Equal(t, submission.BatchRequest{ReasonCode: "FF", EtfWaiver: &no, DeleteAfterDeactivation: &keep},
			plan.Batches[2].Request)
	})

	t.Run("the plan shows that a PPU is sent, never the PPU", func(t *testing.T) {
		header := activateHeader + ",ppu_first_name,ppu_last_name,ppu_address_line1,ppu_city,ppu_state,ppu_zip,ppu_country"
		req := csvRequest(csvFile(header,
			dbtest.NewICCID()+",activate,"+imei(4)+
				",m2m_4G,98801,Zebulon,Quimby,742 Evergreen Terrace,Springfield,OR,97477,US",
			dbtest.NewICCID()+",activate,"+imei(5)+",m2m_4G,98801,,,,,,,",
		))
		plan, err := sub.Plan(ctx, req)
		require.NoError(t, err)
		require.Len(t, plan.Batches, 2, "a PPU is request-level: devices with and without one are sent apart")
		require.True(t, plan.Batches[0].Request.PrimaryPlaceOfUse)
		require.False(t, plan.Batches[1].Request.PrimaryPlaceOfUse)
		out, err := json.Marshal(plan)
		require.NoError(t, err)
		for _, personal := range []string{"Zebulon", "Quimby", "Evergreen", "Springfield"} {
			require.NotContains(t, string(out), personal)
		}
	})

	t.Run("the per-line daily limit, counting accepted and queued changes, refuses before anything is sent", func(t *testing.T) {
		busy, queued, free := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()
		for range 2 {
			id := pastChange(t, st, busy)
			_, err := st.Pool.Exec(ctx, `UPDATE device_changes SET status = 'PROCESSED', submitted_at = now() - interval '1 hour'
				WHERE bulk_change_id = $1`, id)
			require.NoError(t, err)
		}
		open := pastChange(t, st, queued)
		for _, tc := range []struct {
			name    string
			perDay  int
			op      string
			refused []string
		}{
			{"no limit", 0, "suspend", nil},
			{"below it", 3, "suspend", nil},
			{"at it", 2, "suspend", []string{busy}},
			{"queued changes count", 1, "suspend", []string{busy, queued}},
			{"inventory adds are never refused", 1, "inventory", nil},
		} {
			req := csvRequest(csvFile("iccid,operation", busy+","+tc.op, queued+","+tc.op, free+","+tc.op))
			req.ActionsPerLinePerDay = tc.perDay
			plan, err := sub.Plan(ctx, req)
			if tc.refused == nil {
				require.NoError(t, err, tc.name)
				require.Len(t, plan.Devices, 3, tc.name)
				continue
			}
			var ve *changefile.ValidationError
			require.ErrorAs(t, err, &ve, tc.name)
			var got []string
			for _, e := range ve.Errors {
				require.Equal(t, "iccid", e.Field)
				got = append(got, strings.SplitN(e.Message, ":", 2)[0])
			}
			require.Equal(t, tc.refused, got, tc.name)
		}

		req := csvRequest(csvFile("iccid,operation", busy+",suspend"))
		req.ActionsPerLinePerDay = 2
		_, err := sub.Plan(ctx, req)
		var ve *changefile.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, changefile.FieldError{Row: 2, Field: "iccid", Message: busy + ": the line already has 2 state " +
			"changes in the last 24 hours and 0 waiting in other bulk changes; ThingSpace allows 2 a day"}, ve.Errors[0])

		req = csvRequest(csvFile("iccid,operation", free+",suspend", queued+",restore"))
		plan, err := sub.Plan(ctx, req)
		require.NoError(t, err)
		require.Equal(t, []string{fmt.Sprintf("row 3: %s is also in unfinished bulk change %s; "+
			"whichever reaches ThingSpace second ends as DEVICE_BUSY", queued, open)}, plan.Warnings)
	})

	t.Run("a plan writes nothing and starts nothing", func(t *testing.T) {
		before := bulkCount(t, st)
		_, err := sub.Plan(ctx, csvRequest(csvFile("iccid,operation", dbtest.NewICCID()+",suspend")))
		require.NoError(t, err)
		require.Equal(t, before, bulkCount(t, st))
		require.Empty(t, fake.started())
	})

	t.Run("a file that cannot be read is an error", func(t *testing.T) {
		req := csvRequest(nil)
		req.Data, req.File = nil, t.TempDir()+"/missing.csv"
		_, err := sub.Plan(ctx, req)
		require.Error(t, err)
		var ve *changefile.ValidationError
		require.False(t, errors.As(err, &ve))
	})
}

// pastChange writes a bulk change of one suspension of the ICCID, as an
// earlier submission would have, and returns its id.
func pastChange(t *testing.T, st *db.Store, iccid string) string {
	t.Helper()
	id := uuid.NewString()
	_, created, err := st.CreateBulkChange(testCtx(t), db.NewBulkChange{ID: id, AccountName: account,
		WorkflowID: "bulk-change/" + id, Batches: 1, Devices: []db.NewDeviceChange{
			{Seq: 1, RowNumber: 2, ICCID: iccid, Operation: change.Suspend, BatchNo: 1}}})
	require.NoError(t, err)
	require.True(t, created)
	return id
}

func parse(t *testing.T, data, format string) []changefile.DeviceRequest {
	t.Helper()
	devs, err := changefile.ParseData([]byte(data), format, changefile.Options{})
	require.NoError(t, err)
	return devs
}

// The content hash is the key of a submission without an idempotency key:
// the same rows give the same hash, and anything they ask differently
// another.
func TestContentHash(t *testing.T) {
	t.Parallel()
	a, b := dbtest.NewICCID(), dbtest.NewICCID()
	base := parse(t, "iccid,operation\n"+a+",suspend\n"+b+",restore\n", "csv")
	hash := submission.ContentHash(account, base)
	require.Regexp(t, `^[0-9a-f]{64}$`, hash)
	require.Equal(t, "content:"+hash, submission.ContentKey(hash))

	for name, data := range map[string]string{
		"columns in another order": "operation,iccid\nsuspend," + a + "\nrestore," + b + "\n",
		"a byte order mark":        "\uFEFFiccid,operation\n" + a + ",suspend\n" + b + ",restore\n",
		"CRLF line ends":           "iccid,operation\r\n" + a + ",suspend\r\n" + b + ",restore\r\n",
		"operations in capitals":   "iccid,operation\n" + a + ",SUSPEND\n" + b + ",Restore\n",
	} {
		require.Equal(t, hash, submission.ContentHash(account, parse(t, data, "csv")), name)
	}

	defaulted, err := changefile.ParseData([]byte("iccid\n"+a+"\n"), "csv",
		changefile.Options{DefaultOperation: change.Suspend})
	require.NoError(t, err)
	require.Equal(t, submission.ContentHash(account, parse(t, "iccid,operation\n"+a+",suspend\n", "csv")),
		submission.ContentHash(account, defaulted), "the default operation is applied before hashing")

	for name, other := range map[string]string{
		"another account": submission.ContentHash("0000999999-00001", base),
		"rows swapped": submission.ContentHash(account,
			parse(t, "iccid,operation\n"+b+",restore\n"+a+",suspend\n", "csv")),
		"another operation": submission.ContentHash(account,
			parse(t, "iccid,operation\n"+a+",suspend\n"+b+",suspend\n", "csv")),
		"a row less": submission.ContentHash(account, parse(t, "iccid,operation\n"+a+",suspend\n", "csv")),
		"a PPU changed": submission.ContentHash(account, parse(t, activateHeader+",ppu_first_name,ppu_last_name,"+
			"ppu_address_line1,ppu_city,ppu_state,ppu_zip,ppu_country\n"+
			a+",activate,"+imei(6)+",m2m_4G,98801,Ann,Lee,1 Main St,Springfield,OR,97477,US\n", "csv")),
	} {
		require.NotEqual(t, hash, other, name)
	}
	ppu := func(first string) string {
		return submission.ContentHash(account, parse(t, activateHeader+",ppu_first_name,ppu_last_name,"+
			"ppu_address_line1,ppu_city,ppu_state,ppu_zip,ppu_country\n"+
			a+",activate,"+imei(6)+",m2m_4G,98801,"+first+",Lee,1 Main St,Springfield,OR,97477,US\n", "csv"))
	}
	require.NotEqual(t, ppu("Ann"), ppu("Anne"), "the PPU is part of what is asked")
	require.NotContains(t, ppu("Ann"), "Ann")
}
