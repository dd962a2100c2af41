package changefile

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParseCSV feeds arbitrary bytes to the CSV parser. A failure is a
// panic, a parse that does not return, an accepted row that breaks the
// README's rules or does not match the file, a problem report without
// row/field or with parser jargon, or a plain error (a bytes reader cannot
// fail, so every problem is the file's and belongs in the report).
func FuzzParseCSV(f *testing.F) {
	addSeedFiles(f, []uint8{0, 2}, "testdata/*.csv", "../harness/demo/*.csv")
	const (
		iccid1, iccid2 = "89148000001234567898", "89148000000000000019"
		full           = "iccid,operation,imei,service_plan,mdn_zip_code,ppu_first_name,ppu_last_name,ppu_address_line1,ppu_address_line2,ppu_city,ppu_state,ppu_zip,ppu_country,rev_customer_id,rev_service_type_id,rev_provider_id,rev_product_ids,rev_rates\n"
	)
	addSeeds(f, []string{
		// Stray and unclosed quotes, in a row and in the header.
		"iccid,operation,ppu_first_name\n" + iccid1 + ",activate,Dana \"DJ\" Reyes\n" + iccid2 + ",suspend,\n",
		"iccid,operation\n" + iccid1 + ",\"suspend\n" + iccid2 + ",suspend\n",
		"iccid,operation\n\"" + iccid1 + "\"x,suspend\n",
		"iccid,\"oper\"ation\n" + iccid1 + ",suspend\n",
		// BOM, CRLF, classic Mac CR, blank lines and a quoted line break.
		"\uFEFFiccid,operation\r\n" + iccid1 + ",suspend\r\n\r\n,\r\n" + iccid2 + ",\"rest\r\nore\"\r\n",
		"iccid,operation\r" + iccid1 + ",suspend\r" + iccid2 + ",restore\r",
		// A complete activation, and one with a long field.
		full + iccid1 + ",activate,490154203237518,m2m_4G,98801,Ada,Lovelace,\"100 Main St, Building 2\",Suite 4,Wenatchee,wa,98801-1234,US,1001,5,3,101;102,9.99; 0.5\n",
		full + iccid1 + ",activate,,m2m_4G,98801,Ada,Lovelace," + strings.Repeat("Long Street ", 2000) + ",,Wenatchee,WA,98801,USA,,,,,\n",
		// An activation by SKU with a 16-digit IMEI beside one by SKU alone,
		// and deactivations choosing whether ThingSpace keeps the device.
		"iccid,operation,imei,service_plan,mdn_zip_code,sku_number,delete_after_deactivation\n" +
			iccid1 + ",activate,4901542032375102,m2m_4G,98801,SM-T387VZKAVZW,\n" +
			iccid2 + ",activate,,m2m_4G,98801,SM T387,\n" +
			"89148000000000000027,deactivate,,,,,no\n89148000000000000035,deactive,,,,,maybe\n",
		// Unicode digits (full-width, Arabic-Indic), scientific notation, duplicates.
		"iccid,operation\n\uFF18\uFF19\uFF11\uFF14\uFF18000001234567898,suspend\n\u0668\u0669\u0661\u0664\u0668000001234567898,suspend\n8.91480E+19,suspend\n",
		"iccid,operation\n" + iccid1 + ",suspend\n " + iccid1 + " ,restore\n",
		// Header quirks: case, spaces, duplicates, unnamed and unknown columns.
		" ICCID ,Operation,,colour,operation\n" + iccid1 + ",suspend,,blue,restore\n",
		"iccid\n" + iccid1 + "\n",
		"",
	})

	f.Fuzz(func(t *testing.T, data []byte, optByte uint8) {
		if len(data) > maxFuzzInput {
			return
		}
		opt := fuzzOptions(optByte)
		reqs, err := parseWithin(t, func() ([]DeviceRequest, error) { return ParseCSV(bytes.NewReader(data), opt) })
		shape := readCSVShape(data)
		if err == nil {
			checkAccepted(t, reqs)
			if shape.syntaxErr != nil {
				t.Fatalf("file with a CSV syntax error on line %d accepted", shape.syntaxErr.Line)
			}
			if len(shape.rows) != len(reqs) {
				t.Fatalf("file has %d device rows, %d accepted", len(shape.rows), len(reqs))
			}
			for i, r := range reqs {
				if r.Row != shape.rows[i].line {
					t.Fatalf("request %d is row %d, the file has it on line %d", i, r.Row, shape.rows[i].line)
				}
				checkRowMatches(t, r, shape.rows[i].cells, opt.DefaultOperation)
			}
			return
		}
		if reqs != nil {
			t.Fatalf("requests returned with an error")
		}
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("plain error instead of a row/field report: %v", err)
		}
		checkReport(t, ve, csvLines(data))

		// A syntax error is a problem of its row, named with its field or
		// column, unless the row is past the row limit (not checked).
		if pe := shape.syntaxErr; pe != nil && (shape.errInHeader || shape.rowsBefore < maxRowsOf(opt)) {
			found := false
			for _, fe := range ve.Errors {
				if fe.Row == pe.StartLine {
					found = found || fe.Field != "" || strings.Contains(fe.Message, "column") ||
						strings.Contains(fe.Message, "header")
				}
			}
			if !found {
				t.Fatalf(
					"CSV syntax error on line %d not reported on row %d with a field or column:\n%v",
					pe.Line,
					pe.StartLine,
					ve,
				)
			}
		}
	})
}

func maxRowsOf(opt Options) int {
	if opt.MaxRows > 0 {
		return opt.MaxRows
	}
	return defaultMaxRows
}
