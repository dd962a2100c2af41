package main

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// resumeFailed takes over a bulk change whose parent workflow ended without
// finishing it (failed, terminated, timed out): a new run of the same
// workflow ID reads where the bulk change stands from PostgreSQL and carries
// on. Nothing already sent is sent again (the requests are idempotent). The
// same from the Temporal CLI:
//
//	temporal workflow start --task-queue thingspace-bulk --type BulkChange \
//	  --workflow-id bulk-change/ID --id-reuse-policy AllowDuplicateFailedOnly \
//	  --input '{"bulkChangeId":"ID","recover":true}'
func (c *cli) resumeFailed(ctx context.Context, t *target) error {
	id, b := t.id, t.b
	if b.Status == change.BulkFinished || b.Status == change.BulkFailed {
		return &exitError{1, fmt.Errorf("bulk change %s has ended (%s): nothing to resume", id, b.Status)}
	}
	tc, err := c.temporal(ctx)
	if err != nil {
		return err
	}
	d, err := tc.DescribeWorkflow(ctx, b.WorkflowID, "")
	if err != nil {
		return fmt.Errorf("describe %s: %w", b.WorkflowID, err)
	}
	switch st := d.RawResponse.GetWorkflowExecutionInfo().GetStatus(); st {
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED,
		enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
	default:
		return &exitError{
			1,
			fmt.Errorf("workflow %s is %s, not ended by a failure: nothing to resume", b.WorkflowID, st),
		}
	}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    b.WorkflowID,
		TaskQueue:             api.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
	}, api.BulkChangeWorkflowType, api.BulkChangeInput{BulkChangeID: id, Tenant: b.Tenant, Recover: true})
	if err != nil {
		return fmt.Errorf("resume %s: %w", b.WorkflowID, err)
	}
	fmt.Fprintf(c.out, "bulk change %s resumed: workflow %s, run %s\n", id, b.WorkflowID, run.GetRunID())
	if !t.wait {
		return nil
	}
	return c.wait(ctx, id, b.WorkflowID, false)
}
