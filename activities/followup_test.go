package activities_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/revio"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// testWorkflowID is the workflow the test activity environment runs
// activities for.
const testWorkflowID = "default-test-workflow-id"

func (f *fakeTemporal) DescribeWorkflow(
	_ context.Context,
	workflowID, _ string,
) (*client.WorkflowExecutionDescription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.described[workflowID]
	if !ok {
		return nil, serviceerror.NewNotFound("workflow not found for ID: " + workflowID)
	}
	return &client.WorkflowExecutionDescription{RawResponse: &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: &workflow.WorkflowExecutionInfo{Status: st},
	}}, nil
}

func (f *fakeTemporal) describeAs(workflowID string, st enumspb.WorkflowExecutionStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.described[workflowID] = st
}

// runsAsTestWorkflow records the test environment's workflow as the bulk
// change's parent, as submission records bulk-change/<id>.
func (h *harness) runsAsTestWorkflow(bulk string) {
	h.t.Helper()
	h.exec(`UPDATE bulk_changes SET workflow_id = $2 WHERE id = $1`, bulk, testWorkflowID)
}

// A parent started by hand under another workflow ID is refused: its
// children would report to the recorded one.
func TestStartBulkChangeRefusesAnotherWorkflowID(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, _ := h.newBulk(account, changes("suspend", 1, devices(1, "8914800401", "active")...)...)

	ae := appError(t, h.run(nil, h.acts.StartBulkChange, bulk))
	require.True(t, ae.NonRetryable())
	require.Equal(t, activities.ErrTypeNotRunnable, ae.Type())
	require.Contains(t, ae.Error(), "runs as workflow bulk-change/"+bulk)
	b, err := h.store.GetBulkChange(ctx(t), bulk)
	require.NoError(t, err)
	require.Equal(t, change.BulkPending, b.Status, "nothing changed")
}

// A recovered bulk change learns where it stood from its device changes.
func TestRecoverBulkChangeReadsWhereItStood(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	devs := devices(5, "8914800402", "active")
	cs := append(changes("suspend", 1, devs[0:3]...), changes("suspend", 2, devs[3:5]...)...)
	bulk, ids := h.newBulk(account, cs...)
	h.runsAsTestWorkflow(bulk)
	h.exec(`UPDATE device_changes SET status = 'SUBMITTED' WHERE batch_no = 1`)
	h.complete(
		activities.CompleteInput{DeviceChangeID: ids[devs[0].ICCID], Operation: "suspend", Status: change.Processed,
			Outcome: "suspended", FinalState: "suspended"},
	)
	h.complete(activities.CompleteInput{DeviceChangeID: ids[devs[1].ICCID], Operation: "suspend", Status: change.Failed,
		ErrorCode: "X"})

	var rec activities.RecoveredBulk
	require.NoError(t, h.run(&rec, h.acts.RecoverBulkChange, bulk))
	require.Equal(t, 2, rec.NextBatch, "batch 1 was sent, batch 2 was not")
	require.Equal(t, 3, rec.DevicesSent)
	require.Equal(t, 1, rec.Unfinished)
	require.Equal(t, 1, rec.Processed)
	require.Equal(t, map[change.Code]int{"X": 1}, rec.ErrorsByCode)
	require.Equal(t, 2, rec.Plan.Batches)

	var page []activities.DeviceToStart
	require.NoError(
		t,
		h.run(&page, h.acts.ListDevicesToStart, activities.ListDevicesInput{BulkChangeID: bulk, MaxBatch: 1,
			Limit: 10, UnfinishedBelowBatch: rec.NextBatch}),
	)
	require.Len(t, page, 1, "only the device change without an outcome gets a child again")
	require.Equal(t, devs[2].ICCID, page[0].ICCID)
}

