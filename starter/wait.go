package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// wait shows progress until the workflow ends, then the results summary.
func (c *cli) wait(ctx context.Context, bulkID, workflowID string, asJSON bool) error {
	tc, err := c.temporal(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	last := ""
	for {
		desc, err := tc.DescribeWorkflow(ctx, workflowID, "")
		if err != nil {
			return fmt.Errorf("describe %s: %w", workflowID, err)
		}
		status := desc.RawResponse.GetWorkflowExecutionInfo().GetStatus()
		if p, err := queryProgress(ctx, tc, workflowID); err == nil && !asJSON {
			line := progressLine(p)
			if line != last {
				fmt.Fprintf(c.out, "%s  %s\n", time.Now().Format("15:04:05"), line)
				last = line
			}
		}
		if status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING &&
			status != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			break
		}
		select {
		case <-ctx.Done():
			return &exitError{1, fmt.Errorf("stopped waiting; the bulk change goes on: starter status %s", bulkID)}
		case <-tick.C:
		}
	}
	return c.summary(ctx, bulkID, asJSON)
}

func queryProgress(ctx context.Context, tc client.Client, workflowID string) (api.Progress, error) {
	var p api.Progress
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := tc.QueryWorkflow(qctx, workflowID, "", api.ProgressQuery)
	if err != nil {
		return p, err
	}
	err = v.Get(&p)
	return p, err
}

func progressLine(p api.Progress) string {
	phase := string(p.Phase)
	if p.Status != "" && p.Status != change.BulkRunning && p.Phase != change.PhaseFinished {
		phase = string(p.Status)
	}
	s := fmt.Sprintf("%-9s %d/%d done (processed %d, errors %d", phase, p.Done(), p.Total, p.Processed, p.Errors)
	if p.Cancelled > 0 {
		s += fmt.Sprintf(", cancelled %d", p.Cancelled)
	}
	s += fmt.Sprintf("), %d in flight, requests %d/%d", p.InFlight, p.BatchesSent, p.Batches)
	if p.Waiting != "" {
		s += ", waiting for " + p.Waiting
	}
	if p.Limit != nil && !p.Limit.ThrottledUntil.IsZero() {
		s += fmt.Sprintf(", throttled until %s", p.Limit.ThrottledUntil.Format("15:04:05"))
	}
	return s
}

// summary prints the outcome from the database and fails when a device did.
func (c *cli) summary(ctx context.Context, bulkID string, asJSON bool) error {
	store, err := c.db(ctx)
	if err != nil {
		return err
	}
	b, err := store.GetBulkChange(ctx, bulkID)
	if err != nil {
		return err
	}
	rows, err := store.Results(ctx, bulkID)
	if err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(c.out).Encode(map[string]any{"bulkChange": bulkView(b), "results": rows}); err != nil {
			return err
		}
	} else {
		printSummary(c.out, b, rows)
	}
	if b.Status == change.BulkFailed {
		return &exitError{1, fmt.Errorf("bulk change %s failed: %s", bulkID, b.ErrorMessage)}
	}
	if b.Status == change.BulkCancelled {
		return &exitError{
			1,
			fmt.Errorf("bulk change %s was cancelled: %d device changes never sent", bulkID, b.Cancelled),
		}
	}
	if b.Errors > 0 {
		return &exitError{1, fmt.Errorf("%d of %d device changes failed", b.Errors, b.Total)}
	}
	return nil
}

func printSummary(w io.Writer, b *db.BulkChange, rows []db.ResultRow) {
	fmt.Fprintf(
		w,
		"\nbulk change %s %s: %d devices, %d processed, %d errors\n",
		b.ID,
		b.Status,
		b.Total,
		b.Processed,
		b.Errors,
	)
	outcomes, codes, confirmed := map[string]int{}, map[change.Code]int{}, map[string]int{}
	var failures []db.ResultRow
	billing := 0
	for _, r := range rows {
		if r.ConfirmedBy != "" {
			confirmed[r.ConfirmedBy]++
		}
		switch r.Status {
		case change.Processed:
			outcomes[r.Outcome]++
		case change.Cancelled:
			outcomes["cancelled (never sent)"]++
		default:
			codes[r.ErrorCode]++
			failures = append(failures, r)
		}
		if r.BillingStatus == change.BillingError {
			billing++
		}
	}
	for _, k := range sortedKeys(outcomes) {
		fmt.Fprintf(w, "  %-30s %d\n", k, outcomes[k])
	}
	if len(confirmed) > 0 {
		fmt.Fprintf(w, "confirmed by ThingSpace callback %d, by polling %d, by its synchronous answer %d\n",
			confirmed[string(change.ByCallback)], confirmed[string(change.ByPoll)], confirmed[string(change.BySync)])
	}
	if len(codes) > 0 {
		fmt.Fprintln(w, "failures by reason:")
		for _, k := range sortedKeys(codes) {
			fmt.Fprintf(w, "  %-45s %d\n", k, codes[k])
		}
	}
	if billing > 0 {
		fmt.Fprintf(w, "Rev.io step failed for %d devices: starter billing-retry %s\n", billing, b.ID)
	}
	for i, r := range failures {
		if i == 10 {
			fmt.Fprintf(w, "  ... %d more: starter results %s\n", len(failures)-10, b.ID)
			break
		}
		fmt.Fprintf(w, "  %s %s: %s: %s\n", r.ICCID, r.Operation, r.ErrorCode, thingspace.FaultText(r.ErrorMessage))
	}
}
