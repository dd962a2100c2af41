package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/ratelimit"
)

func (c *cli) status(ctx context.Context, t *target) error {
	id, b, store, tc := t.id, t.b, t.store, t.tc
	counts, err := store.CountStatuses(ctx, id)
	if err != nil {
		return err
	}
	wf := describeRun(ctx, tc, b.WorkflowID)
	p, qerr := queryProgress(ctx, tc, b.WorkflowID)
	if t.asJSON {
		out := map[string]any{"bulkChange": bulkView(b), "workflow": wf,
			"billing": map[string]int{"pending": counts.BillingPending, "failed": counts.BillingErrors}}
		if qerr == nil {
			out["progress"] = p
		}
		return json.NewEncoder(c.out).Encode(out)
	}
	fmt.Fprintf(
		c.out,
		"bulk change %s (%s), tenant %s, account %s, %d devices, submitted %s by %s\n",
		b.ID,
		b.Status,
		b.Tenant,
		b.AccountName,
		b.Total,
		b.CreatedAt.Format(time.RFC3339),
		b.SubmittedBy,
	)
	if err := c.printLinks(ctx, store, b); err != nil {
		return err
	}
	c.printWorkflow(b, wf)
	if qerr != nil {
		// The workflow cannot answer (no worker running, or it ended): the
		// database still knows the counts.
		fmt.Fprintf(c.out, "(live progress unavailable: %v; counts from the database)\n", qerr)
		for _, k := range sortedKeys(counts.ByStatus) {
			fmt.Fprintf(c.out, "  %-12s %d\n", k, counts.ByStatus[k])
		}
		for _, k := range sortedKeys(counts.ErrorsByCode) {
			fmt.Fprintf(c.out, "  error %-40s %d\n", k, counts.ErrorsByCode[k])
		}
		c.printBilling(b.ID, counts)
		return nil
	}
	fmt.Fprintln(c.out, progressLine(p))
	fmt.Fprintf(c.out, "  sent to ThingSpace %d, children started %d, in flight %d, continue-as-new runs %d\n",
		p.DevicesSent, p.Started, p.InFlight, p.Runs)
	if p.Shards > 0 {
		fmt.Fprintf(c.out, "  shards %d: %d done, %d running (workflows %s/shard/N)\n",
			p.Shards, p.ShardsDone, p.ShardsRunning, b.WorkflowID)
	}
	for _, k := range sortedKeys(p.ByOutcome) {
		fmt.Fprintf(c.out, "  %-30s %d\n", k, p.ByOutcome[k])
	}
	if len(p.ErrorsByCode) > 0 {
		fmt.Fprintln(c.out, "failures by reason:")
		for _, k := range sortedKeys(p.ErrorsByCode) {
			fmt.Fprintf(c.out, "  %-45s %d\n", k, p.ErrorsByCode[k])
		}
	}
	c.printBilling(b.ID, counts)
	if p.Limit != nil {
		fmt.Fprintf(
			c.out,
			"at the last batch sent: %d of %d requests used in the window; %d batches (%d devices) still to send\n",
			p.Limit.UsedLastHour,
			p.Limit.RequestsPerHour,
			p.Limit.BatchesWaiting,
			p.Limit.DevicesWaiting,
		)
	}
	c.printBudget(ctx, store, b.Tenant, b.AccountName)
	if p.Error != "" {
		fmt.Fprintln(c.out, "error:", p.Error)
	}
	return nil
}

// printBilling shows the Rev.io steps owed: pending (running, or stranded)
// and failed.
func (c *cli) printBilling(id string, counts db.StatusCounts) {
	if counts.BillingPending == 0 && counts.BillingErrors == 0 {
		return
	}
	fmt.Fprintf(c.out, "Rev.io steps: %d pending, %d failed", counts.BillingPending, counts.BillingErrors)
	if counts.BillingErrors > 0 {
		fmt.Fprintf(c.out, " (starter billing-retry %s)", id)
	}
	fmt.Fprintln(c.out)
}

