package submission_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/submission"
)

func TestSummaryNamesWhatAnOperatorLooksFor(t *testing.T) {
	b := &db.BulkChange{AccountName: "0000123456-00001", Tenant: "default", SubmittedBy: "alice"}
	require.Equal(t, "suspend 10,000 devices · account 0000123456-00001 · submitted by alice",
		submission.Summary(b, map[string]int{"suspend": 10000}))
	require.Equal(t, "activate 1 device · account 0000123456-00001 · submitted by alice",
		submission.Summary(b, map[string]int{"activate": 1}))
	b.Tenant, b.SubmittedBy = "acme", ""
	require.Equal(t, "activate 2, deactivate 1,234,567 devices · account 0000123456-00001 · tenant acme",
		submission.Summary(b, map[string]int{"deactivate": 1234567, "activate": 2}))
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", -4500: "-4,500"} {
		require.Equal(t, want, submission.Thousands(n))
	}
}
