package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/app"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

type cli struct {
	cfg    *config.Config
	out    io.Writer
	errOut io.Writer
	store  *db.Store
	tc     client.Client
}

func (c *cli) close() {
	if c.tc != nil {
		c.tc.Close()
	}
	if c.store != nil {
		c.store.Close()
	}
}

func (c *cli) db(ctx context.Context) (*db.Store, error) {
	if c.store == nil {
		s, err := app.OpenStore(ctx, c.cfg)
		if err != nil {
			return nil, err
		}
		c.store = s
	}
	return c.store, nil
}

func (c *cli) temporal(ctx context.Context) (client.Client, error) {
	if c.tc == nil {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		tc, err := app.DialTemporal(ctx, c.cfg, nil, quiet)
		if err != nil {
			return nil, err
		}
		c.tc = tc
	}
	return c.tc, nil
}

func (c *cli) submit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(c.errOut)
	file := fs.String("file", "", "CSV or JSON file of device changes (required)")
	op := fs.String("operation", "", "operation for rows without one: activate|suspend|restore|deactivate|inventory")
	account := fs.String("account", c.cfg.ThingSpace.Account, "ThingSpace account name")
	key := fs.String("idempotency-key", "", "submitting again with the same key returns the existing bulk change")
	dry := fs.Bool("dry-run", false, "validate and show what would happen; write and start nothing")
	wait := fs.Bool("wait", false, "show live progress until the bulk change ends, then its results; exit 1 if any device failed")
	asJSON := fs.Bool("json", false, "print JSON")
	batch := fs.Int("batch-size", c.cfg.Bulk.BatchSize, "devices per ThingSpace request (capped at ThingSpace's maximum per operation)")
	cbTimeout := fs.Duration("callback-timeout", c.cfg.Bulk.CallbackTimeout, "wait for a callback this long before polling")
	noCallbacks := fs.Bool("no-callbacks", !c.cfg.Callbacks.Enabled, "confirm by polling only")
	site := fs.String("default-site", c.cfg.Bulk.DefaultSite, "site given at the end to devices left in inventory or pending")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, errors.New("")}
	}
	if *file == "" {
		return &exitError{2, errors.New("submit: --file is required")}
	}
	if *batch < 1 || *batch > 10000 {
		return &exitError{2, errors.New("submit: --batch-size must be 1..10000")}
	}
	store, err := c.db(ctx)
	if err != nil {
		return err
	}
	opts := api.Options{
		Timing: api.Timing{CallbackTimeout: *cbTimeout, ConfirmDeadline: c.cfg.Bulk.ConfirmDeadline,
			PollInterval: c.cfg.Bulk.PollInterval, PollMaxInterval: c.cfg.Bulk.PollMaxInterval},
		CallbacksEnabled: !*noCallbacks, Window: c.cfg.Bulk.Window, StartsPerRun: c.cfg.Bulk.StartsPerRun,
		DefaultSite: *site, BillingEnabled: c.cfg.Revio.Enabled, DisconnectBillingOnDeactivate: c.cfg.Revio.DisconnectOnDeactivate,
	}
	if opts.Timing.ConfirmDeadline <= opts.Timing.CallbackTimeout {
		opts.Timing.ConfirmDeadline = opts.Timing.CallbackTimeout + c.cfg.Bulk.PollMaxInterval
	}
	req := submission.Request{File: *file, DefaultOperation: *op, Account: *account, IdempotencyKey: *key,
		SubmittedBy: os.Getenv("USER"), BatchSize: *batch, Options: opts, ActionsPerLinePerDay: c.cfg.Limits.ActionsPerLinePerDay}
	sub := &submission.Submitter{Store: store}
	if *dry {
		plan, err := sub.Plan(ctx, req)
		if err != nil {
			return err
		}
		return c.printPlan(plan, *asJSON)
	}
	tc, err := c.temporal(ctx)
	if err != nil {
		return err
	}
	sub.Temporal = tc
	res, err := sub.Submit(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON && !*wait {
		return json.NewEncoder(c.out).Encode(res)
	}
	c.printSubmitted(res)
	if !*wait {
		return nil
	}
	return c.wait(ctx, res.ID, res.WorkflowID, *asJSON)
}

