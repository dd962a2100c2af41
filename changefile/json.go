package changefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ParseJSON reads a JSON bulk change file: an array of objects keyed by the
// CSV column names. Rows are numbered by array position, from 1. The array
// is read one element at a time, so a large file is never held twice.
func ParseJSON(r io.Reader, opt Options) ([]DeviceRequest, error) {
	v, err := newValidator(opt)
	if err != nil {
		return nil, err
	}
	br := newBoundedReader(r, opt, false)
	dec := json.NewDecoder(skipBOM(br))
	tok, err := dec.Token()
	if err != nil && br.failed() {
		return br.failure(v, canonicalRank, "JSON")
	}
	if errors.Is(err, io.EOF) {
		return nil, &ValidationError{
			Errors: []FieldError{{Message: "file is empty; expected a JSON array of device objects"}},
		}
	}
	if err != nil {
		return nil, malformedf("bulkchange: read JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, malformed(
			errors.New("bulkchange: read JSON: the file must be an array of device objects, [ {...}, ... ]"),
		)
	}
	for row := 1; dec.More(); row++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err != nil && br.failed() {
			return br.failure(v, canonicalRank, "JSON")
		}
		if err != nil {
			return nil, malformedf("bulkchange: read JSON element %d: %w", row, err)
		}
		if !v.accept() {
			continue
		}
		v.add(jsonRecord(row, raw))
	}
	_, err = dec.Token() // the closing ]
	if err != nil && br.failed() {
		return br.failure(v, canonicalRank, "JSON")
	}
	if err != nil {
		return nil, malformedf("bulkchange: read JSON: %w", err)
	}
	_, err = dec.Token()
	if err != nil && br.failed() {
		return br.failure(v, canonicalRank, "JSON")
	}
	if !errors.Is(err, io.EOF) {
		return nil, malformed(errors.New("bulkchange: read JSON: unexpected data after the closing ]"))
	}
	return v.finish(canonicalRank)
}

// jsonRecord converts one array element. Its keys are walked as tokens
// rather than decoded into a map so that a key given twice is noticed
// instead of silently keeping the last value.
func jsonRecord(row int, raw json.RawMessage) *record {
	rec := &record{row: row}
	if len(raw) == 0 || raw[0] != '{' {
		rec.broken = true
		rec.errs = append(
			rec.errs,
			FieldError{Row: row, Message: `must be a JSON object such as {"iccid": "...", "operation": "suspend"}`},
		)
		return rec
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	seen := map[string]bool{}
	if _, err := dec.Token(); err != nil { // {
		return brokenJSON(rec, err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return brokenJSON(rec, err)
		}
		key, _ := tok.(string) // keys of an object the outer decoder accepted are always strings
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return brokenJSON(rec, err)
		}
		field := clip(key, maxFieldRef)
		c, ok := columnByName(key)
		switch {
		case !ok:
			msg := "unknown key; valid keys are " + validColumns()
			if _, near := columnByName(strings.ToLower(strings.TrimSpace(key))); near {
				msg = "unknown key; keys are lower case without spaces, as in " + strings.ToLower(
					strings.TrimSpace(key),
				)
			}
			rec.errs = append(rec.errs, FieldError{Row: row, Field: field, Message: msg})
		case seen[key]:
			rec.errs = append(
				rec.errs,
				FieldError{Row: row, Field: field, Message: "key appears more than once in this object"},
			)
			rec.bad[c] = true
		default:
			seen[key] = true
			setJSONValue(rec, c, value)
		}
	}
	return rec
}

// brokenJSON covers decode failures inside an element the outer decoder
// already accepted; they should not happen, but must not panic if they do.
func brokenJSON(rec *record, err error) *record {
	rec.broken = true
	rec.errs = append(rec.errs, FieldError{Row: rec.row, Message: "cannot read this object: " + err.Error()})
	return rec
}

// setJSONValue stores one value in the form CSV would have produced. Allowed
// types per column: strings everywhere; null as "not given"; booleans for
// etf_waiver and delete_after_deactivation; numbers for the Rev.io IDs and rates (kept as their literal
// text, so no precision is lost); arrays for the two list columns.
func setJSONValue(rec *record, c column, raw json.RawMessage) {
	fail := func(msg string) {
		rec.bad[c] = true
		rec.errs = append(rec.errs, FieldError{Row: rec.row, Field: c.String(), Message: msg})
	}
	switch kind := raw[0]; {
	case kind == 'n':
		// null: same as an empty cell.
	case kind == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			fail("cannot read this string")
			return
		}
		s = strings.TrimSpace(s)
		if c.isList() {
			rec.list[c] = splitList(s)
		} else {
			rec.val[c] = s
		}
	case kind == 't' || kind == 'f':
		if c != colEtfWaiver && c != colDeleteAfter {
			fail(typeHint(c))
			return
		}
		rec.val[c] = string(raw)
	case kind == '[':
		if !c.isList() {
			fail(typeHint(c))
			return
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			fail(typeHint(c))
			return
		}
		for i, item := range items {
			s, ok := scalarText(item)
			if !ok {
				fail(fmt.Sprintf("item %d must be a number or a string", i+1))
				return
			}
			rec.list[c] = append(rec.list[c], s)
		}
	case kind == '-' || ('0' <= kind && kind <= '9'):
		switch {
		case c.isNumeric():
			rec.val[c] = string(raw)
		case c.isList():
			rec.list[c] = []string{string(raw)} // a single product and rate may be given bare
		default:
			fail(typeHint(c))
		}
	default:
		fail(typeHint(c))
	}
}

// scalarText returns a string's trimmed content or a number's literal text.
func scalarText(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch k := raw[0]; {
	case k == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return strings.TrimSpace(s), true
	case k == '-' || ('0' <= k && k <= '9'):
		return string(raw), true
	}
	return "", false
}

func typeHint(c column) string {
	switch {
	case c == colEtfWaiver, c == colDeleteAfter:
		return `must be true, false or a string such as "yes"`
	case c.isNumeric():
		return "must be a number or a string of digits"
	case c.isList():
		return `must be an array or a ";"-separated string`
	case c == colICCID || c == colIMEI:
		return "must be a JSON string (long numbers lose digits in most JSON tools)"
	}
	return "must be a JSON string"
}
