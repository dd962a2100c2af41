package changefile

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
)

// ppuFuzzColumns is the header of the files FuzzReportHidesPPU builds.
var ppuFuzzColumns = []string{"iccid", "operation", "service_plan", "mdn_zip_code",
	"ppu_first_name", "ppu_last_name", "ppu_address_line1", "ppu_address_line2", "ppu_city", "ppu_state", "ppu_zip", "ppu_country"}

// Layouts of the built file.
const (
	layoutCSVLF   = iota // CSV, \n line endings
	layoutCSVCRLF        // CSV, \r\n (Windows)
	layoutCSVCR          // CSV, \r only (classic Mac "CSV (Macintosh)" export)
	layoutJSON
	numLayouts
)

// FuzzReportHidesPPU checks that no problem report quotes a PPU name or
// address, whatever the values and the file layout. It builds a one-device
// file from fuzzed values twice: as given, and with the names and city
// ROT13-ed and the address lines' letters case-swapped (digits 1-9 rotated
// in all of them). Neither change can alter what validation decides, so
// the two reports must be identical; a report that quotes one of these
// values differs. An accepted file must come back with the same PPU, so no
// value is mixed up with another.
func FuzzReportHidesPPU(f *testing.F) {
	const iccid, plan = "89148000001234567898", "m2m_4G"
	for _, s := range [][]string{
		{iccid, "activate", plan, "98801", "Ada", "Lovelace", "100 Main St, Building 2", "Suite 4", "Wenatchee", "wa", "98801-1234", "US"},
		{iccid, "activate", plan, "98801", "Zebulon", "", "PO Box 4242", "", "Quahog", "ZZ", "1234", "Canada"},
		{iccid, "activate", plan, "98801", "Quixote\tBarataria", "Dulcinea" + strings.Repeat("z", 60), "P.O. Box 12", "Post Office Box 777", "Toboso\xff", "Mancha", "Sancho", "Narnia"},
		{iccid, "suspend", "", "", "Dana", "Reyes", "1200 Harbor Blvd", "Dock 4", "Oakland", "CA", "94607", "USA"},
		{"8914800000123456788", "frobnicate", plan, "9880", "Sam \"Sammy\"", "O'Kafor", "77 Industrial Pkwy\nRear", "", "Columbus", "OH", "43215", "usa"},
	} {
		for layout := range uint8(numLayouts) {
			f.Add(layout, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11])
		}
	}

	f.Fuzz(
		func(t *testing.T, layout uint8, iccid, op, plan, mdnZip, first, last, line1, line2, city, state, zip, country string) {
			values := []string{iccid, op, plan, mdnZip, first, last, line1, line2, city, state, zip, country}
			size := 0
			for _, v := range values {
				size += len(v)
			}
			if size > maxFuzzInput {
				return
			}
			layout %= numLayouts
			hidden := append([]string(nil), values...)
			for i := 4; i <= 8; i++ {
				if i == 6 || i == 7 { // address lines: keep what a PO box check reads
					hidden[i] = swapCaseRotateDigits(hidden[i])
				} else {
					hidden[i] = rot13RotateDigits(hidden[i])
				}
			}

			parse := func(vals []string) ([]DeviceRequest, error) {
				data := buildOneDeviceFile(t, layout, vals)
				return parseWithin(t, func() ([]DeviceRequest, error) {
					if layout == layoutJSON {
						return ParseJSON(bytes.NewReader(data), Options{})
					}
					return ParseCSV(bytes.NewReader(data), Options{})
				})
			}
			reqs, err := parse(values)
			reqs2, err2 := parse(hidden)

			if (err == nil) != (err2 == nil) {
				t.Fatalf("changing PPU letters changed the verdict:\n%v\n---\n%v", err, err2)
			}
			if err != nil {
				if err.Error() != err2.Error() {
					t.Fatalf("the report depends on PPU values (it quotes them):\n%v\n---\n%v", err, err2)
				}
				return
			}
			checkAccepted(t, reqs)
			checkAccepted(t, reqs2)
			if len(reqs) != 1 || len(reqs2) != 1 {
				t.Fatalf("one device in the file, %d/%d accepted", len(reqs), len(reqs2))
			}
			p, p2 := reqs[0].PPU, reqs2[0].PPU
			if (p == nil) != (p2 == nil) {
				t.Fatalf("PPU accepted in one version only")
			}
			if p != nil {
				want := *p
				want.FirstName, want.LastName, want.City = rot13RotateDigits(
					p.FirstName,
				), rot13RotateDigits(
					p.LastName,
				), rot13RotateDigits(
					p.City,
				)
				want.AddressLine1, want.AddressLine2 = swapCaseRotateDigits(
					p.AddressLine1,
				), swapCaseRotateDigits(
					p.AddressLine2,
				)
				if want != *p2 {
					t.Fatalf("accepted PPU does not follow the file's values")
				}
			}
		},
	)
}

// buildOneDeviceFile writes the header and one row of values in a layout.
func buildOneDeviceFile(t *testing.T, layout uint8, vals []string) []byte {
	t.Helper()
	if layout == layoutJSON {
		obj := map[string]string{}
		for i, c := range ppuFuzzColumns {
			if vals[i] != "" {
				obj[c] = vals[i]
			}
		}
		b, err := json.Marshal([]map[string]string{obj})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	eol := map[uint8]string{layoutCSVLF: "\n", layoutCSVCRLF: "\r\n", layoutCSVCR: "\r"}[layout]
	var out bytes.Buffer
	for _, rec := range [][]string{ppuFuzzColumns, vals} {
		var line bytes.Buffer
		w := csv.NewWriter(&line)
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		out.Write(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
		out.WriteString(eol)
	}
	return out.Bytes()
}

// rotateDigit maps 1-9 onto 1-9 and keeps 0 (which a PO box check may read
// as the letter O).
func rotateDigit(c byte) byte {
	if '1' <= c && c <= '9' {
		return '1' + (c-'1'+4)%9
	}
	return c
}

// mapASCII changes ASCII bytes only, so invalid UTF-8 stays invalid (unlike
// strings.Map, which would replace it).
func mapASCII(s string, f func(byte) byte) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x80 {
			b[i] = f(c)
		}
	}
	return string(b)
}

// rot13RotateDigits changes every ASCII letter and digit 1-9 but nothing a
// validator of free text looks at: length, UTF-8 validity, spaces and
// control characters stay.
func rot13RotateDigits(s string) string {
	return mapASCII(s, func(c byte) byte {
		switch {
		case 'a' <= c && c <= 'z':
			return 'a' + (c-'a'+13)%26
		case 'A' <= c && c <= 'Z':
			return 'A' + (c-'A'+13)%26
		}
		return rotateDigit(c)
	})
}

// swapCaseRotateDigits changes the case of ASCII letters and rotates digits
// 1-9; a case-insensitive PO box check reads the result the same way.
func swapCaseRotateDigits(s string) string {
	return mapASCII(s, func(c byte) byte {
		switch {
		case 'a' <= c && c <= 'z':
			return c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			return c - 'A' + 'a'
		}
		return rotateDigit(c)
	})
}