func (c *cli) printPlan(p *submission.Plan, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(c.out).Encode(p)
	}
	fmt.Fprintf(c.out, "valid: %d devices", len(p.Devices))
	for _, op := range p.SortedOperations() {
		fmt.Fprintf(c.out, ", %s %d", op, p.ByOperation[op])
	}
	fmt.Fprintf(c.out, "\nwould send %d ThingSpace requests:\n", len(p.Batches))
	for _, b := range p.Batches {
		fmt.Fprintf(c.out, "  batch %d: %s of %d devices\n", b.No, b.Operation, b.Devices)
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(c.out, "warning:", w)
	}
	fmt.Fprintln(c.out, "dry run: nothing was written or started")
	return nil
}

func (c *cli) printSubmitted(r *submission.Result) {
	if r.Created {
		fmt.Fprintf(c.out, "bulk change %s submitted: %d devices in %d ThingSpace requests\n", r.ID, r.BulkChange.Total, r.BulkChange.Batches)
	} else {
		fmt.Fprintf(c.out, "bulk change %s already exists for this idempotency key (%s, %d devices); nothing new was created\n",
			r.ID, r.BulkChange.Status, r.BulkChange.Total)
	}
	if r.Plan != nil {
		for _, w := range r.Plan.Warnings {
			fmt.Fprintln(c.out, "warning:", w)
		}
	}
	fmt.Fprintf(c.out, "workflow %s\n", r.WorkflowID)
	fmt.Fprintf(c.out, "Web UI   %s\n", c.uiLink(r.WorkflowID))
}

func (c *cli) uiLink(workflowID string) string {
	base := os.Getenv("TSBULK_UI_URL")
	if base == "" {
		base = "http://localhost:8233"
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimRight(base, "/"), c.cfg.Temporal.Namespace, url.PathEscape(workflowID))
}

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
		if status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && status != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
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
	s := fmt.Sprintf("%-9s %d/%d done (processed %d, errors %d), %d in flight, requests %d/%d",
		p.Phase, p.Done(), p.Total, p.Processed, p.Errors, p.InFlight, p.BatchesSent, p.Batches)
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
	if b.Status == db.BulkFailed {
		return &exitError{1, fmt.Errorf("bulk change %s failed: %s", bulkID, b.ErrorMessage)}
	}
	if b.Errors > 0 {
		return &exitError{1, fmt.Errorf("%d of %d device changes failed", b.Errors, b.Total)}
	}
	return nil
}

