package main

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/workflows/api"
)

func (c *cli) billingRetry(ctx context.Context, args []string) error {
	fs := c.flags("billing-retry")
	wait := fs.Bool("wait", false, "wait for the retry to end")
	id, err := parseID(fs, args)
	if err != nil {
		return err
	}
	tc, err := c.temporal(ctx)
	if err != nil {
		return err
	}
	wid := api.BillingRetryWorkflowID(id, time.Now())
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: wid, TaskQueue: api.TaskQueue},
		api.BillingRetryWorkflowType, api.BillingRetryInput{BulkChangeID: id})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "billing retry started: workflow %s\n", wid)
	if !*wait {
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