// runView is what Temporal says of a bulk change's parent workflow.
type runView struct {
	Status  string          `json:"status"`
	Waiting []activityRetry `json:"waiting,omitempty"`
	Err     string          `json:"error,omitempty"`
}

// activityRetry is a step the workflow is retrying: a ThingSpace outage at
// the start shows here as CheckThingSpaceAuth with its last error.
type activityRetry struct {
	Activity  string `json:"activity"`
	Attempt   int32  `json:"attempt"`
	LastError string `json:"lastError,omitempty"`
}

func describeRun(ctx context.Context, tc client.Client, workflowID string) runView {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	desc, err := tc.DescribeWorkflow(dctx, workflowID, "")
	if err != nil {
		return runView{Err: err.Error()}
	}
	d := desc.RawResponse
	v := runView{Status: d.GetWorkflowExecutionInfo().GetStatus().String()}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetAttempt() > 1 {
			v.Waiting = append(
				v.Waiting,
				activityRetry{Activity: pa.GetActivityType().GetName(), Attempt: pa.GetAttempt(),
					LastError: pa.GetLastFailure().GetMessage()},
			)
		}
	}
	return v
}

func (c *cli) printWorkflow(b *db.BulkChange, wf runView) {
	switch {
	case wf.Err != "":
		fmt.Fprintf(c.out, "workflow %s: %s\n", b.WorkflowID, wf.Err)
	case wf.Status != "Running" && (b.Status == change.BulkRunning || b.Status == change.BulkPending):
		fmt.Fprintf(c.out, "workflow %s ended (%s) without finishing the bulk change: starter resume-failed %s\n",
			b.WorkflowID, wf.Status, b.ID)
	}
	for _, w := range wf.Waiting {
		what := "waiting for " + w.Activity
		if w.Activity == "CheckThingSpaceAuth" || w.Activity == activities.SendBatchActivity {
			what = "waiting for ThingSpace (" + w.Activity + ")"
		}
		fmt.Fprintf(c.out, "%s: attempt %d, last error: %s\n", what, w.Attempt, w.LastError)
	}
}

// printBudget shows the account's ThingSpace request budget as it stands
// now, shared by every worker.
func (c *cli) printBudget(ctx context.Context, store *db.Store, tenant, account string) {
	l := c.cfg.Limits
	if tn, err := c.cfg.Tenant(tenant); err == nil {
		l = tn.Limits // the tenant's, the account's
	}
	rules := ratelimit.Rules(l.RequestsPerHour, l.RequestsWindow, l.ActivatesPerMinute)
	if len(rules) == 0 {
		return
	}
	lim := &ratelimit.Limiter{Pool: store.Pool, Rules: rules, DefaultAccount: account}
	sts, err := lim.Status(ctx, account)
	if err != nil {
		return
	}
	for _, s := range sts {
		line := fmt.Sprintf("ThingSpace budget now (%s): %d of %d in the last %s", s.Bucket, s.Used, s.Limit, s.Window)
		if s.ThrottledUntil != nil {
			line += fmt.Sprintf("; throttled by ThingSpace until %s", s.ThrottledUntil.Format("15:04:05"))
		} else if s.PacedUntil != nil {
			line += fmt.Sprintf("; pacing below the limit until %s", s.PacedUntil.Format("15:04:05"))
		}
		fmt.Fprintln(c.out, line)
	}
}

// printLinks shows the approval and the re-drives of a bulk change, both
// ways.
func (c *cli) printLinks(ctx context.Context, store *db.Store, b *db.BulkChange) error {
	if b.ApprovedBy != "" {
		fmt.Fprintf(c.out, "approved by %s\n", b.ApprovedBy)
	}
	if b.RedriveOf != "" {
		fmt.Fprintf(c.out, "re-drives the failed device changes of bulk change %s\n", b.RedriveOf)
	}
	redrives, err := store.Redrives(ctx, b.ID)
	if err != nil {
		return err
	}
	for _, r := range redrives {
		fmt.Fprintf(
			c.out,
			"failed device changes re-driven by bulk change %s (%s, %d devices)\n",
			r.ID,
			r.Status,
			r.Total,
		)
	}
	return nil
}
