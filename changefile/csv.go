package changefile

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Header cells that do not map to a column.
const (
	colIgnored column = -1 // unknown or duplicate; reported once on the header
	colUnnamed column = -2 // empty header cell; tolerated while its values are empty
)

// listSep separates items in rev_product_ids and rev_rates. Not a comma, so
// lists need no quoting in CSV.
const listSep = ";"

// ParseCSV reads a CSV bulk change file (see the package documentation for
// the columns). Rows are numbered by file line, header = 1.
func ParseCSV(r io.Reader, opt Options) ([]DeviceRequest, error) {
	v, err := newValidator(opt)
	if err != nil {
		return nil, err
	}
	br := newBoundedReader(r, opt, true)
	cr := csv.NewReader(skipBOM(br))
	cr.FieldsPerRecord = -1 // a short or long row is a problem of that row, not the end of the file
	cr.ReuseRecord = true   // values are copied out as strings, so the slice can be reused

	cells, err := cr.Read()
	if err != nil && br.failed() {
		return br.failure(v, canonicalRank, "CSV")
	}
	if errors.Is(err, io.EOF) {
		return nil, &ValidationError{
			Errors: []FieldError{
				{Message: "file is empty; the first line must be a header naming the columns (at least iccid)"},
			},
		}
	}
	var syntax *csv.ParseError
	if errors.As(err, &syntax) {
		// Without a readable header no column can be named, so this is the
		// only problem reported.
		return nil, &ValidationError{
			Errors: []FieldError{{Row: syntax.StartLine, Message: "header line: " + syntaxProblem(syntax, len(cells))}},
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bulkchange: read CSV header: %w", err)
	}
	headerLine, _ := cr.FieldPos(0)
	h := parseHeader(cells, headerLine)
	v.errs = append(v.errs, h.errs...)

	for {
		cells, err := cr.Read()
		if err != nil && br.failed() {
			return br.failure(v, h.rank, "CSV")
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.As(err, &syntax) {
			// A quoting mistake is a problem of its row like any other; the
			// reader carries on at the next line, so later rows are still checked.
			if v.accept() {
				v.add(h.syntaxRecord(syntax, len(cells)))
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bulkchange: read CSV: %w", err)
		}
		if blankRow(cells) {
			continue
		}
		if !v.accept() || !h.hasICCID {
			// Without an iccid column no row names a device; row checks would
			// only repeat "iccid is required" on every line.
			continue
		}
		line, _ := cr.FieldPos(0)
		v.add(h.record(line, cells))
	}
	return v.finish(h.rank)
}

// csvHeader maps cell positions to columns.
type csvHeader struct {
	cols     []column
	pos      map[string]int // field name → position, for ordering problems like the file
	hasICCID bool
	errs     []FieldError
}

func parseHeader(cells []string, line int) *csvHeader {
	h := &csvHeader{cols: make([]column, len(cells)), pos: map[string]int{}}
	for _, cell := range cells {
		if strings.Contains(cell, "\r") {
			// Lines ending in a carriage return alone (Excel's "CSV (Macintosh)")
			// make the whole file one line: its values would be quoted back as
			// unknown column names, and they may be PPU data. (encoding/csv
			// already turns \r\n into \n, so any \r left is one of these.)
			h.errs = append(
				h.errs,
				FieldError{Row: line, Message: "lines end with a carriage return only (classic Mac line endings), " +
					"so the whole file reads as one line; save it again as \"CSV UTF-8\" or with Windows or Unix line endings"},
			)
			return h
		}
	}
	var unknown []FieldError
	known := 0
	for i, cell := range cells {
		name := strings.TrimSpace(cell)
		if name == "" {
			h.cols[i] = colUnnamed
			continue
		}
		c, ok := columnByName(strings.ToLower(name))
		if !ok {
			h.cols[i] = colIgnored
			field := clip(name, maxFieldRef)
			if _, seen := h.pos[field]; !seen {
				h.pos[field] = i
			}
			unknown = append(
				unknown,
				FieldError{Row: line, Field: field, Message: "unknown column; valid columns are " + validColumns()},
			)
			continue
		}
		known++
		if first, dup := h.pos[c.String()]; dup {
			h.cols[i] = colIgnored
			h.errs = append(h.errs, FieldError{Row: line, Field: c.String(),
				Message: fmt.Sprintf("column appears more than once (columns %d and %d); keep one", first+1, i+1)})
			continue
		}
		h.pos[c.String()] = i
		h.cols[i] = c
	}
	if known == 0 {
		// Most likely the header line is missing and this is a data row. Its
		// cells may be names and addresses, so they are not quoted back.
		h.errs = append(
			h.errs,
			FieldError{
				Row: line,
				Message: "first line must be a header naming the columns, " +
					"but none of its names is a known column; valid columns are " + validColumns(),
			},
		)
		return h
	}
	h.errs = append(h.errs, unknown...)
	if _, ok := h.pos[colICCID.String()]; ok {
		h.hasICCID = true
	} else {
		h.errs = append(h.errs, FieldError{Row: line, Field: colICCID.String(), Message: "required column is missing"})
	}
	return h
}

// rank orders a row's problems as the columns appear in the file; fields
// the file lacks (a required column left out) come after, in canonical order.
func (h *csvHeader) rank(field string) int {
	if field == "" {
		return -1
	}
	if p, ok := h.pos[field]; ok {
		return p
	}
	return len(h.cols) + canonicalRank(field)
}

func (h *csvHeader) record(line int, cells []string) *record {
	rec := &record{row: line}
	if len(cells) != len(h.cols) {
		rec.broken = true
		rec.errs = append(rec.errs, FieldError{Row: line, Message: fmt.Sprintf(
			"has %d fields but the header has %d; values containing commas must be in double quotes",
			len(cells),
			len(h.cols),
		)})
		return rec
	}
	for i, cell := range cells {
		value := strings.TrimSpace(cell)
		switch c := h.cols[i]; {
		case c == colIgnored:
			// Reported on the header already.
		case c == colUnnamed:
			if value != "" {
				rec.errs = append(
					rec.errs,
					FieldError{Row: line, Message: fmt.Sprintf("column %d has a value but no name in the header", i+1)},
				)
			}
		case c.isList():
			rec.list[c] = splitList(value)
		default:
			rec.val[c] = value
		}
	}
	return rec
}

// syntaxRecord reports a row that encoding/csv could not read: a stray or
// missing double quote. fields is how many of its fields were read before
// the error, so the next one is where the mistake is.
func (h *csvHeader) syntaxRecord(pe *csv.ParseError, fields int) *record {
	fe := FieldError{Row: pe.StartLine, Message: syntaxProblem(pe, fields)}
	if fields < len(h.cols) && h.cols[fields] >= 0 {
		fe.Field = h.cols[fields].String()
	}
	return &record{row: pe.StartLine, broken: true, errs: []FieldError{fe}}
}

// syntaxProblem explains a CSV quoting error to an operator, naming the
// column by position and the line where the reader gave up (a quoted value
// may span lines). The text of the value is not quoted: it may be a PPU.
func syntaxProblem(pe *csv.ParseError, fields int) string {
	where := fmt.Sprintf("column %d", fields+1)
	if pe.Line != pe.StartLine {
		where += fmt.Sprintf(" (line %d)", pe.Line)
	}
	if errors.Is(pe.Err, csv.ErrBareQuote) {
		return where + ` has a double quote inside a value that does not start with one; ` +
			`put the whole value in double quotes and write the quote inside as two ("")`
	}
	return where + ` has a value in double quotes that is not closed properly: the closing quote must be followed ` +
		`by a comma or the end of the line, and a quote inside the value must be written as two (""); ` +
		`an unclosed quote makes the rest of the file part of the value`
}

// splitList splits a ";"-separated cell. Empty items are kept (and then
// reported) rather than dropped: "1;;2" is more likely a lost value than a
// typo, and dropping it would shift every later rate to the wrong product.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	items := strings.Split(s, listSep)
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

// blankRow reports a line with no values. encoding/csv already skips empty
// lines; spreadsheets also write lines of bare commas.
func blankRow(cells []string) bool {
	for _, c := range cells {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}
