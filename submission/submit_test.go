package submission_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

func TestSubmitWritesAndStarts(t *testing.T) {
	t.Parallel()
	sub, st, fake := newSubmitter(t)
	ctx := testCtx(t)

	act, susp, deact := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()
	header := activateHeader + ",ppu_first_name,ppu_last_name,ppu_address_line1,ppu_city,ppu_state,ppu_zip,ppu_country," +
		"rev_customer_id,rev_service_type_id,rev_provider_id,rev_product_ids,rev_rates,reason_code,etf_waiver"
	data := csvFile(header,
		act+",activate,"+imei(7)+",m2m_4G,98801,Zebulon,Quimby,742 Evergreen Terrace,Springfield,or,97477-1234,US,"+
			"1001,5,3,101;102,9.99;0.5,,",
		"",
		susp+",suspend"+strings.Repeat(",", 17),
		deact+",deactivate"+strings.Repeat(",", 17)+"yes",
	)
	req := csvRequest(data)
	req.Options = api.Options{Window: 7, CallbacksEnabled: true}
	req.Approval = submission.NewApprovalRule([]string{"deactivate"}, 1, 72*time.Hour)
	res, err := sub.Submit(ctx, req)
	require.NoError(t, err)
	require.True(t, res.Created)
	require.NotNil(t, res.Plan)
	require.Equal(t, api.BulkChangeWorkflowID(res.ID), res.WorkflowID)
	require.Equal(t, "run-1", res.RunID)

	t.Run("the bulk change: account, source, submitter, content key, options with the approval", func(t *testing.T) {
		b, err := st.GetBulkChange(ctx, res.ID)
		require.NoError(t, err)
		require.Equal(t, account, b.AccountName)
		require.Equal(t, "devices.csv", b.SourceName)
		require.Equal(t, "alice", b.SubmittedBy)
		require.Equal(t, 3, b.Total)
		require.Equal(t, 3, b.Batches)
		require.Equal(t, change.BulkPending, b.Status)
		devs, err := changefile.ParseData(data, "csv", changefile.Options{})
		require.NoError(t, err)
		hash := submission.ContentHash(account, devs)
		require.Equal(t, hash, b.ContentHash)
		require.Equal(t, submission.ContentKey(hash), b.IdempotencyKey, "without a key, the content is the key")
		var opts api.Options
		require.NoError(t, json.Unmarshal(b.Options, &opts))
		require.Equal(t, 7, opts.Window)
		require.True(t, opts.CallbacksEnabled)
		require.Equal(t, &api.Approval{Reason: "1 deactivate", ExpiresAfter: 72 * time.Hour}, opts.Approval)
	})

	t.Run("the device changes: file order and rows, batches, params, PPU as ThingSpace takes it, billing", func(t *testing.T) {
		rows, err := st.Results(ctx, res.ID)
		require.NoError(t, err)
		require.Equal(t, []string{act, susp, deact}, []string{rows[0].ICCID, rows[1].ICCID, rows[2].ICCID})
		failed := map[string]int{}
		for _, r := range rows {
			_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: changeID(t, st, res.ID, r.ICCID),
				Status: change.Failed, ErrorCode: "X"})
			require.NoError(t, err)
		}
		stored, err := st.FailedChanges(ctx, res.ID, nil)
		require.NoError(t, err)
		for _, f := range stored {
			failed[f.ICCID] = f.RowNumber
		}
		require.Equal(t, map[string]int{act: 2, susp: 4, deact: 5}, failed, "row numbers are the file's lines")

		a := stored[0]
		require.Equal(t, imei(7), a.IMEI)
		require.JSONEq(t, `{"servicePlan":"m2m_4G","mdnZipCode":"98801"}`, string(a.Params))
		require.JSONEq(t, `{"customerName":{"firstName":"Zebulon","lastName":"Quimby"},
			"address":{"addressLine1":"742 Evergreen Terrace","city":"Springfield","state":"OR","zip":"97477","zip4":"1234",
			"country":"USA"}}`, string(a.PPU), "ZIP+4 split in two, state and country as ThingSpace wants them")
		require.JSONEq(t, `{"customerId":1001,"serviceTypeId":5,"providerId":3,"productIds":[101,102],"rates":["9.99","0.5"]}`,
			string(a.Billing))
		require.JSONEq(t, `{"reasonCode":"FF","etfWaiver":true}`, string(stored[2].Params))
		require.Nil(t, stored[1].PPU)
		require.Nil(t, stored[1].Billing)
	})

	t.Run("the workflow: one per bulk change, ever, findable by its attributes", func(t *testing.T) {
		s := fake.last()
		require.Equal(t, api.BulkChangeWorkflowType, s.Workflow)
		require.Equal(t, []any{api.BulkChangeInput{BulkChangeID: res.ID, Tenant: "default"}}, s.Args)
		require.Equal(t, res.WorkflowID, s.Options.ID)
		require.Equal(t, api.TaskQueue, s.Options.TaskQueue)
		require.Equal(t, enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE, s.Options.WorkflowIDReusePolicy)
		require.Equal(t, enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, s.Options.WorkflowIDConflictPolicy)
		sa := s.Options.TypedSearchAttributes
		id, _ := sa.GetKeyword(api.BulkChangeIDAttr)
		require.Equal(t, res.ID, id)
		tenant, _ := sa.GetKeyword(api.TenantAttr)
		require.Equal(t, "default", tenant)
		acct, _ := sa.GetKeyword(api.ThingSpaceAccountAttr)
		require.Equal(t, account, acct)
		status, _ := sa.GetKeyword(api.BulkChangeStatusAttr)
		require.Equal(t, "PENDING", status)
		ops, _ := sa.GetKeywordList(api.OperationAttr)
		require.Equal(t, []string{"activate", "deactivate", "suspend"}, ops)
	})
}

