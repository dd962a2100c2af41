package changefile

// The fuzz targets' oracle for accepted rows and for error reports, written
// from the promises of README.md and the package documentation rather than
// by calling the validation code under test.

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/iot-ops/tsbulk/change"
)

// ---- accepted rows ----

// fuzzKnownColumns are the column names of the README, in its order.
var fuzzKnownColumns = []string{
	"iccid", "operation", "imei", "service_plan", "mdn_zip_code", "sku_number", "reason_code", "etf_waiver",
	"delete_after_deactivation",
	"ppu_first_name", "ppu_last_name", "ppu_address_line1", "ppu_address_line2", "ppu_city", "ppu_state", "ppu_zip", "ppu_country",
	"rev_customer_id", "rev_service_type_id", "rev_provider_id", "rev_product_ids", "rev_rates",
}

func isKnownColumn(name string) bool {
	for _, c := range fuzzKnownColumns {
		if c == name {
			return true
		}
	}
	return false
}

// fuzzUSCodes are the places of use ThingSpace takes: the 50 states, DC and
// the inhabited territories.
var fuzzUSCodes = strings.Fields(
	`AK AL AR AS AZ CA CO CT DC DE FL GA GU HI IA ID IL IN KS KY LA MA MD ME MI MN MO MP MS MT
	NC ND NE NH NJ NM NV NY OH OK OR PA PR RI SC SD TN TX UT VA VI VT WA WI WV WY`,
)

func asciiDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// luhnCheck validates the last digit of s the textbook way: double every
// second digit counted from the right, starting left of the check digit, and
// sum the digits of the products.
func luhnCheck(s string) bool {
	total := 0
	for i := 0; i < len(s); i++ {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			d = d/10 + d%10
		}
		total += d
	}
	return total%10 == 0
}

