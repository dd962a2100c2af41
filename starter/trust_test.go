package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// setenv sets an environment variable for the starter runs of fn only.
func setenv(t *testing.T, key, value string, fn func()) {
	t.Helper()
	old, had := os.LookupEnv(key)
	require.NoError(t, os.Setenv(key, value))
	defer func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	}()
	fn()
}

func bulkID(t *testing.T, out string) string {
	t.Helper()
	parts := strings.SplitN(out, "bulk change ", 2)
	require.Len(t, parts, 2, out)
	return strings.Fields(parts[1])[0]
}

// A submission whose workflow did not start (Temporal refused it) leaves
// its bulk change written. Submitting the same file again, without an
// idempotency key, finds that bulk change and starts it: one bulk change,
// not a second one beside an orphan.
func TestSubmitAgainAfterFailedStartStartsTheSameBulkChange(t *testing.T) {
	ds := devices(t, "8914811101", "active", 2)
	f := file(t, "retry.csv", "iccid,operation\n"+ds[0].ICCID+",suspend\n"+ds[1].ICCID+",suspend\n")
	before := countBulkChanges(t)

	var code int
	var out, errOut string
	setenv(t, "TSBULK_TEMPORAL_NAMESPACE", "no-such-namespace", func() {
		code, out, errOut = starter(t, "submit", "--file", f)
	})
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, "is recorded but its workflow did not start")
	first := bulkID(t, errOut)
	require.Equal(t, before+1, countBulkChanges(t))

	code, out, errOut = starter(t, "submit", "--file", f)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "bulk change "+first+" already exists for this idempotency key")
	require.Contains(t, out, "without --idempotency-key the key is the file's content")
	require.Equal(t, before+1, countBulkChanges(t), "the same bulk change, started; no second one")
	require.Eventually(t, func() bool {
		b, err := st.Store.GetBulkChange(context.Background(), first)
		return err == nil && b.Status == change.BulkFinished
	}, 2*time.Minute, 200*time.Millisecond, "the bulk change written by the failed start ran")
}

// An idempotency key used again with a different file is refused, and
// nothing is written; with the same file it returns the bulk change.
func TestIdempotencyKeyReusedWithAnotherFileIsRefused(t *testing.T) {
	ds := devices(t, "8914811102", "active", 2)
	at := time.Now().Add(time.Hour).Format(time.RFC3339)
	fa := file(t, "a.csv", "iccid,operation\n"+ds[0].ICCID+",suspend\n")
	fb := file(t, "b.csv", "iccid,operation\n"+ds[1].ICCID+",suspend\n")
	before := countBulkChanges(t)

	code, out, errOut := starter(t, "submit", "--file", fa, "--idempotency-key", "TICKET-9001", "--not-before", at)
	require.Equal(t, 0, code, errOut)
	id := bulkID(t, out)
	code, out, errOut = starter(t, "submit", "--file", fb, "--idempotency-key", "TICKET-9001", "--not-before", at)
	require.Equal(t, 2, code, out)
	require.Contains(t, errOut, `idempotency key "TICKET-9001" was already used for bulk change `+id)
	require.Contains(t, errOut, "with a different file or account; nothing was submitted")
	require.Equal(t, before+1, countBulkChanges(t), "nothing written for the second file")

	code, out, errOut = starter(t, "submit", "--file", fa, "--idempotency-key", "TICKET-9001", "--not-before", at)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "bulk change "+id+" already exists")
	code, _, errOut = starter(t, "cancel", id, "--reason", "test over")
	require.Equal(t, 0, code, errOut)
}