// Device workflows that ended without recording an outcome are found; their
// change is ended ERROR with how the workflow ended, and one that had its
// outcome keeps it.
func TestCheckDeviceWorkflows(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	devs := devices(4, "8914800403", "active")
	bulk, ids := h.newBulk(account, changes("suspend", 1, devs...)...)
	h.exec(`UPDATE device_changes SET status = 'SUBMITTED'`)
	h.temporal.describeAs(api.DeviceChangeWorkflowID(bulk, devs[0].ICCID), enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING)
	h.temporal.describeAs(api.DeviceChangeWorkflowID(bulk, devs[1].ICCID), enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED)
	h.temporal.describeAs(api.DeviceChangeWorkflowID(bulk, devs[2].ICCID), enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED)
	h.complete(
		activities.CompleteInput{DeviceChangeID: ids[devs[2].ICCID], Operation: "suspend", Status: change.Processed,
			Outcome: "suspended", FinalState: "suspended"},
	)
	// devs[3]: no workflow at all.
	in := activities.CheckDeviceWorkflowsInput{BulkChangeID: bulk}
	for _, d := range devs {
		in.InFlight = append(in.InFlight, api.InFlight{DeviceChangeID: ids[d.ICCID], ICCID: d.ICCID})
	}
	// A device change of another bulk change, named by a workflow that is
	// not this database's (its ids collide): left alone.
	others := devices(1, "8914800404", "active")
	other, otherIDs := h.newBulk(account, changes("suspend", 1, others...)...)
	h.exec(`UPDATE device_changes SET status = 'SUBMITTED' WHERE bulk_change_id = $1`, other)
	in.InFlight = append(in.InFlight, api.InFlight{DeviceChangeID: otherIDs[others[0].ICCID], ICCID: "89148004049999999990"})

	var ended []api.DeviceResult
	require.NoError(t, h.run(&ended, h.acts.CheckDeviceWorkflows, in))

	require.Len(t, ended, 3, "the running one is left alone")
	byICCID := map[string]api.DeviceResult{}
	for _, r := range ended {
		byICCID[r.ICCID] = r
	}
	require.Equal(t, change.DeviceWorkflowEnded, byICCID[devs[1].ICCID].ErrorCode)
	require.Contains(t, h.change(ids[devs[1].ICCID]).ErrorMessage, "terminated")
	require.Equal(t, change.Processed, byICCID[devs[2].ICCID].Status, "an outcome already recorded is kept")
	require.Equal(t, change.DeviceWorkflowEnded, byICCID[devs[3].ICCID].ErrorCode)
	require.Equal(t, change.Sent, h.change(ids[devs[0].ICCID]).Status)
	require.Equal(t, change.Sent, h.change(otherIDs[others[0].ICCID]).Status, "another bulk change's is left alone")
	// Each ended change has its audit result entry.
	results := 0
	for _, r := range h.audit(bulk) {
		if r.DedupeKey != "" {
			results++
		}
	}
	require.Equal(t, 3, results)
}

// A pending Rev.io step belongs to its device's workflow while that runs;
// once the workflow has closed it is stranded and a billing retry takes it,
// beside the failed steps.
func TestListOwedBillingTakesOnlyStrandedPendingSteps(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	devs := devices(4, "8914800404", "active")
	cs := append(changes("activate", 1, devs[0:3]...), changes("deactivate", 1, devs[3])...)
	bulk, ids := h.newBulk(account, cs...)
	h.exec(`UPDATE device_changes SET status = 'PROCESSED', billing_status = 'PENDING' WHERE iccid = ANY($1)`,
		[]string{devs[0].ICCID, devs[1].ICCID})
	h.exec(`UPDATE device_changes SET status = 'PROCESSED', billing_status = 'ERROR' WHERE iccid = ANY($1)`,
		[]string{devs[2].ICCID, devs[3].ICCID})
	h.temporal.describeAs(api.DeviceChangeWorkflowID(bulk, devs[0].ICCID), enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING)
	h.temporal.describeAs(api.DeviceChangeWorkflowID(bulk, devs[1].ICCID), enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED)

	var page activities.OwedBillingPage
	require.NoError(
		t,
		h.run(&page, h.acts.ListOwedBilling, activities.ListOwedBillingInput{BulkChangeID: bulk, Limit: 10}),
	)
	require.True(t, page.Done)
	require.Equal(t, 1, page.Busy, "the step of the running workflow is left to it")
	require.Equal(t, []activities.OwedBilling{
		{DeviceChangeID: ids[devs[1].ICCID], Operation: "activate", Stranded: true},
		{DeviceChangeID: ids[devs[2].ICCID], Operation: "activate"},
		{DeviceChangeID: ids[devs[3].ICCID], Operation: "deactivate"},
	}, page.Owed)

	require.NoError(
		t,
		h.run(&page, h.acts.ListOwedBilling, activities.ListOwedBillingInput{BulkChangeID: bulk, Limit: 10,
			StrandedOnly: true}),
	)
	require.Equal(
		t,
		[]activities.OwedBilling{{DeviceChangeID: ids[devs[1].ICCID], Operation: "activate", Stranded: true}},
		page.Owed,
	)
}

