package submission_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/submission"
)

// ContentHash promises the same hash for the same rows "whatever the
// file's layout (CSV or JSON, column order, BOM)", so that the same devices
// submitted again after a failed start find the bulk change already written.
// It hashes every field of changefile.DeviceRequest, Row included: a CSV
// row's Row is its line (header = 1, blank lines counted), a JSON element's
// its 1-based index. The same devices as JSON, or as CSV with a blank line,
// hash differently: without a key they write a second bulk change, and under
// one key they are refused as "a different file".
func TestSameRowsInAnotherLayoutAreTheSameSubmission(t *testing.T) {
	t.Skip("known defect, reported (issue 19 item 7): ContentHash includes DeviceRequest.Row, " +
		"which differs between CSV and JSON and with blank lines; remove this Skip once decided")
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
