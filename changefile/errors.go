package changefile

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem in a submitted file. Row is the CSV line or the
// JSON array index (0 for problems with the file as a whole); Field is the
// column name ("" for problems with the whole row). Message never contains
// PPU values.
type FieldError struct {
	Row     int
	Field   string
	Message string
}

func (e FieldError) Error() string {
	switch {
	case e.Row > 0 && e.Field != "":
		return fmt.Sprintf("row %d, field %s: %s", e.Row, e.Field, e.Message)
	case e.Row > 0:
		return fmt.Sprintf("row %d: %s", e.Row, e.Message)
	case e.Field != "":
		return fmt.Sprintf("field %s: %s", e.Field, e.Message)
	}
	return e.Message
}

// ValidationError carries every problem found in a file, so the operator can
// fix them all before submitting again.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if len(e.Errors) == 1 {
		b.WriteString("bulk change file has 1 problem:")
	} else {
		fmt.Fprintf(&b, "bulk change file has %d problems:", len(e.Errors))
	}
	for _, fe := range e.Errors {
		b.WriteString("\n")
		b.WriteString(fe.Error())
	}
	return b.String()
}

// sortErrors orders problems by row, then by the rank of their field (the
// column position the operator sees). The sort is stable so problems on the
// same field keep the order they were found in.
func sortErrors(errs []FieldError, rank func(field string) int) {
	slices.SortStableFunc(errs, func(a, b FieldError) int {
		if c := cmp.Compare(a.Row, b.Row); c != 0 {
			return c
		}
		return cmp.Compare(rank(a.Field), rank(b.Field))
	})
}

// canonicalRank orders fields by their declaration order: row-level problems
// first, then known columns, then unknown keys.
func canonicalRank(field string) int {
	if field == "" {
		return -1
	}
	if c, ok := columnByName(field); ok {
		return int(c)
	}
	return int(numColumns)
}

// maxFieldRef is the most operator text (a header name, a JSON key) quoted
// back in one message, so a value pasted into the wrong place cannot flood
// the error list. An unknown operation is clipped alike by
// change.ParseOperation.
const maxFieldRef = 40

// clip shortens text quoted back to the operator.
func clip(s string, maxRunes int) string {
	r := []rune(s)
	if len(r) <= maxRunes {
		return s
	}
	return string(r[:maxRunes]) + "…"
}

// Summary is the report cut to its first n problems, after how many
// problems each field has, for where a whole report cannot go: a Temporal
// failure message (payloads are limited to 2 MB, and 200,000 rows with a
// bad ICCID make 8 MB of report). The whole report is Error.
func (e *ValidationError) Summary(n int) string {
	if len(e.Errors) <= n {
		return e.Error()
	}
	byField := map[string]int{}
	for _, fe := range e.Errors {
		field := fe.Field
		if field == "" {
			field = "(whole row or file)"
		}
		byField[field]++
	}
	fields := make([]string, 0, len(byField))
	for f := range byField {
		fields = append(fields, f)
	}
	slices.SortFunc(fields, func(a, b string) int {
		if c := cmp.Compare(byField[b], byField[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	// Unknown columns are fields too, and a header may name thousands.
	const maxFields = 20
	var counts []string
	other, otherProblems := 0, 0
	for i, f := range fields {
		if i >= maxFields {
			other++
			otherProblems += byField[f]
			continue
		}
		counts = append(counts, fmt.Sprintf("%s %d", f, byField[f]))
	}
	if other > 0 {
		counts = append(counts, fmt.Sprintf("%d other fields %d", other, otherProblems))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "bulk change file has %d problems (by field: %s); the first %d:",
		len(e.Errors), strings.Join(counts, ", "), n)
	for _, fe := range e.Errors[:n] {
		b.WriteString("\n")
		b.WriteString(fe.Error())
	}
	fmt.Fprintf(&b, "\n... and %d more", len(e.Errors)-n)
	return b.String()
}
