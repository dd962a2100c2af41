package main

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/workflows/api"
)

func (c *cli) billingRetry(ctx context.Context, t *target) error {
	wid := api.BillingRetryWorkflowID(t.id, time.Now())
	run, err := t.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: wid, TaskQueue: api.TaskQueue},
		api.BillingRetryWorkflowType, api.BillingRetryInput{BulkChangeID: t.id})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "billing retry started: workflow %s\n", wid)
	if !t.wait {
		return nil
	}
	var res api.BillingRetryResult
	if err := run.Get(ctx, &res); err != nil {
		return err
	}
	fmt.Fprintf(
		c.out,
		"Rev.io steps: %d attempted (%d stranded), %d services created or found, %d disconnected, %d still failing",
		res.Attempted,
		res.Stranded,
		res.Created,
		res.Disconnected,
		res.Failed,
	)
	if res.StillRunning > 0 {
		fmt.Fprintf(c.out, "; %d left to device workflows still running", res.StillRunning)
	}
	fmt.Fprintln(c.out)
	if res.Failed > 0 {
		return &exitError{1, fmt.Errorf("%d device changes still owe a Rev.io step", res.Failed)}
	}
	return nil
}
