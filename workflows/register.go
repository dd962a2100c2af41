package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Registry is what workflows are registered on: a worker, or a replayer.
type Registry interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
}

// Register registers the workflows under their public names (api.*Type),
// on a worker or on a replayer checking recorded histories.
func Register(r Registry) {
	r.RegisterWorkflowWithOptions(BulkChange, workflow.RegisterOptions{Name: api.BulkChangeWorkflowType})
	r.RegisterWorkflowWithOptions(BulkChangeShard, workflow.RegisterOptions{Name: api.BulkChangeShardWorkflowType})
	r.RegisterWorkflowWithOptions(DeviceChange, workflow.RegisterOptions{Name: api.DeviceChangeWorkflowType})
	r.RegisterWorkflowWithOptions(AccountPoller, workflow.RegisterOptions{Name: api.AccountPollerWorkflowType})
	r.RegisterWorkflowWithOptions(BillingRetry, workflow.RegisterOptions{Name: api.BillingRetryWorkflowType})
	r.RegisterWorkflowWithOptions(SubmitBulkChange, workflow.RegisterOptions{Name: api.SubmitBulkChangeWorkflowType})
	notify.RegisterWorkflow(r)
}
