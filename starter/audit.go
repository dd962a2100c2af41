package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// auditLimit is how many entries `starter audit` shows: a bulk change of
// 100,000 devices has several entries a device.
const auditLimit = 1000

// audit prints the audit log of a bulk change: the operators' requests and
// the ThingSpace and Rev.io exchanges, without their bodies.
func (c *cli) audit(ctx context.Context, t *target) error {
	rows, total, err := t.store.AuditLog(ctx, t.id, auditLimit)
	if err != nil {
		return err
	}
	if t.asJSON {
		return json.NewEncoder(c.out).Encode(map[string]any{"bulkChangeId": t.id, "tenant": t.b.Tenant,
			"total": total, "entries": rows})
	}
	fmt.Fprintf(c.out, "audit log of bulk change %s (tenant %s): %d entries\n", t.id, t.b.Tenant, total)
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tSERVICE\tOPERATION\tREQUEST\tHTTP\tOUTCOME\tERROR\tREQUEST ID")
	for _, r := range rows {
		req := r.Method
		if r.Path != "" {
			req += " " + r.Path
		}
		httpStatus := ""
		if r.HTTPStatus != 0 {
			httpStatus = strconv.Itoa(r.HTTPStatus)
		}
		errText := r.ErrorCode
		if r.ErrorMessage != "" {
			if errText != "" {
				errText += ": "
			}
			errText += r.ErrorMessage
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.At.UTC().Format(time.RFC3339), r.Service, r.Operation,
			req, httpStatus, r.Outcome, printable(errText), r.RequestID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if total > len(rows) {
		fmt.Fprintf(c.out, "(the first %d of %d entries; the rest: SELECT * FROM m2m_log WHERE bulk_change_id = '%s' ORDER BY logged_at)\n",
			len(rows), total, t.id)
	}
	return nil
}

// printable makes text from ThingSpace or Rev.io safe for a terminal:
// control characters (escape sequences, line breaks that would break the
// table) become spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