// A bulk change whose workflow never started (still PENDING long after it
// was written) does not hold its lines' daily limit at submission; one
// written moments ago, whose workflow may be starting, does.
func TestDailyLimitIgnoresBulkChangesThatNeverStarted(t *testing.T) {
	line := devices(t, "8914811103", "active", 1)[0]
	ctx := context.Background()
	insert := func(id, status, createdAgo, dcStatus, submittedAgo string) {
		_, err := st.Store.Pool.Exec(ctx, `INSERT INTO bulk_changes (id, account_name, total, batches, workflow_id, status, created_at)
			VALUES ($1::uuid, 'acct', 1, 1, 'bulk-change/' || $1::text, $2, now() - $3::interval)`, id, status, createdAgo)
		require.NoError(t, err)
		_, err = st.Store.Pool.Exec(ctx, `INSERT INTO device_changes (bulk_change_id, seq, row_number, iccid, operation, batch_no,
			status, submitted_at) VALUES ($1, 1, 2, $2, 'suspend', 1, $3, now() - nullif($4, '')::interval)`,
			id, line.ICCID, dcStatus, submittedAgo)
		require.NoError(t, err)
	}
	// Four state changes accepted in the last hours: one left of five.
	for i := 1; i <= 4; i++ {
		insert(fmt.Sprintf("22222222-2222-2222-2222-00000000000%d", i), "FINISHED", "3 hours", "PROCESSED", "2 hours")
	}
	// A submission whose workflow start failed an hour ago.
	insert("22222222-2222-2222-2222-000000000005", "PENDING", "1 hour", "PENDING", "")
	f := file(t, "orphan.csv", "iccid,operation\n"+line.ICCID+",suspend\n")

	code, out, errOut := starter(t, "submit", "--file", f, "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "valid: 1 devices, suspend 1")
	require.NotContains(t, out, "22222222-2222-2222-2222-000000000005", "not an unfinished bulk change either")

	// Written a minute ago: its workflow may be starting, so it counts.
	insert("22222222-2222-2222-2222-000000000006", "PENDING", "1 minute", "PENDING", "")
	code, _, errOut = starter(t, "submit", "--file", f, "--dry-run")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "4 state changes in the last 24 hours and 1 waiting in other bulk changes")
}

// An operator's name and reason are capped and printable only: the
// starter refuses them before sending anything, and the bulk change's
// validator refuses them from any other client; nothing is recorded.
func TestOperatorTextIsCappedAndPrintable(t *testing.T) {
	ds := devices(t, "8914811104", "active", 1)
	at := time.Now().Add(time.Hour).Format(time.RFC3339)
	code, out, errOut := starter(t, "submit", "--file", file(t, "text.csv", "iccid,operation\n"+ds[0].ICCID+",suspend\n"),
		"--not-before", at, "--as", "alice")
	require.Equal(t, 0, code, errOut)
	id := bulkID(t, out)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		b, err := st.Store.GetBulkChange(ctx, id)
		return err == nil && b.Status == change.BulkScheduled
	}, time.Minute, 200*time.Millisecond)

	code, _, errOut = starter(t, "cancel", id, "--as", "bob", "--reason", "wrong \u202eelif")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `"reason" has a character that is not printable (U+202E)`)
	code, _, errOut = starter(t, "cancel", id, "--as", strings.Repeat("b", 201))
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `"by" is 201 characters long: at most 200`)

	// Another client, past the starter: the bulk change's validator.
	for _, req := range []api.OperatorRequest{
		{By: "bob", Reason: "line one\nline two"},
		{By: "bob", Reason: strings.Repeat("x", 1001)},
		{By: "b\u200bob"},
	} {
		h, err := st.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: api.BulkChangeWorkflowID(id),
			UpdateName: api.CancelUpdate, Args: []any{req}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		require.Error(t, err, "%q", req)
		require.Regexp(t, `not printable|at most 1000`, err.Error())
	}
	var n int
	require.NoError(t, st.Store.Pool.QueryRow(ctx,
		`SELECT count(*) FROM m2m_log WHERE bulk_change_id = $1 AND service = 'operator'`, id).Scan(&n))
	require.Zero(t, n, "nothing recorded")
	b, err := st.Store.GetBulkChange(ctx, id)
	require.NoError(t, err)
	require.EqualValues(t, change.BulkScheduled, b.Status, "nothing changed")

	code, _, errOut = starter(t, "cancel", id, "--as", "bob", "--reason", "test over")
	require.Equal(t, 0, code, errOut)
}
