package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	billingRetryPage   = 100
	billingRetryPerRun = 300
)

// BillingRetry runs the owed Rev.io step again for the device changes of a
// bulk change: those whose step failed, and those stranded in PENDING (their
// device's workflow closed without ending the step). The step is the one
// the change owes: the service line after an activation, its disconnection
// after a deactivation. The changes themselves are not touched; the service
// step looks for an existing service before it creates one, so a retry never
// makes a second service line.
func BillingRetry(ctx workflow.Context, in api.BillingRetryInput) (*api.BillingRetryResult, error) {
	res := &api.BillingRetryResult{}
	if in.SoFar != nil {
		res = in.SoFar
	}
	// Version 1 lists failed and stranded steps with a regular activity
	// (it asks Temporal whether each pending step's workflow still runs)
	// and runs the step each change owes; before, only failed creations
	// were listed, locally.
	if workflow.GetVersion(ctx, versionOwedBillingSteps, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return legacyBillingRetry(ctx, in, res)
	}
	after := in.AfterID
	for done := 0; ; {
		if done >= billingRetryPerRun {
			return nil, workflow.NewContinueAsNewError(ctx, BillingRetry, api.BillingRetryInput{
				BulkChangeID: in.BulkChangeID, Tenant: in.Tenant, StrandedOnly: in.StrandedOnly, AfterID: after,
				SoFar: res})
		}
		var page activities.OwedBillingPage
		list := activities.ListOwedBillingInput{BulkChangeID: in.BulkChangeID, AfterID: after, Limit: billingRetryPage,
			StrandedOnly: in.StrandedOnly}
		if err := workflow.ExecuteActivity(withDB(ctx), a.ListOwedBilling, list).Get(ctx, &page); err != nil {
			return nil, err
		}
		res.StillRunning += page.Busy
		for _, o := range page.Owed {
			done++
			runOwedStep(ctx, in.BulkChangeID, o, res)
		}
		after = page.Next
		if page.Done {
			return res, nil
		}
	}
}

// runOwedStep runs one change's Rev.io step and records a failure on it.
func runOwedStep(ctx workflow.Context, bulkID string, o activities.OwedBilling, res *api.BillingRetryResult) {
	res.Attempted++
	if o.Stranded {
		res.Stranded++
	}
	in := activities.BillingInput{BulkChangeID: bulkID, DeviceChangeID: o.DeviceChangeID}
	var step workflow.Future
	if o.Operation == change.Deactivate {
		step = workflow.ExecuteActivity(withRevio(ctx, 0), a.DisconnectBilling, in)
	} else {
		step = workflow.ExecuteActivity(withRevio(ctx, 0), a.CreateBillingService, in)
	}
	err := step.Get(ctx, nil)
	if err == nil {
		if o.Operation == change.Deactivate {
			res.Disconnected++
		} else {
			res.Created++
		}
		return
	}
	res.Failed++
	rec := activities.RecordBillingFailureInput{
		DeviceChangeID: o.DeviceChangeID,
		Message:        rootMessage(err),
		Code:           errorType(err),
	}
	// A failure to record the failure leaves the step ERROR or PENDING as
	// it was: a later retry takes it again.
	_ = workflow.ExecuteActivity(withDB(ctx), a.RecordBillingFailure, rec).Get(ctx, nil)
}

// legacyBillingRetry is the code of version 0, kept for the billing
// retries that were running when version 1 was deployed.
func legacyBillingRetry(
	ctx workflow.Context,
	in api.BillingRetryInput,
	res *api.BillingRetryResult,
) (*api.BillingRetryResult, error) {
	after := in.AfterID
	for done := 0; ; {
		if done >= billingRetryPerRun {
			return nil, workflow.NewContinueAsNewError(ctx, BillingRetry,
				api.BillingRetryInput{BulkChangeID: in.BulkChangeID, AfterID: after, SoFar: res})
		}
		var ids []int64
		page := activities.ListBillingFailuresInput{
			BulkChangeID: in.BulkChangeID,
			AfterID:      after,
			Limit:        billingRetryPage,
		}
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
			step := activities.BillingInput{BulkChangeID: in.BulkChangeID, DeviceChangeID: id}
			if err := workflow.ExecuteActivity(withRevio(ctx, 0), a.CreateBillingService, step).Get(ctx, nil); err != nil {
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