// A device that was already active most likely has its Rev.io service:
// it is found by number (or ICCID) and recorded EXISTING, not created again.
func TestCreateBillingServiceFindsTheServiceOfAnAlreadyActiveDevice(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, dev := h.activated("3125550401")
	h.setOutcome(id, change.AlreadyActive)
	existing, err := h.acts.Revio.CreateService(ctx(t), revio.CreateServiceRequest{CustomerID: 777, ProviderID: 9, ServiceTypeID: 7,
		Number: "3125550401", Number2: dev.ICCID})
	require.NoError(t, err)
	posts := h.revioCalls("POST /v1/Services")

	res := h.mustCreateBilling(bulk, id)
	require.Equal(t, existing, res.ServiceID)
	require.False(t, res.Created)
	require.Equal(t, posts, h.revioCalls("POST /v1/Services"), "no second service line")
	require.Len(t, h.rsim.Services(), 1)
	require.Equal(t, change.BillingExisting, h.change(id).BillingStatus)
	svc, _ := h.foundBy(id)
	require.Equal(t, "existing", svc)
}

// Without a service to find, an already-active device gets its service
// created as any activation does.
func TestCreateBillingServiceCreatesForAnAlreadyActiveDeviceWithoutOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, _ := h.activated("3125550402")
	h.setOutcome(id, change.AlreadyActivePPU)

	res := h.mustCreateBilling(bulk, id)
	require.True(t, res.Created)
	require.Len(t, h.rsim.Services(), 1)
	require.Equal(t, change.BillingCreated, h.change(id).BillingStatus)
}

// An activation recorded without its MSISDN reads it from ThingSpace
// before creating the service; a device ThingSpace lists without one fails
// with MSISDN_UNKNOWN (not retried: a later billing retry reads it again).
func TestCreateBillingServiceReadsAMissingMSISDN(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, dev := h.activated("3125550403")
	h.exec(`UPDATE device_changes SET msisdn = NULL WHERE id = $1`, id)
	h.exec(`UPDATE devices SET msisdn = NULL WHERE iccid = $1`, dev.ICCID)
	dev.MSISDN = "3125550403"
	h.seed(dev)

	res := h.mustCreateBilling(bulk, id)
	require.True(t, res.Created)
	require.Equal(t, "3125550403", h.change(id).MSISDN)
	require.Equal(t, "3125550403", h.rsim.Services()[0].Number)
	require.Equal(t, "3125550403", h.device(dev.ICCID).MSISDN)

	// Listed without a number (still pre-active at ThingSpace).
	bulk2, id2, dev2 := h.activated("3125550413")
	h.exec(`UPDATE device_changes SET msisdn = NULL WHERE id = $1`, id2)
	dev2.State = "preactive"
	h.seed(dev2)
	err := h.createBilling(bulk2, id2)
	ae := appError(t, err)
	require.Equal(t, activities.ErrTypeMSISDNUnknown, ae.Type())
	require.True(t, ae.NonRetryable())
	require.Len(t, h.rsim.Services(), 1, "nothing created without a number")
}

