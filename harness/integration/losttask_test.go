package integration

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// crashBefore makes the first workflow task of each workflow that schedules
// the named activity fail, as a worker killed at that moment would: what the
// task's local activities wrote to PostgreSQL stays, what the task decided
// never reaches the history, and the server hands the task out again.
type crashBefore struct {
	interceptor.WorkerInterceptorBase
	activity string
	mu       sync.Mutex
	crashed  map[string]bool
}

func (c *crashBefore) InterceptWorkflow(
	_ workflow.Context,
	next interceptor.WorkflowInboundInterceptor,
) interceptor.WorkflowInboundInterceptor {
	return &crashInbound{
		WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next},
		root:                           c,
	}
}

func (c *crashBefore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.crashed)
}

type crashInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	root *crashBefore
}

func (i *crashInbound) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(
		&crashOutbound{
			WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out},
			root:                            i.root,
		},
	)
}

type crashOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	root *crashBefore
}

func (o *crashOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	if activityType == o.root.activity && !workflow.IsReplaying(ctx) {
		id := workflow.GetInfo(ctx).WorkflowExecution.ID
		o.root.mu.Lock()
		first := !o.root.crashed[id]
		o.root.crashed[id] = true
		o.root.mu.Unlock()
		if first {
			panic("test: the worker dies before this workflow task completes")
		}
	}
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

// TestLostWorkflowTaskStillCreatesTheBillingService reproduces the lost
// workflow task of a device workflow deterministically. The callback is
// stored before the workflow starts, so its first workflow task loads the
// change, records the activation (a local activity: written to PostgreSQL at
// once) and schedules the Rev.io step; that task then fails before it
// completes. The retried task finds the change already PROCESSED: it must
// still create the Rev.io service, exactly once.
func TestLostWorkflowTaskStillCreatesTheBillingService(t *testing.T) {
	s := newStack(t, stack.Options{ThingSpace: tssim.Config{Seed: 5}})
	crash := &crashBefore{activity: "CreateBillingService", crashed: map[string]bool{}}
	_, err := s.StartWorker(func(o *worker.Options) { o.Interceptors = append(o.Interceptors, crash) })
	require.NoError(t, err)

	ctx := context.Background()
	dev := tssim.GenerateDevices(1, "8914800000077", "preactive")[0]
	iccid := dev.ICCID
	bulkID := uuid.NewString()
	billing, err := json.Marshal(
		db.BillingData{
			CustomerID:    4242,
			ServiceTypeID: 7,
			ProviderID:    3,
			ProductIDs:    []int64{501},
			Rates:         []string{"9.99"},
		},
	)
	require.NoError(t, err)
	opts := options(s)
	optsJSON, err := json.Marshal(opts)
	require.NoError(t, err)
	_, _, err = s.Store.CreateBulkChange(ctx, db.NewBulkChange{
		ID: bulkID, AccountName: s.Config.ThingSpace.Account, Batches: 1, Options: optsJSON,
		WorkflowID: api.BulkChangeWorkflowID(bulkID),
		Devices: []db.NewDeviceChange{{Seq: 1, RowNumber: 2, ICCID: iccid, IMEI: dev.IMEI, Operation: "activate", BatchNo: 1,
			Params: json.RawMessage(`{"servicePlan":"m2m_4G","mdnZipCode":"98801"}`), Billing: billing}},
	})
	require.NoError(t, err)
	req, devs, _, err := s.Store.ClaimBatch(ctx, bulkID, 1, db.ClaimLimits{})
	require.NoError(t, err)
	require.Len(t, devs, 1)
	require.NoError(t, s.Store.MarkRequestAccepted(ctx, req, "req-lost-task", nil))
	_, _, err = s.Store.StoreCallback(ctx, db.NewCallback{RequestID: "req-lost-task", ICCID: iccid, Status: "Success",
		MSISDN: "3125550177", Payload: json.RawMessage(`{}`)})
	require.NoError(t, err)

	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: api.DeviceChangeWorkflowID(bulkID, iccid), TaskQueue: api.TaskQueue,
	}, api.DeviceChangeWorkflowType, api.DeviceChangeInput{
		BulkChangeID: bulkID, DeviceChangeID: devs[0].ID, ICCID: iccid, Operation: "activate",
		AccountName: s.Config.ThingSpace.Account, Options: opts,
	})
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var res api.DeviceResult
	require.NoError(t, run.Get(wctx, &res))

	require.Equal(t, 1, crash.count(), "the first workflow task failed once, after recording the outcome")
	require.EqualValues(t, change.Processed, res.Status)
	dc, err := s.Store.GetDeviceChange(ctx, devs[0].ID)
	require.NoError(t, err)
	require.EqualValues(t, change.BillingCreated, dc.BillingStatus, "the Rev.io step ran after the lost task")
	services := 0
	for _, svc := range s.Revio.Services() {
		if svc.Number2 == iccid {
			services++
			require.Equal(t, "3125550177", svc.Number)
		}
	}
	require.Equal(t, 1, services, "exactly one Rev.io service for the device")
	recordHistory(t, s, api.DeviceChangeWorkflowID(bulkID, iccid), "activate-lost-task-billing")

	// The live history replays against this build (`worker replay`).
	replay := exec.Command(
		filepath.Join(binDir, "worker"),
		"replay",
		"--workflow-id",
		api.DeviceChangeWorkflowID(bulkID, iccid),
	)
	replay.Env = s.Env()
	out, err := replay.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "OK: workflow "+api.DeviceChangeWorkflowID(bulkID, iccid))
}
