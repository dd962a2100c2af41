package submission_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// temporalClient is a client of the Temporal CLI's dev server, started for
// the test with the product's search attributes, as harness/stack starts it;
// or of the server at TSBULK_TEST_TEMPORAL_ADDRESS.
func temporalClient(t *testing.T) client.Client {
	t.Helper()
	logger := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if addr := os.Getenv("TSBULK_TEST_TEMPORAL_ADDRESS"); addr != "" {
		c, err := client.DialContext(ctx, client.Options{HostPort: addr, Namespace: "default", Logger: logger})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		return c
	}
	cli, err := stack.TemporalCLI()
	require.NoError(t, err)
	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{Namespace: "default", Logger: logger},
		LogLevel:      "error",
		ExtraArgs: append([]string{"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true"},
			api.DevServerSearchAttributeArgs()...),
		Stdout: io.Discard,
		Stderr: io.Discard,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dev.Stop() })
	return dev.Client()
}

// On a real Temporal server (no worker: the workflow only has to start):
// the start options are accepted as they are, a second submission finds
// the running workflow, and a bulk change whose workflow ended is never
// run again.
func TestSubmitStartsOneWorkflowOnTemporal(t *testing.T) {
	t.Parallel()
	tc := temporalClient(t)
	sub := &submission.Submitter{Store: dbtest.New(t), Temporal: tc}
	ctx := testCtx(t)

	data := csvFile("iccid,operation", dbtest.NewICCID()+",suspend", dbtest.NewICCID()+",deactivate")
	first, err := sub.Submit(ctx, csvRequest(data))
	require.NoError(t, err)
	require.True(t, first.Created)
	require.NotEmpty(t, first.RunID)
	t.Cleanup(func() {
		_ = tc.TerminateWorkflow(context.Background(), first.WorkflowID, "", "test over")
	})

	desc, err := tc.DescribeWorkflow(ctx, first.WorkflowID, "")
	require.NoError(t, err)
	require.Equal(t, api.BulkChangeWorkflowType, desc.WorkflowType.Name)
	require.Equal(t, api.TaskQueue, desc.TaskQueueName)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.Status)
	id, _ := desc.TypedSearchAttributes.GetKeyword(api.BulkChangeIDAttr)
	require.Equal(t, first.ID, id)
	acct, _ := desc.TypedSearchAttributes.GetKeyword(api.ThingSpaceAccountAttr)
	require.Equal(t, account, acct)
	ops, _ := desc.TypedSearchAttributes.GetKeywordList(api.OperationAttr)
	require.Equal(t, []string{"deactivate", "suspend"}, ops)
	// The Web UI shows what it is, not only bulk-change/<uuid>.
	summary, err := desc.GetStaticSummary()
	require.NoError(t, err)
	require.Equal(t, "deactivate 1, suspend 1 devices · account "+account+" · submitted by "+first.BulkChange.SubmittedBy, summary)
	details, err := desc.GetStaticDetails()
	require.NoError(t, err)
	require.Contains(t, details, "- bulk change `"+first.ID+"`\n- tenant default\n")

	again, err := sub.Submit(ctx, csvRequest(data))
	require.NoError(t, err)
	require.False(t, again.Created)
	require.Equal(t, first.RunID, again.RunID, "the running workflow, not a second one")

	require.NoError(t, tc.TerminateWorkflow(ctx, first.WorkflowID, first.RunID, "ended"))
	ended, err := sub.Submit(ctx, csvRequest(data))
	require.NoError(t, err, "a workflow that ran to its end is not an error")
	// The SDK answers a start refused by REJECT_DUPLICATE with the run that
	// ended (WorkflowExecutionErrorWhenAlreadyStarted is not set).
	require.Equal(t, first.RunID, ended.RunID, "the run that ended; no new one")
	desc, err = tc.DescribeWorkflow(ctx, first.WorkflowID, "")
	require.NoError(t, err)
	require.Equal(t, first.RunID, desc.WorkflowExecution.RunID)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, desc.Status)
}
