package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/setup"
	"github.com/iot-ops/tsbulk/submission"
)

func (c *cli) submit(ctx context.Context, t *target) error {
	if t.file == "" {
		return &exitError{2, errors.New("submit: --file is required")}
	}
	if t.batchSize < 1 || t.batchSize > 10000 {
		return &exitError{2, errors.New("submit: --batch-size must be 1..10000")}
	}
	// The tenant first: an unknown one, or an account of another, is a
	// mistake of the operator's, said before the database is opened.
	req, err := submission.ForTenant(c.cfg, t.tenant, t.account)
	if err != nil {
		return &exitError{2, fmt.Errorf("submit: %w", err)}
	}
	store, err := c.db(ctx)
	if err != nil {
		return err
	}
	opts := req.Options
	opts.Timing.CallbackTimeout = t.callbackWait
	opts.CallbacksEnabled = !t.noCallbacks
	if t.defaultSite.set {
		opts.DefaultSite = t.defaultSite.value
	}
	if t.notBefore != "" {
		at, err := time.Parse(time.RFC3339, t.notBefore)
		if err != nil {
			return &exitError{
				2,
				fmt.Errorf(
					"submit: --not-before %q: give an RFC 3339 time with its zone, e.g. 2026-12-01T22:00:00-05:00",
					t.notBefore,
				),
			}
		}
		opts.NotBefore = at
	}
	if opts.Timing.ConfirmDeadline <= opts.Timing.CallbackTimeout {
		opts.Timing.ConfirmDeadline = opts.Timing.CallbackTimeout + c.cfg.Bulk.PollMaxInterval
	}
	req.Options = opts
	req.File = t.file
	req.DefaultOperation = t.operation
	req.IdempotencyKey = t.idempotencyKey
	req.SubmittedBy = t.as
	req.BatchSize = t.batchSize
	sub := &submission.Submitter{Store: store}
	if t.dryRun {
		plan, err := sub.Plan(ctx, req)
		if err != nil {
			return err
		}
		return c.printPlan(plan, req.Tenant, t.asJSON)
	}
	tc, err := c.temporal(ctx)
	if err != nil {
		return err
	}
	sub.Temporal = tc
	res, err := sub.Submit(ctx, req)
	var reused *submission.KeyReusedError
	if errors.As(err, &reused) {
		return &exitError{2, err}
	}
	if err != nil {
		return err
	}
	if t.asJSON && !t.wait {
		return json.NewEncoder(c.out).Encode(res)
	}
	c.printSubmitted(res)
	if !t.wait {
		return nil
	}
	return c.wait(ctx, res.ID, res.WorkflowID, t.asJSON)
}

func (c *cli) printPlan(p *submission.BatchPlan, tenant string, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(c.out).Encode(p)
	}
	fmt.Fprintf(c.out, "valid: %d devices", len(p.Devices))
	for _, op := range p.SortedOperations() {
		fmt.Fprintf(c.out, ", %s %d", op, p.ByOperation[op])
	}
	fmt.Fprintf(c.out, "\nwould send %d ThingSpace requests:\n", len(p.Batches))
	for _, b := range p.Batches {
		fmt.Fprintf(c.out, "  batch %d: %s of %d devices", b.No, b.Operation, b.Devices)
		if members := c.requestMembers(b, tenant); len(members) > 0 {
			fmt.Fprintf(c.out, "; %s", strings.Join(members, ", "))
		}
		fmt.Fprintln(c.out)
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(c.out, "warning:", w)
	}
	fmt.Fprintln(c.out, "dry run: nothing was written or started")
	return nil
}

// requestMembers are the request-level members a batch's request would
// carry, as ThingSpace names them ("skuNumber SM-T387VZKAVZW").
func (c *cli) requestMembers(b submission.Batch, tenant string) []string {
	r := b.Request
	var out []string
	add := func(name, value string) {
		if value != "" {
			out = append(out, name+" "+value)
		}
	}
	add("servicePlan", r.ServicePlan)
	add("mdnZipCode", r.MdnZipCode)
	add("skuNumber", r.SkuNumber)
	if r.PrimaryPlaceOfUse {
		add("primaryPlaceOfUse", "(from the file)")
	}
	add("reasonCode", r.ReasonCode)
	if r.EtfWaiver != nil {
		add("etfWaiver", strconv.FormatBool(*r.EtfWaiver))
	}
	if b.Operation == change.Deactivate {
		if r.DeleteAfterDeactivation != nil {
			add("deleteAfterDeactivation", strconv.FormatBool(*r.DeleteAfterDeactivation)+" (from the file)")
		} else {
			// The worker decides when it sends; this configuration (the
			// tenant's) is the best guess of what it will say.
			deleteAfter, setting := c.cfg.ThingSpace.DeleteAfterDeactivation, "thingspace.delete_after_deactivation"
			if tn, err := c.cfg.Tenant(tenant); err == nil && tn.ID != config.DefaultTenant {
				deleteAfter, setting = tn.ThingSpace.DeleteAfterDeactivation, "tenants."+tn.ID+"."+setting
			}
			add("deleteAfterDeactivation", strconv.FormatBool(deleteAfter)+" (the worker's "+setting+")")
		}
	}
	return out
}

func (c *cli) printSubmitted(r *submission.Result) {
	if r.Created {
		fmt.Fprintf(
			c.out,
			"bulk change %s submitted: %d devices in %d ThingSpace requests\n",
			r.ID,
			r.BulkChange.Total,
			r.BulkChange.Batches,
		)
	} else {
		fmt.Fprintf(c.out, "bulk change %s already exists for this idempotency key (%s, %d devices); "+
			"nothing new was created\n",
			r.ID, r.BulkChange.Status, r.BulkChange.Total)
		if strings.HasPrefix(r.BulkChange.IdempotencyKey, "content:") {
			fmt.Fprintln(c.out, "(without --idempotency-key the key is the file's content: "+
				"to run the same file again on purpose, give a new --idempotency-key)")
		}
	}
	if r.Plan != nil {
		for _, w := range r.Plan.Warnings {
			fmt.Fprintln(c.out, "warning:", w)
		}
	}
	if b := r.BulkChange; b.Tenant != config.DefaultTenant {
		fmt.Fprintf(c.out, "tenant %s, account %s\n", b.Tenant, b.AccountName)
	}
	fmt.Fprintf(c.out, "workflow %s\n", r.WorkflowID)
	if link := c.uiLink(r.WorkflowID); link != "" {
		fmt.Fprintf(c.out, "Web UI   %s\n", link)
	}
}

// uiLink is the Web UI page of a workflow, "" when temporal.ui_url is not
// set (a guessed address would mislead).
func (c *cli) uiLink(workflowID string) string {
	base := c.cfg.Temporal.UIURL
	if base == "" {
		return ""
	}
	return fmt.Sprintf(
		"%s/namespaces/%s/workflows/%s",
		strings.TrimRight(base, "/"),
		setup.TemporalNamespace(c.cfg),
		url.PathEscape(workflowID),
	)
}