// The disconnection of a deactivated device's service ends DISCONNECTED;
// a device never billed through the product has nothing to disconnect.
func TestDisconnectBillingRecordsItsOutcome(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, dev := h.activated("3125550404")
	h.mustCreateBilling(bulk, id)
	deact := changes("deactivate", 1, dev)
	bulk2, ids2 := h.newBulk(account, deact...)
	h.exec(`UPDATE device_changes SET status = 'PROCESSED', billing_status = 'PENDING' WHERE id = $1`, ids2[dev.ICCID])
	h.mustDisconnectBilling(bulk2, ids2[dev.ICCID])
	require.Equal(t, change.BillingDisconnected, h.change(ids2[dev.ICCID]).BillingStatus)
	require.NotEmpty(t, h.rsim.Services()[0].DisconnectedDate)

	other := devices(1, "8914800405", "active")[0]
	bulk3, ids3 := h.newBulk(account, changes("deactivate", 1, other)...)
	h.exec(
		`UPDATE device_changes SET status = 'PROCESSED', billing_status = 'PENDING' WHERE id = $1`,
		ids3[other.ICCID],
	)
	h.mustDisconnectBilling(bulk3, ids3[other.ICCID])
	require.Equal(t, change.BillingNone, h.change(ids3[other.ICCID]).BillingStatus)
}

// The authentication check logs its exchanges under the bulk change that
// caused them.
func TestCheckThingSpaceAuthIsAuditedUnderItsBulkChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, _ := h.newBulk(account, changes("suspend", 1, devices(1, "8914800406", "active")...)...)
	require.NoError(t, h.run(nil, h.acts.CheckThingSpaceAuth, bulk))
	rows := h.audit(bulk)
	require.NotEmpty(t, rows)
	for _, r := range h.audit("") {
		require.Equal(t, bulk, r.BulkChangeID, "every exchange carries the bulk change: %s %s", r.Operation, r.Path)
	}
}

// Device changes ended by FailBulkChange get their audit result entry.
func TestFailBulkChangeWritesResultEntries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	devs := devices(3, "8914800407", "active")
	bulk, _ := h.newBulk(account, changes("suspend", 1, devs...)...)
	require.NoError(
		t,
		h.run(nil, h.acts.FailBulkChange, activities.FailBulkInput{BulkChangeID: bulk, Code: change.AuthFailed,
			Message: "ThingSpace authentication failed"}),
	)
	results := 0
	for _, r := range h.audit(bulk) {
		if r.DedupeKey != "" {
			results++
			require.EqualValues(t, change.AuthFailed, r.ErrorCode)
		}
	}
	require.Equal(t, 3, results)
}

// An already-active device whose first attempt created the service but not
// its products: the retry finds its own service and adds the products; it
// is not taken for a service that existed before. The first attempt may
// have recorded the service (then the worker was killed, or Rev.io went
// down) or not (the create answered after the client gave up, or the
// worker died before the row was written): the service found in Rev.io
// then carries this change's mark, so it is finished, not recorded as the
// device's existing one without its products.
func TestCreateBillingServiceOfAnAlreadyActiveDeviceFinishesItsOwnService(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		msisdn   string
		recorded bool
	}{
		{
			name:     "recorded",
			msisdn:   "3125550405",
			recorded: true,
		},
		{
			name:   "unrecorded",
			msisdn: "3125550406",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			bulk, id, dev := h.activated(tc.msisdn)
			h.setOutcome(id, change.AlreadyActive)
			req := revio.CreateServiceRequest{CustomerID: billingData.CustomerID, ProviderID: billingData.ProviderID,
				ServiceTypeID: billingData.ServiceTypeID, Number: tc.msisdn, Number2: dev.ICCID}
			if !tc.recorded {
				req.Description = fmt.Sprintf("tsbulk device change %d", id)
			}
			serviceID, err := h.acts.Revio.CreateService(ctx(t), req)
			require.NoError(t, err)
			if tc.recorded {
				_, err = h.store.SaveRevioService(
					ctx(t),
					db.RevioService{DeviceChangeID: id, ICCID: dev.ICCID, Number: tc.msisdn,
						CustomerID: billingData.CustomerID, ServiceID: serviceID, FoundBy: "created"},
				)
				require.NoError(t, err)
			}

			res := h.mustCreateBilling(bulk, id)
			require.Equal(t, serviceID, res.ServiceID)
			require.Len(t, res.ServiceProductIDs, len(billingData.ProductIDs), "its products created")
			require.Len(t, h.rsim.Services(), 1, "no second service")
			require.Equal(t, change.BillingCreated, h.change(id).BillingStatus)
		})
	}
}
