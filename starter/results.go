package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/iot-ops/tsbulk/change"
)

// results prints one line per device change of a bulk change, in file
// order: as a table, CSV or JSON.
func (c *cli) results(ctx context.Context, t *target) error {
	rows, err := t.store.Results(ctx, t.id)
	if err != nil {
		return err
	}
	switch {
	case t.asJSON:
		return json.NewEncoder(c.out).Encode(rows)
	case t.asCSV:
		w := csv.NewWriter(c.out)
		_ = w.Write(
			[]string{
				"iccid",
				"operation",
				"status",
				"outcome",
				"final_state",
				"msisdn",
				"request_id",
				"error_code",
				"error_message",
				"billing_status",
				"billing_error",
				// Last, so scripts reading the columns before it by position
				// keep working.
				"removed_from_thingspace",
			},
		)
		for _, r := range rows {
			cells := []string{r.ICCID, string(r.Operation), string(r.Status), r.Outcome, r.FinalState, r.MSISDN,
				r.RequestID, string(r.ErrorCode), r.ErrorMessage, string(r.BillingStatus), r.BillingError,
				strconv.FormatBool(r.RemovedFromThingSpace)}
			for i := range cells {
				cells[i] = spreadsheetSafe(cells[i])
			}
			_ = w.Write(cells)
		}
		w.Flush()
		return w.Error()
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ICCID\tOPERATION\tSTATUS\tFINAL STATE\tMSISDN\tREQUEST ID\tERROR")
	for _, r := range rows {
		errText := string(r.ErrorCode)
		if r.ErrorMessage != "" {
			errText += ": " + r.ErrorMessage
		}
		if r.BillingStatus == change.BillingError {
			errText += " [Rev.io: " + r.BillingError + "]"
		}
		final := r.FinalState
		if r.RemovedFromThingSpace {
			final += ", removed from ThingSpace"
		}
		fmt.Fprintf(
			tw,
			"%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.ICCID,
			r.Operation,
			r.Status,
			final,
			r.MSISDN,
			r.RequestID,
			errText,
		)
	}
	return tw.Flush()
}

// spreadsheetSafe makes a results cell inert in a spreadsheet. Error texts
// come from ThingSpace, its callbacks and Rev.io, so whoever can shape them
// could plant a formula (=HYPERLINK(...), +cmd|...) that runs when an
// operator opens the CSV in Excel: a cell starting with = + - @, a tab or a
// carriage return gets a leading ' (OWASP's advice for CSV injection), and
// control characters, which could hide text or break lines in a viewer,
// become spaces.
func spreadsheetSafe(cell string) string {
	if cell == "" {
		return cell
	}
	formula := strings.ContainsRune("=+-@\t\r", rune(cell[0]))
	cell = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, cell)
	if formula {
		return "'" + cell
	}
	return cell
}
