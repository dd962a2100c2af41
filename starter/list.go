package main

import (
	"context"
	"fmt"
	"text/tabwriter"
)

// list prints the newest bulk changes, of one tenant with --tenant.
func (c *cli) list(ctx context.Context, t *target) error {
	store, err := c.db(ctx)
	if err != nil {
		return err
	}
	bs, err := store.ListBulkChanges(ctx, t.tenant, 50)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tSTATUS\tDEVICES\tPROCESSED\tERRORS\tSUBMITTED\tSOURCE")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", b.ID, b.Tenant, b.Status, b.Total, b.Processed, b.Errors,
			b.CreatedAt.Format("2006-01-02 15:04"), b.SourceName)
	}
	return tw.Flush()
}
