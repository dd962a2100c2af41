package submission

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
)

// Summary is the one line the Temporal Web UI and `temporal workflow
// describe` show for a bulk change ("suspend 10,000 devices · account … ·
// submitted by …"): what an operator looks for in a list of workflows,
// which otherwise shows only bulk-change/<uuid>. Nothing personal: the
// operation, the counts, the account and the operator's name.
func Summary(b *db.BulkChange, byOperation map[string]int) string {
	ops := slices.Sorted(maps.Keys(byOperation))
	parts := make([]string, 0, len(ops))
	for _, op := range ops {
		parts = append(parts, op+" "+Thousands(byOperation[op]))
	}
	what := strings.Join(parts, ", ") + " devices"
	if len(ops) == 1 && byOperation[ops[0]] == 1 {
		what = ops[0] + " 1 device"
	}
	line := fmt.Sprintf("%s · account %s", what, b.AccountName)
	if b.Tenant != "" && b.Tenant != change.DefaultTenant {
		line += " · tenant " + b.Tenant
	}
	if b.SubmittedBy != "" {
		line += " · submitted by " + b.SubmittedBy
	}
	return line
}

// Details is the Web UI's longer description of a bulk change, below its
// summary: where it came from and how it is sent (markdown, as the UI
// renders it).
func Details(b *db.BulkChange) string {
	requests := "requests"
	if b.Batches == 1 {
		requests = "request"
	}
	lines := []string{
		"- bulk change `" + b.ID + "`",
		"- tenant " + b.Tenant,
		"- source " + b.SourceName,
		fmt.Sprintf("- %s device changes in %s ThingSpace %s", Thousands(b.Total), Thousands(b.Batches), requests),
	}
	if b.RedriveOf != "" {
		lines = append(lines, "- re-drive of bulk change `"+b.RedriveOf+"`")
	}
	lines = append(lines, "- results: `starter results "+b.ID+"`")
	return strings.Join(lines, "\n")
}

// Thousands writes n with a comma every three digits (10,000).
func Thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
