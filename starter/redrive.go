package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/iot-ops/tsbulk/submission"
)

// redrive creates a new bulk change of the failed device changes of one
// (optionally only those that failed with the given codes), linked to it
// both ways. The same bulk change and codes return the same re-drive.
func (c *cli) redrive(ctx context.Context, t *target) error {
	var list []string
	for _, code := range strings.Split(t.codes, ",") {
		if code = strings.TrimSpace(code); code != "" {
			list = append(list, code)
		}
	}
	// The re-drive is the original's tenant's, submitted with its settings.
	like, err := submission.ForTenant(c.cfg, t.b.Tenant, t.b.AccountName)
	if err != nil {
		return &exitError{2, fmt.Errorf("redrive: bulk change %s: %w", t.id, err)}
	}
	sub := &submission.Submitter{Store: t.store, Temporal: t.tc}
	res, err := sub.Redrive(ctx, submission.RedriveRequest{
		Original:             t.id,
		Tenant:               t.tenant,
		Codes:                list,
		SubmittedBy:          t.as,
		BatchSize:            like.BatchSize,
		Options:              like.Options,
		ActionsPerLinePerDay: like.ActionsPerLinePerDay,
		Approval:             like.Approval,
	})
	if err != nil {
		return err
	}
	if t.asJSON {
		return json.NewEncoder(c.out).Encode(res)
	}
	if res.Created {
		fmt.Fprintf(
			c.out,
			"re-drive of %s: bulk change %s of %d failed device changes\n",
			t.id,
			res.ID,
			res.BulkChange.Total,
		)
	} else {
		fmt.Fprintf(c.out, "bulk change %s already re-drives these device changes of %s (%s)\n",
			res.ID, t.id, res.BulkChange.Status)
	}
	c.printSubmitted(res)
	return nil
}