func changeID(t *testing.T, st *db.Store, bulkID, iccid string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, st.Pool.QueryRow(testCtx(t), `SELECT id FROM device_changes WHERE bulk_change_id = $1 AND iccid = $2`,
		bulkID, iccid).Scan(&id))
	return id
}

func TestSubmitIdempotency(t *testing.T) {
	t.Parallel()
	sub, st, fake := newSubmitter(t)
	ctx := testCtx(t)

	t.Run("the same file again is the same bulk change, started again", func(t *testing.T) {
		data := csvFile("iccid,operation", dbtest.NewICCID()+",suspend", dbtest.NewICCID()+",suspend")
		first, err := sub.Submit(ctx, csvRequest(data))
		require.NoError(t, err)
		before := bulkCount(t, st)
		again, err := sub.Submit(ctx, csvRequest(data))
		require.NoError(t, err)
		require.False(t, again.Created)
		require.Equal(t, first.ID, again.ID)
		require.Nil(t, again.Plan)
		require.Equal(t, before, bulkCount(t, st))
		require.Equal(t, []string{first.WorkflowID, first.WorkflowID}, fake.started()[len(fake.started())-2:],
			"its workflow is asked to start again: USE_EXISTING finds it if it runs")
	})

	t.Run("the same rows in another CSV layout are the same bulk change", func(t *testing.T) {
		a, b := dbtest.NewICCID(), dbtest.NewICCID()
		first, err := sub.Submit(ctx, csvRequest(csvFile("iccid,operation", a+",suspend", b+",restore")))
		require.NoError(t, err)
		again, err := sub.Submit(ctx, csvRequest([]byte("\uFEFFoperation,iccid\r\nSUSPEND,"+a+"\r\nrestore,"+b+"\r\n")))
		require.NoError(t, err)
		require.False(t, again.Created)
		require.Equal(t, first.ID, again.ID)
	})

	t.Run("a retry is not refused by the daily limit its own first attempt queued", func(t *testing.T) {
		data := csvFile("iccid,operation", dbtest.NewICCID()+",suspend")
		req := csvRequest(data)
		req.ActionsPerLinePerDay = 1
		first, err := sub.Submit(ctx, req)
		require.NoError(t, err)
		again, err := sub.Submit(ctx, req)
		require.NoError(t, err)
		require.Equal(t, first.ID, again.ID)

		other := csvRequest(append(data, []byte(dbtest.NewICCID()+",suspend\n")...))
		other.ActionsPerLinePerDay = 1
		_, err = sub.Submit(ctx, other)
		var ve *changefile.ValidationError
		require.ErrorAs(t, err, &ve, "another file with the line is refused: the first one's change is queued")
	})

	t.Run("a key used again with the same file returns its bulk change; with another file is refused", func(t *testing.T) {
		data := csvFile("iccid,operation", dbtest.NewICCID()+",suspend")
		req := csvRequest(data)
		req.IdempotencyKey = "TICKET-4711"
		first, err := sub.Submit(ctx, req)
		require.NoError(t, err)
		require.True(t, first.Created)
		require.Equal(t, "TICKET-4711", first.BulkChange.IdempotencyKey)
		require.NotEmpty(t, first.BulkChange.ContentHash)

		again, err := sub.Submit(ctx, req)
		require.NoError(t, err)
		require.False(t, again.Created)
		require.Equal(t, first.ID, again.ID)

		before := bulkCount(t, st)
		for name, r := range map[string]submission.Request{
			"another file":    csvRequest(csvFile("iccid,operation", dbtest.NewICCID()+",suspend")),
			"another account": csvRequest(data),
		} {
			r.IdempotencyKey = "TICKET-4711"
			if name == "another account" {
				r.Account = "0000999999-00001"
			}
			_, err = sub.Submit(ctx, r)
			var reused *submission.KeyReusedError
			require.ErrorAs(t, err, &reused, name)
			require.Equal(t, first.ID, reused.Existing.ID)
			require.ErrorContains(t, err, `idempotency key "TICKET-4711" was already used for bulk change `+first.ID)
			require.ErrorContains(t, err, "nothing was submitted")
		}
		require.Equal(t, before, bulkCount(t, st))
	})

	t.Run("concurrent submissions of one file: one bulk change, every caller gets it", func(t *testing.T) {
		data := csvFile("iccid,operation", dbtest.NewICCID()+",suspend", dbtest.NewICCID()+",restore")
		dbtest.RequireOneWinner(t, 6, func(int) (string, bool, error) {
			res, err := sub.Submit(ctx, csvRequest(data))
			if err != nil {
				return "", false, err
			}
			return res.ID, res.Created, nil
		})
	})

	// Two files sent at once under one key: both miss the key at first, and
	// the one that writes second must still refuse the other file.
	t.Run("concurrent submissions of two files under one key: one is written, the other file refused", func(t *testing.T) {
		files := [][]byte{
			csvFile("iccid,operation", dbtest.NewICCID()+",suspend"),
			csvFile("iccid,operation", dbtest.NewICCID()+",restore"),
		}
		type out struct {
			file    int
			id      string
			created bool
			err     error
		}
		results := dbtest.Race(8, func(i int) out {
			req := csvRequest(files[i%2])
			req.IdempotencyKey = "TICKET-RACE"
			res, err := sub.Submit(ctx, req)
			if err != nil {
				return out{file: i % 2, err: err}
			}
			return out{file: i % 2, id: res.ID, created: res.Created}
		})
		winner := -1
		for _, r := range results {
			if r.created {
				require.Equal(t, -1, winner, "a second bulk change was written")
				winner = r.file
			}
		}
		require.NotEqual(t, -1, winner)
		b, err := st.BulkChangeByKey(ctx, "default", "TICKET-RACE")
		require.NoError(t, err)
		for _, r := range results {
			if r.file == winner {
				require.NoError(t, r.err)
				require.Equal(t, b.ID, r.id)
				continue
			}
			var reused *submission.KeyReusedError
			require.ErrorAs(t, r.err, &reused)
		}
	})
}

