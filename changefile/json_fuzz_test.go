package changefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzParseJSON feeds arbitrary bytes to the JSON parser. A failure is a
// panic, a parse that does not return, an accepted row that breaks the
// README's rules or does not match its array element, a problem report
// without row/field or with parser jargon, or a plain error for a file
// that is a well-formed JSON array (its problems belong in the report;
// plain errors are for files that are not a JSON array at all).
func FuzzParseJSON(f *testing.F) {
	addSeedFiles(f, []uint8{0, 2}, "testdata/*.json")
	const iccid1, iccid2 = `"89148000001234567898"`, `"89148000000000000019"`
	addSeeds(f, []string{
		`[{"iccid":` + iccid1 + `,"operation":"suspend"},{"iccid":` + iccid2 + `,"operation":"deactive","etf_waiver":true,"reason_code":"ff"}]`,
		// Duplicate keys, wrong case, numbers instead of strings, nested arrays.
		`[{"iccid":` + iccid1 + `,"iccid":` + iccid2 + `,"operation":"suspend"}]`,
		`[{"ICCID":` + iccid1 + `,"Operation ":"suspend"}]`,
		`[{"iccid":89148000001234567898,"operation":"suspend"},{"iccid":` + iccid2 + `,"operation":1}]`,
		`[[{"iccid":` + iccid1 + `}],[[]],{"iccid":[` + iccid2 + `]}]`,
		`[{"iccid":` + iccid1 + `,"operation":"activate","service_plan":"m2m_4G","mdn_zip_code":98801,"rev_customer_id":1001,"rev_service_type_id":"5","rev_product_ids":[[101]],"rev_rates":{"a":1}}]`,
		`[{"iccid":` + iccid1 + `,"operation":"activate","service_plan":"m2m_4G","mdn_zip_code":"98801","ppu_first_name":"Ada","ppu_last_name":"Lovelace","ppu_address_line1":"P.O. Box 12","ppu_city":"Wenatchee","ppu_state":"WA","ppu_zip":"98801","ppu_country":"US"}]`,
		// BOM, escapes, unicode digits, null, a long field, trailing data.
		"\uFEFF" + `[{"iccid":"\u0038\u0039148000001234567898","operation":null}]`,
		`[{"iccid":"\uff18\uff19148000001234567898","operation":"suspend"}]`,
		`[{"iccid":` + iccid1 + `,"operation":"activate","service_plan":"` + strings.Repeat("m2m_4G ", 3000) + `","mdn_zip_code":"98801"}]`,
		`[{"iccid":` + iccid1 + `,"operation":"suspend"}] []`,
		`{"iccid":` + iccid1 + `}`,
		`[1,"x",null,true]`,
		`[]`,
		``,
	})

	f.Fuzz(func(t *testing.T, data []byte, optByte uint8) {
		if len(data) > maxFuzzInput {
			return
		}
		opt := fuzzOptions(optByte)
		reqs, err := parseWithin(t, func() ([]DeviceRequest, error) { return ParseJSON(bytes.NewReader(data), opt) })
		if err == nil {
			checkAccepted(t, reqs)
			var elems []map[string]json.RawMessage
			if err := json.Unmarshal(stripBOM(data), &elems); err != nil {
				t.Fatalf("accepted a file that is not an array of objects: %v", err)
			}
			if len(elems) != len(reqs) {
				t.Fatalf("file has %d objects, %d accepted", len(elems), len(reqs))
			}
			for i, r := range reqs {
				if r.Row != i+1 {
					t.Fatalf("object %d accepted as row %d", i+1, r.Row)
				}
				checkRowMatches(t, r, jsonCells(t, elems[i]), opt.DefaultOperation)
			}
			return
		}
		if reqs != nil {
			t.Fatalf("requests returned with an error")
		}
		var ve *ValidationError
		if !errors.As(err, &ve) {
			// Only JSON's own whitespace counts: bytes.TrimSpace would also
			// drop \v, \f, U+0085 and U+00A0, which make the file invalid JSON.
			if trimmed := bytes.Trim(stripBOM(data), " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '[' &&
				json.Valid(trimmed) {
				t.Fatalf("plain error for a well-formed JSON array: %v", err)
			}
			return
		}
		checkReport(t, ve, len(data)+1)
	})
}

// jsonCells turns the scalar members of an accepted object into the text a
// CSV cell would hold: strings trimmed, null empty, numbers and booleans as
// written.
func jsonCells(t *testing.T, obj map[string]json.RawMessage) map[string]string {
	t.Helper()
	cells := map[string]string{}
	for k, raw := range obj {
		if !isKnownColumn(k) {
			t.Fatalf("accepted an object with the unknown key %q", k)
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("member %q: %v", k, err)
		}
		switch x := v.(type) {
		case nil:
		case string:
			cells[k] = strings.TrimSpace(x)
		case bool, float64:
			cells[k] = string(raw)
		}
	}
	return cells
}
