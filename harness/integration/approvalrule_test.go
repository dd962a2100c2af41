package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// The four-eyes rule is the worker's: a submitter whose own configuration
// turns approval off (TSBULK_APPROVAL_OPERATIONS=none gives `starter
// submit` no rule, as here) still has its deactivations wait
// AWAITING_APPROVAL, nothing sent; "Alice" cannot approve alice's change;
// the approval's audit entry holds the approver's Temporal client identity
// beside the name typed.
func TestApprovalRuleIsTheWorkers(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 200 * time.Millisecond, Seed: 47},
		Config: func(c *config.Config) {
			c.Approval = config.Approval{Operations: []string{"deactivate"}, MinDevices: 1, ExpiresAfter: time.Hour}
		},
	})
	devs := tssim.GenerateDevices(3, "8914800811", "active")
	require.NoError(t, s.TS.Seed(devs...))
	var rows []row
	for _, d := range devs {
		rows = append(rows, row{"iccid": d.ICCID, "operation": "deactivate"})
	}
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	res, err := sub.Submit(context.Background(), submission.Request{
		File: writeCSV(t, []string{"iccid", "operation"}, rows), Account: s.Config.ThingSpace.Account,
		BatchSize: 100, Options: options(s), SubmittedBy: "alice",
		Approval: nil, // the submitting side's rule: none
	})
	require.NoError(t, err)

	waitForStatus(t, s, res.ID, change.BulkAwaitingApproval)
	p, ok := progress(s, res.WorkflowID)
	require.True(t, ok)
	require.Equal(t, change.BulkAwaitingApproval, p.Status)
	require.Contains(t, p.Waiting, "3 deactivate", "the worker's rule, with its reason")
	for _, by := range []string{"Alice", " ALICE ", "ａｌｉｃｅ"} {
		_, err := operatorUpdate(t, s, res.WorkflowID, api.ApproveUpdate, api.OperatorRequest{By: by})
		require.ErrorContains(t, err, "alice submitted this bulk change", "%q", by)
	}
	time.Sleep(time.Second)
	require.Zero(t, stateChangeRequests(s), "nothing sent before the approval")

	// Bob approves from a client of his own, with its identity.
	bob, err := client.NewClientFromExisting(s.Client, client.Options{Identity: "bob@ops-laptop-7"})
	require.NoError(t, err)
	defer bob.Close()
	ctx, cancel := context.WithTimeout(context.Background(), updateTimeout)
	defer cancel()
	h, err := bob.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: res.WorkflowID,
		UpdateName: api.ApproveUpdate, Args: []any{api.OperatorRequest{By: "bob", Reason: "ticket 77"}},
		WaitForStage: client.WorkflowUpdateStageCompleted})
	require.NoError(t, err)
	require.NoError(t, h.Get(ctx, nil))
	out := waitBulk(t, s, res, 2*time.Minute)
	require.Equal(t, 3, out.Processed)

	var by, identity string
	require.NoError(t, s.Store.Pool.QueryRow(ctx, `SELECT request_body::jsonb->>'by', request_body::jsonb->>'identity'
		FROM m2m_log WHERE bulk_change_id = $1 AND service = 'operator' AND operation = 'approve'`, res.ID).
		Scan(&by, &identity))
	require.Equal(t, "bob", by)
	require.Equal(t, "bob@ops-laptop-7", identity)
	require.Contains(t, string(bulkChange(t, s, res.ID).Options), `"approval"`,
		"the approval it ran under is on record with the bulk change")
}