func TestSubmitStartFailures(t *testing.T) {
	t.Parallel()
	sub, st, fake := newSubmitter(t)
	ctx := testCtx(t)

	t.Run("a workflow that did not start: the bulk change is kept, and the same file starts it", func(t *testing.T) {
		data := csvFile("iccid,operation", dbtest.NewICCID()+",suspend")
		fake.failWith(errTemporalDown)
		res, err := sub.Submit(ctx, csvRequest(data))
		require.ErrorIs(t, err, errTemporalDown)
		require.ErrorContains(t, err, "is recorded but its workflow did not start")
		require.ErrorContains(t, err, "submit the same file again")
		require.NotNil(t, res)
		b, err := st.GetBulkChange(ctx, res.ID)
		require.NoError(t, err)
		require.Equal(t, change.BulkPending, b.Status)

		fake.failWith(nil)
		again, err := sub.Submit(ctx, csvRequest(data))
		require.NoError(t, err)
		require.False(t, again.Created)
		require.Equal(t, res.ID, again.ID)
		require.NotEmpty(t, again.RunID)
	})

	t.Run("a workflow that already ran to its end is not an error", func(t *testing.T) {
		data := csvFile("iccid,operation", dbtest.NewICCID()+",suspend")
		first, err := sub.Submit(ctx, csvRequest(data))
		require.NoError(t, err)
		fake.failWith(serviceerror.NewWorkflowExecutionAlreadyStarted("closed", "", "run-0"))
		defer fake.failWith(nil)
		again, err := sub.Submit(ctx, csvRequest(data))
		require.NoError(t, err)
		require.Equal(t, first.ID, again.ID)
		require.Empty(t, again.RunID)
	})
}

