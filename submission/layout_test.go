package submission_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/submission"
)

// The same rows are the same submission whatever the file's layout, so
// that the same devices submitted again after a failed start find the bulk
// change already written. v1 hashed each row's number (a CSV row's line,
// blank lines counted; a JSON element's index): the same devices as JSON,
// or as CSV with a blank line, wrote a second bulk change, or were refused
// under one key as "a different file".
func TestSameRowsInAnotherLayoutAreTheSameSubmission(t *testing.T) {
	t.Parallel()
	a, b := dbtest.NewICCID(), dbtest.NewICCID()
	csv := "iccid,operation\n" + a + ",suspend\n" + b + ",restore\n"
	for name, other := range map[string]struct{ data, format string }{
		"JSON":                {fmt.Sprintf(`[{"iccid":%q,"operation":"suspend"},{"iccid":%q,"operation":"restore"}]`, a, b), "json"},
		"CSV with blank line": {"iccid,operation\n\n" + a + ",suspend\n" + b + ",restore\n", "csv"},
	} {
		require.Equal(t, submission.ContentHash(account, parse(t, csv, "csv")),
			submission.ContentHash(account, parse(t, other.data, other.format)), name)
	}

	sub, st, _ := newSubmitter(t)
	ctx := testCtx(t)
	first, err := sub.Submit(ctx, csvRequest([]byte(csv)))
	require.NoError(t, err)
	r := csvRequest(nil)
	r.Data, r.Format = []byte(fmt.Sprintf(`[{"iccid":%q,"operation":"suspend"},{"iccid":%q,"operation":"restore"}]`, a, b)),
		"json"
	again, err := sub.Submit(ctx, r)
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID, "the same devices as JSON: the bulk change already written")
	require.Equal(t, 1, bulkCount(t, st))
}

// A file submitted before v2, without an operator's key, recorded its v1
// hash and content key: submitted again after the upgrade it finds that
// bulk change instead of writing a second one.
func TestSubmissionRecordedBeforeV2IsFound(t *testing.T) {
	t.Parallel()
	csv := "iccid,operation\n" + dbtest.NewICCID() + ",suspend\n"
	sub, st, _ := newSubmitter(t)
	ctx := testCtx(t)
	first, err := sub.Submit(ctx, csvRequest([]byte(csv)))
	require.NoError(t, err)
	legacy := submission.LegacyContentHash(account, parse(t, csv, "csv"))
	require.NotEqual(t, first.BulkChange.ContentHash, legacy)
	_, err = st.Pool.Exec(ctx, `UPDATE bulk_changes SET idempotency_key = $2, content_hash = $3 WHERE id = $1`,
		first.ID, submission.ContentKey(legacy), legacy)
	require.NoError(t, err)

	again, err := sub.Submit(ctx, csvRequest([]byte(csv)))
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, 1, bulkCount(t, st))
}
