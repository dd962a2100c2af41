package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	billingRetryPage   = 100
	billingRetryPerRun = 300
)

// BillingRetry runs the Rev.io step again for the device changes of a bulk
// change whose billing failed. The activations themselves are not touched;
// the step looks for an existing service before it creates one, so a retry
// never makes a second service line.
func BillingRetry(ctx workflow.Context, in api.BillingRetryInput) (*api.BillingRetryResult, error) {
	res := &api.BillingRetryResult{}
	if in.SoFar != nil {
		res = in.SoFar
	}
	after := in.AfterID
	for done := 0; ; {
		if done >= billingRetryPerRun {
			return nil, workflow.NewContinueAsNewError(ctx, BillingRetry,
				api.BillingRetryInput{BulkChangeID: in.BulkChangeID, AfterID: after, SoFar: res})
		}
		var ids []int64
		page := activities.ListBillingFailuresInput{BulkChangeID: in.BulkChangeID, AfterID: after, Limit: billingRetryPage}
		if err := workflow.ExecuteLocalActivity(withLocalDB(ctx), a.ListBillingFailures, page).Get(ctx, &ids); err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return res, nil
		}
		for _, id := range ids {
			after = id
			done++
			res.Attempted++
			bin := activities.BillingInput{BulkChangeID: in.BulkChangeID, DeviceChangeID: id}
			if err := workflow.ExecuteActivity(withRevio(ctx), a.CreateBillingService, bin).Get(ctx, nil); err != nil {
				res.Failed++
				rec := activities.RecordBillingFailureInput{DeviceChangeID: id, Message: rootMessage(err)}
				if err := workflow.ExecuteActivity(withDB(ctx), a.RecordBillingFailure, rec).Get(ctx, nil); err != nil {
					return nil, err
				}
				continue
			}
			res.Created++
		}
	}
}