func TestSubmitRefusals(t *testing.T) {
	t.Parallel()
	sub, st, fake := newSubmitter(t)
	ctx := testCtx(t)
	valid := csvFile("iccid,operation", dbtest.NewICCID()+",suspend")

	for _, tc := range []struct {
		name string
		edit func(*submission.Request)
		want string
	}{
		{"no account", func(r *submission.Request) { r.Account = "" }, "the ThingSpace account is required"},
		{"a submitter name too long", func(r *submission.Request) { r.SubmittedBy = strings.Repeat("a", api.MaxByLength+1) },
			"at most 200"},
		{"a control character in the submitter's name", func(r *submission.Request) { r.SubmittedBy = "bob\nFAKE LINE" },
			"not printable"},
		{"a bidi override in the submitter's name", func(r *submission.Request) { r.SubmittedBy = "bob\u202e" },
			"not printable"},
		{"an invalid file", func(r *submission.Request) { r.Data = csvFile("iccid,operation", "123,suspend") }, "row 2"},
		{"an unknown format", func(r *submission.Request) { r.Format = "xlsx" }, "unsupported format"},
		{"a file over the size bound", func(r *submission.Request) { r.MaxFileBytes = 10 },
			"the file is larger than 10 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := csvRequest(valid)
			tc.edit(&r)
			_, err := sub.Submit(ctx, r)
			require.Error(t, err)
			require.ErrorContains(t, err, tc.want)
		})
	}
	require.Zero(t, bulkCount(t, st), "nothing refused is written")
	require.Empty(t, fake.started())

	t.Run("the file as JSON data, or read from a reader named by its extension", func(t *testing.T) {
		a, b := dbtest.NewICCID(), dbtest.NewICCID()
		r := csvRequest(nil)
		r.Data, r.Format = []byte(fmt.Sprintf(`[{"iccid":%q,"operation":"suspend"}]`, a)), "json"
		res, err := sub.Submit(ctx, r)
		require.NoError(t, err)
		require.True(t, res.Created)

		r = csvRequest(nil)
		r.Data, r.File, r.Reader = nil, "inbox/devices.csv", bytes.NewReader(csvFile("iccid,operation", b+",restore"))
		res, err = sub.Submit(ctx, r)
		require.NoError(t, err)
		rows, err := st.Results(ctx, res.ID)
		require.NoError(t, err)
		require.Equal(t, b, rows[0].ICCID)
		require.Equal(t, change.Restore, rows[0].Operation)
		require.Equal(t, "inbox/devices.csv", res.BulkChange.SourceName)
	})
}
