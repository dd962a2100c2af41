package submission_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

func TestApprovalRule(t *testing.T) {
	t.Parallel()
	require.Nil(t, submission.NewApprovalRule(nil, 1, time.Hour), "no operation needs approval: no rule")
	require.Nil(t, submission.NewApprovalRule([]string{}, 1, time.Hour))
	var none *submission.ApprovalRule
	require.Nil(t, none.ForCounts(map[string]int{"deactivate": 1000}), "a nil rule asks for nothing")

	rule := submission.NewApprovalRule([]string{"deactivate", "suspend"}, 10, 72*time.Hour)
	for _, tc := range []struct {
		name   string
		counts map[string]int
		reason string // "" for no approval
	}{
		{"none of the operations", map[string]int{"activate": 500, "restore": 20}, ""},
		{"below the minimum", map[string]int{"deactivate": 9, "suspend": 9}, ""},
		{"at the minimum", map[string]int{"deactivate": 10}, "10 deactivate"},
		{"both, in the rule's order", map[string]int{"suspend": 11, "deactivate": 12, "activate": 1}, "12 deactivate, 11 suspend"},
		{"only the one at the minimum", map[string]int{"suspend": 10, "deactivate": 3}, "10 suspend"},
		{"nothing at all", map[string]int{}, ""},
	} {
		got := rule.ForCounts(tc.counts)
		if tc.reason == "" {
			require.Nil(t, got, tc.name)
			continue
		}
		require.Equal(t, &api.Approval{Reason: tc.reason, ExpiresAfter: 72 * time.Hour}, got, tc.name)
	}

	// A minimum of 0 or 1: any device of the operation.
	anyDevice := submission.NewApprovalRule([]string{"deactivate"}, 0, time.Hour)
	require.Nil(t, anyDevice.ForCounts(map[string]int{"deactivate": 0}))
	require.NotNil(t, anyDevice.ForCounts(map[string]int{"deactivate": 1}))
	require.Equal(t, anyDevice.ForCounts(map[string]int{"deactivate": 4}),
		anyDevice.For(&submission.BatchPlan{ByOperation: map[string]int{"deactivate": 4}}))
}

// The submitter may ask for more approval than the worker's rule, never
// less; when the rule applies, its reason and expiry are what counts.
func TestStricterApproval(t *testing.T) {
	t.Parallel()
	asked := &api.Approval{Reason: "asked by the submitter", ExpiresAfter: time.Hour}
	rule := &api.Approval{Reason: "5 deactivate", ExpiresAfter: 72 * time.Hour}
	for _, tc := range []struct {
		name                string
		requested, required *api.Approval
		want                *api.Approval
	}{
		{"neither", nil, nil, nil},
		{"only asked", asked, nil, asked},
		{"only the rule", nil, rule, rule},
		{"both: the rule's", asked, rule, rule},
	} {
		got := submission.StricterApproval(tc.requested, tc.required)
		require.Equal(t, tc.want, got, tc.name)
		if got != nil && tc.required != nil {
			require.NotSame(t, tc.required, got, "%s: a copy, so the rule cannot be changed through it", tc.name)
		}
	}
}

func TestMaxBatchSize(t *testing.T) {
	t.Parallel()
	require.Equal(t, thingspace.MaxDevicesPerAdd, submission.MaxBatchSize(change.Inventory))
	for _, op := range []change.Operation{change.Activate, change.Suspend, change.Restore,
		change.Deactivate} {
		require.Equal(t, thingspace.MaxDevicesPerRequest, submission.MaxBatchSize(op), op)
	}
}