func printSummary(w io.Writer, b *db.BulkChange, rows []db.ResultRow) {
	fmt.Fprintf(w, "\nbulk change %s %s: %d devices, %d processed, %d errors\n", b.ID, b.Status, b.Total, b.Processed, b.Errors)
	outcomes, codes, confirmed := map[string]int{}, map[string]int{}, map[string]int{}
	var failures []db.ResultRow
	billing := 0
	for _, r := range rows {
		if r.ConfirmedBy != "" {
			confirmed[r.ConfirmedBy]++
		}
		if r.Status == db.ChangeProcessed {
			outcomes[r.Outcome]++
		} else {
			codes[r.ErrorCode]++
			failures = append(failures, r)
		}
		if r.BillingStatus == "ERROR" {
			billing++
		}
	}
	for _, k := range sortedKeys(outcomes) {
		fmt.Fprintf(w, "  %-30s %d\n", k, outcomes[k])
	}
	if len(confirmed) > 0 {
		fmt.Fprintf(w, "confirmed by ThingSpace callback %d, by polling %d, by its synchronous answer %d\n",
			confirmed["callback"], confirmed["poll"], confirmed["sync"])
	}
	if len(codes) > 0 {
		fmt.Fprintln(w, "failures by reason:")
		for _, k := range sortedKeys(codes) {
			fmt.Fprintf(w, "  %-45s %d\n", k, codes[k])
		}
	}
	if billing > 0 {
		fmt.Fprintf(w, "Rev.io billing failed for %d activated devices: starter billing-retry %s\n", billing, b.ID)
	}
	for i, r := range failures {
		if i == 10 {
			fmt.Fprintf(w, "  ... %d more: starter results %s\n", len(failures)-10, b.ID)
			break
		}
		fmt.Fprintf(w, "  %s %s: %s %s\n", r.ICCID, r.Operation, r.ErrorCode, r.ErrorMessage)
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func bulkView(b *db.BulkChange) map[string]any {
	return map[string]any{"id": b.ID, "status": b.Status, "account": b.AccountName, "total": b.Total, "processed": b.Processed,
		"errors": b.Errors, "error": b.ErrorMessage, "createdAt": b.CreatedAt, "finishedAt": b.FinishedAt, "workflowId": b.WorkflowID}
}

func (c *cli) status(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(c.errOut)
	jsonOut := fs.Bool("json", false, "print JSON")
	id, err := parseID(fs, args)
	if err != nil {
		return err
	}
	asJSON := *jsonOut
	store, err := c.db(ctx)
	if err != nil {
		return err
	}
	b, err := store.GetBulkChange(ctx, id)
	if errors.Is(err, db.ErrNotFound) {
		return &exitError{1, fmt.Errorf("no bulk change %s", id)}
	}
	if err != nil {
		return err
	}
	tc, err := c.temporal(ctx)
	if err != nil {
		return err
	}
	p, qerr := queryProgress(ctx, tc, b.WorkflowID)
	if asJSON {
		out := map[string]any{"bulkChange": bulkView(b)}
		if qerr == nil {
			out["progress"] = p
		}
		return json.NewEncoder(c.out).Encode(out)
	}
	fmt.Fprintf(c.out, "bulk change %s (%s), account %s, %d devices, submitted %s\n", b.ID, b.Status, b.AccountName, b.Total,
		b.CreatedAt.Format(time.RFC3339))
	if qerr != nil {
		// The workflow cannot answer (no worker running): the database
		// still knows the counts.
		fmt.Fprintf(c.out, "(live progress unavailable: %v; counts from the database)\n", qerr)
		counts, err := store.CountStatuses(ctx, id)
		if err != nil {
			return err
		}
		for _, k := range sortedKeys(counts.ByStatus) {
			fmt.Fprintf(c.out, "  %-12s %d\n", k, counts.ByStatus[k])
		}
		for _, k := range sortedKeys(counts.ErrorsByCode) {
			fmt.Fprintf(c.out, "  error %-40s %d\n", k, counts.ErrorsByCode[k])
		}
		return nil
	}
	fmt.Fprintln(c.out, progressLine(p))
	fmt.Fprintf(c.out, "  submitted to ThingSpace %d, children started %d, in flight %d, continue-as-new runs %d\n",
		p.Submitted, p.Started, p.InFlight, p.Runs)
	for _, k := range sortedKeys(p.ByOutcome) {
		fmt.Fprintf(c.out, "  %-30s %d\n", k, p.ByOutcome[k])
	}
	if len(p.ErrorsByCode) > 0 {
		fmt.Fprintln(c.out, "failures by reason:")
		for _, k := range sortedKeys(p.ErrorsByCode) {
			fmt.Fprintf(c.out, "  %-45s %d\n", k, p.ErrorsByCode[k])
		}
	}
	if p.Limit != nil {
		fmt.Fprintf(c.out, "at the last batch sent: %d of %d requests used in the window; %d batches (%d devices) still to send\n",
			p.Limit.UsedLastHour, p.Limit.RequestsPerHour, p.Limit.BatchesWaiting, p.Limit.DevicesWaiting)
	}
	c.printBudget(ctx, store, b.AccountName)
	if p.Error != "" {
		fmt.Fprintln(c.out, "error:", p.Error)
	}
	return nil
}

func (c *cli) results(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("results", flag.ContinueOnError)
	fs.SetOutput(c.errOut)
	asCSV := fs.Bool("csv", false, "print CSV")
	asJSON := fs.Bool("json", false, "print JSON")
	id, err := parseID(fs, args)
	if err != nil {
		return err
	}
	store, err := c.db(ctx)
	if err != nil {
		return err
	}
	if _, err := store.GetBulkChange(ctx, id); errors.Is(err, db.ErrNotFound) {
		return &exitError{1, fmt.Errorf("no bulk change %s", id)}
	}
	rows, err := store.Results(ctx, id)
	if err != nil {
		return err
	}
	switch {
	case *asJSON:
		return json.NewEncoder(c.out).Encode(rows)
	case *asCSV:
		w := csv.NewWriter(c.out)
		_ = w.Write([]string{"iccid", "operation", "status", "outcome", "final_state", "msisdn", "request_id", "error_code", "error_message", "billing_status", "billing_error"})
		for _, r := range rows {
			_ = w.Write([]string{r.ICCID, r.Operation, r.Status, r.Outcome, r.FinalState, r.MSISDN, r.RequestID, r.ErrorCode,
				r.ErrorMessage, r.BillingStatus, r.BillingError})
		}
		w.Flush()
		return w.Error()
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ICCID\tOPERATION\tSTATUS\tFINAL STATE\tMSISDN\tREQUEST ID\tERROR")
	for _, r := range rows {
		errText := r.ErrorCode
		if r.ErrorMessage != "" {
			errText += ": " + r.ErrorMessage
		}
		if r.BillingStatus == "ERROR" {
			errText += " [Rev.io: " + r.BillingError + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ICCID, r.Operation, r.Status, r.FinalState, r.MSISDN, r.RequestID, errText)
	}
	return tw.Flush()
}

func (c *cli) list(ctx context.Context, _ []string) error {
	store, err := c.db(ctx)
	if err != nil {
		return err
	}
	bs, err := store.ListBulkChanges(ctx, 50)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tDEVICES\tPROCESSED\tERRORS\tSUBMITTED\tSOURCE")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", b.ID, b.Status, b.Total, b.Processed, b.Errors,
			b.CreatedAt.Format("2006-01-02 15:04"), b.SourceName)
	}
	return tw.Flush()
}

func (c *cli) billingRetry(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("billing-retry", flag.ContinueOnError)
	fs.SetOutput(c.errOut)
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
	fmt.Fprintf(c.out, "Rev.io services: %d attempted, %d created or found, %d still failing\n", res.Attempted, res.Created, res.Failed)
	if res.Failed > 0 {
		return &exitError{1, fmt.Errorf("%d device changes still have no Rev.io service", res.Failed)}
	}
	return nil
}

// parseID parses flags that may come before or after the bulk change id.
func parseID(fs *flag.FlagSet, args []string) (string, error) {
	var id string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return "", &exitError{2, errors.New("")}
		}
		args = fs.Args()
		if len(args) > 0 {
			if id != "" {
				return "", &exitError{2, fmt.Errorf("%s: one bulk change id expected", fs.Name())}
			}
			id, args = args[0], args[1:]
		}
	}
	if id == "" {
		return "", &exitError{2, fmt.Errorf("%s: the bulk change id is required", fs.Name())}
	}
	return id, nil
}

// printBudget shows the account's ThingSpace request budget as it stands
// now, shared by every worker.
func (c *cli) printBudget(ctx context.Context, store *db.Store, account string) {
	l := c.cfg.Limits
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