// cleanText is text that can be sent on: trimmed, valid UTF-8, no control
// characters, at most maxRunes characters.
func cleanText(s string, maxRunes int) error {
	switch {
	case s != strings.TrimSpace(s):
		return errors.New("not trimmed")
	case !utf8.ValidString(s):
		return errors.New("not UTF-8")
	case utf8.RuneCountInString(s) > maxRunes:
		return fmt.Errorf("longer than %d", maxRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}

// looksLikePOBox is a deliberately narrow recogniser of post-office boxes
// ("PO Box 12", "P.O. Box 12", "p o box#12", "Post Office Box 9"): anything
// it flags must have been refused. Lower-case ASCII only, so it never flags
// more than a case-insensitive validator would.
func looksLikePOBox(line string) bool {
	l := strings.ToLower(line)
	for i := 0; i < len(l); i++ {
		if i > 0 && isWordByte(l[i-1]) {
			continue // must start a word
		}
		rest := l[i:]
		for _, prefix := range []string{"post office box", "p.o. box", "p. o. box", "p.o.box", "p o box", "po box", "pobox"} {
			if !strings.HasPrefix(rest, prefix) {
				continue
			}
			tail := strings.TrimLeft(rest[len(prefix):], " #")
			if tail != "" && tail[0] >= '0' && tail[0] <= '9' {
				return true
			}
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isZip(s string) bool {
	switch len(s) {
	case 5:
		return asciiDigits(s)
	case 10:
		return asciiDigits(s[:5]) && s[5] == '-' && asciiDigits(s[6:])
	}
	return false
}

// isRate is a non-negative decimal with at most 4 decimal places.
func isRate(s string) bool {
	whole, frac, dot := strings.Cut(s, ".")
	if !asciiDigits(whole) {
		return false
	}
	return !dot || asciiDigits(frac) && len(frac) <= 4
}

// checkAccepted holds every accepted request to the README's promises.
func checkAccepted(t *testing.T, reqs []DeviceRequest) {
	t.Helper()
	if len(reqs) == 0 {
		t.Fatalf("file accepted with no device rows")
	}
	seen := map[string]int{}
	lastRow := 0
	for _, r := range reqs {
		bad := func(format string, args ...any) {
			t.Helper()
			t.Fatalf(
				"accepted row %d (%s %s) is invalid: %s",
				r.Row,
				r.Operation,
				r.ICCID,
				fmt.Sprintf(format, args...),
			)
		}
		if r.Row <= lastRow {
			bad("row numbers must increase (previous %d)", lastRow)
		}
		lastRow = r.Row

		if n := len(r.ICCID); n < 19 || n > 20 || !asciiDigits(r.ICCID) || !luhnCheck(r.ICCID) {
			bad("ICCID %q is not 19-20 digits with a valid Luhn digit", r.ICCID)
		}
		if first, dup := seen[r.ICCID]; dup {
			bad("ICCID also accepted on row %d", first)
		}
		seen[r.ICCID] = r.Row
		imei15 := len(r.IMEI) == 15 && asciiDigits(r.IMEI) && luhnCheck(r.IMEI)
		imeisv := len(r.IMEI) == 16 && asciiDigits(r.IMEI)
		if r.IMEI != "" && !imei15 && !imeisv {
			bad("IMEI %q is neither 15 digits with a valid Luhn digit nor 16 digits (IMEISV)", r.IMEI)
		}
		switch r.Operation {
		case change.Activate, change.Suspend, change.Restore, change.Deactivate, change.Inventory:
		default:
			bad("operation %q", r.Operation)
		}

		if r.Operation == change.Activate {
			if r.ServicePlan == "" {
				bad("activation without service plan")
			}
			if err := cleanText(r.ServicePlan, 100); err != nil {
				bad("service plan: %v", err)
			}
			if len(r.MdnZipCode) != 5 || !asciiDigits(r.MdnZipCode) {
				bad("MDN ZIP %q is not 5 digits", r.MdnZipCode)
			}
			if r.IMEI == "" && r.SkuNumber == "" {
				bad("activation with neither IMEI nor SKU")
			}
			if len(r.SkuNumber) > 64 || strings.Trim(r.SkuNumber,
				"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") != "" {
				bad("SKU %q is not at most 64 letters, digits, - _ . /", r.SkuNumber)
			}
		} else if r.ServicePlan != "" || r.MdnZipCode != "" || r.SkuNumber != "" || r.PPU != nil || r.Billing != nil {
			bad("activation fields on a %s row", r.Operation)
		}

		if r.Operation == change.Deactivate {
			if len(r.ReasonCode) != 2 || strings.ToUpper(r.ReasonCode) != r.ReasonCode ||
				!isWordByte(r.ReasonCode[0]) ||
				!isWordByte(r.ReasonCode[1]) ||
				strings.Contains(r.ReasonCode, "_") {
				bad("reason code %q is not 2 upper-case letters or digits", r.ReasonCode)
			}
		} else if r.ReasonCode != "" || r.EtfWaiver || r.DeleteAfterDeactivation != nil {
			bad("deactivation fields on a %s row", r.Operation)
		}

		if p := r.PPU; p != nil {
			for name, v := range map[string]string{"first name": p.FirstName, "last name": p.LastName, "address line 1": p.AddressLine1, "city": p.City} {
				if v == "" {
					bad("PPU %s is empty", name)
				}
			}
			for name, v := range map[string]struct {
				s   string
				max int
			}{"first name": {p.FirstName, 50}, "last name": {p.LastName, 50}, "address line 1": {p.AddressLine1, 100},
				"address line 2": {p.AddressLine2, 100}, "city": {p.City, 100}} {
				if err := cleanText(v.s, v.max); err != nil {
					bad("PPU %s: %v", name, err)
				}
			}
			// ThingSpace refuses ', < and \ in a request
			// (INPUT_INVALID.Request.InvalidCharacter).
			for _, v := range []string{p.FirstName, p.LastName, p.AddressLine1, p.AddressLine2, p.City, p.State, p.Zip, p.Country} {
				if strings.ContainsAny(v, `'<\`) {
					bad("PPU holds a character ThingSpace refuses")
				}
			}
			if looksLikePOBox(p.AddressLine1) || looksLikePOBox(p.AddressLine2) {
				bad("PPU address is a PO box")
			}
			found := false
			for _, c := range fuzzUSCodes {
				found = found || p.State == c
			}
			if !found {
				bad("PPU state %q is not a US state or territory code", p.State)
			}
			if !isZip(p.Zip) {
				bad("PPU ZIP %q", p.Zip)
			}
			if p.Country != "USA" {
				bad("PPU country %q", p.Country)
			}
		}

		if b := r.Billing; b != nil {
			// Rev.io requires the customer and the provider of a service
			// line (postv1_services); the README requires the service type.
			if b.CustomerID <= 0 || b.ServiceTypeID <= 0 || b.ProviderID <= 0 {
				bad("billing ids %d/%d/%d", b.CustomerID, b.ServiceTypeID, b.ProviderID)
			}
			if len(b.ProductIDs) != len(b.Rates) {
				bad("%d products but %d rates", len(b.ProductIDs), len(b.Rates))
			}
			for _, id := range b.ProductIDs {
				if id <= 0 {
					bad("product id %d", id)
				}
			}
			for _, rate := range b.Rates {
				if !isRate(rate) {
					bad("rate %q", rate)
				}
			}
		}
	}
}

// operationOf is what an operation cell asks for, per the README: one of the
// five names in any case, "deactive" for deactivate, empty for the default.
func operationOf(cell string, def change.Operation) (change.Operation, bool) {
	switch s := strings.ToLower(strings.TrimSpace(cell)); s {
	case "":
		return def, def != ""
	case "deactive":
		return change.Deactivate, true
	case "activate", "suspend", "restore", "deactivate", "inventory":
		return change.Operation(s), true
	}
	return "", false
}

// checkRowMatches compares an accepted request with the values its row
// holds, so that a row is never silently mixed up with another column or row.
func checkRowMatches(t *testing.T, r DeviceRequest, cells map[string]string, def change.Operation) {
	t.Helper()
	if r.ICCID != cells["iccid"] || r.IMEI != cells["imei"] {
		t.Fatalf(
			"row %d: accepted ICCID/IMEI %q/%q, file has %q/%q",
			r.Row,
			r.ICCID,
			r.IMEI,
			cells["iccid"],
			cells["imei"],
		)
	}
	op, ok := operationOf(cells["operation"], def)
	if !ok || op != r.Operation {
		t.Fatalf("row %d: accepted operation %q for cell %q (default %q)", r.Row, r.Operation, cells["operation"], def)
	}
	if r.Operation == change.Deactivate && (r.DeleteAfterDeactivation == nil) != (cells["delete_after_deactivation"] == "") {
		t.Fatalf("row %d: delete_after_deactivation %q accepted as %v", r.Row, cells["delete_after_deactivation"],
			r.DeleteAfterDeactivation)
	}
	if r.Operation != change.Activate {
		return
	}
	if r.ServicePlan != cells["service_plan"] || r.MdnZipCode != cells["mdn_zip_code"] ||
		r.SkuNumber != cells["sku_number"] {
		t.Fatalf("row %d: service plan / MDN ZIP / SKU differ from the file", r.Row)
	}
	anyPPU := false
	for k, v := range cells {
		anyPPU = anyPPU || strings.HasPrefix(k, "ppu_") && v != ""
	}
	if anyPPU != (r.PPU != nil) {
		t.Fatalf("row %d: PPU given %v but accepted PPU %v", r.Row, anyPPU, r.PPU != nil)
	}
	if p := r.PPU; p != nil && (p.FirstName != cells["ppu_first_name"] || p.LastName != cells["ppu_last_name"] ||
		p.AddressLine1 != cells["ppu_address_line1"] || p.AddressLine2 != cells["ppu_address_line2"] ||
		p.City != cells["ppu_city"] || p.Zip != cells["ppu_zip"] || !strings.EqualFold(p.State, cells["ppu_state"])) {
		t.Fatalf("row %d: accepted PPU differs from the file", r.Row)
	}
}

// ---- error reports ----

// goParserJargon is text of encoding/csv and encoding/json errors that
// means nothing to an operator.
var goParserJargon = []string{
	"parse error",
	`bare "`,
	"non-quoted-field",
	"quoted-field",
	"extraneous",
	"invalid character",
	"looking for beginning",
}

// checkReport holds a validation report to the README's promises: at least
// one problem; each on a row of the file (0 only for the file as a whole),
// in row order; fields are columns (or the unknown names being reported);
// no Go parser jargon.
func checkReport(t *testing.T, ve *ValidationError, maxRow int) {
	t.Helper()
	if len(ve.Errors) == 0 {
		t.Fatalf("validation error without problems")
	}
	last := 0
	for _, fe := range ve.Errors {
		switch {
		case fe.Message == "":
			t.Fatalf("problem without message: %+v", fe)
		case fe.Row < 0 || fe.Row > maxRow:
			t.Fatalf("problem on row %d of a file with at most %d: %v", fe.Row, maxRow, fe)
		case fe.Row < last:
			t.Fatalf("problems not in row order: row %d after row %d", fe.Row, last)
		case fe.Row == 0 && fe.Field != "":
			t.Fatalf("file-level problem names field %q: %v", fe.Field, fe)
		case fe.Field != "" && !isKnownColumn(fe.Field) && !strings.HasPrefix(fe.Message, "unknown column") && !strings.HasPrefix(fe.Message, "unknown key"):
			t.Fatalf("field %q is not a column: %v", fe.Field, fe)
		case utf8.RuneCountInString(fe.Field) > maxFieldRef+1:
			t.Fatalf("field reference not clipped: %q", fe.Field)
		}
		last = fe.Row
	}
	text := ve.Error()
	for _, j := range goParserJargon {
		if strings.Contains(text, j) {
			t.Fatalf("report contains parser jargon %q:\n%s", j, text)
		}
	}
}

// stripBOM drops a leading UTF-8 byte order mark, as the README's Excel
// exports carry one.
func stripBOM(b []byte) []byte { return bytes.TrimPrefix(b, []byte("\uFEFF")) }

// csvLines is an upper bound for row numbers of a CSV file.
func csvLines(data []byte) int { return bytes.Count(data, []byte("\n")) + 1 }

// csvShape reads a CSV file independently: its header cells, its device
// rows (line and cells by lower-cased trimmed header name), and the first
// syntax error with the number of device rows before it.
type csvShape struct {
	header      []string
	rows        []csvRow
	syntaxErr   *csv.ParseError
	errInHeader bool // the syntax error is on the header line
	rowsBefore  int  // device rows before the syntax error
}

type csvRow struct {
	line  int
	cells map[string]string
}

func readCSVShape(data []byte) csvShape {
	var s csvShape
	r := csv.NewReader(bytes.NewReader(stripBOM(data)))
	r.FieldsPerRecord = -1
	for {
		rec, err := r.Read()
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && s.syntaxErr == nil {
				s.syntaxErr, s.errInHeader, s.rowsBefore = pe, s.header == nil, len(s.rows)
				if s.header == nil {
					return s // nothing after a broken header can be read as rows
				}
				continue
			}
			if errors.As(err, &pe) {
				continue
			}
			return s
		}
		if s.header == nil {
			for _, c := range rec {
				s.header = append(s.header, strings.ToLower(strings.TrimSpace(c)))
			}
			continue
		}
		blank := true
		for _, c := range rec {
			blank = blank && strings.TrimSpace(c) == ""
		}
		if blank {
			continue
		}
		line, _ := r.FieldPos(0)
		row := csvRow{line: line, cells: map[string]string{}}
		for i, c := range rec {
			if i < len(s.header) {
				if _, dup := row.cells[s.header[i]]; !dup {
					row.cells[s.header[i]] = strings.TrimSpace(c)
				}
			}
		}
		s.rows = append(s.rows, row)
	}
}
