package changefile

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/iot-ops/tsbulk/change"
)

func goodPPU() PPU {
	return PPU{
		FirstName:    "Ada",
		LastName:     "Lovelace",
		AddressLine1: "100 Main St",
		AddressLine2: "Suite 4",
		City:         "Wenatchee",
		State:        "wa",
		Zip:          "98801",
		Country:      "us",
	}
}

// fails is the expectation of one invalid field: its message holds frag.
func fails(field, frag string) map[string]string { return map[string]string{field: frag} }

func TestValidatePPU(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*PPU)
		want   map[string]string // field → message fragment
	}{
		{"valid, lower-case state and country", func(*PPU) {}, nil},
		{"address line 2 optional", func(p *PPU) { p.AddressLine2 = "" }, nil},
		{"zip+4", func(p *PPU) { p.Zip = "98801-1234" }, nil},
		{"country USA", func(p *PPU) { p.Country = "USA" }, nil},
		{"territories and DC", func(p *PPU) { p.State = "pr" }, nil},
		{"guam", func(p *PPU) { p.State = "GU" }, nil},
		{"DC", func(p *PPU) { p.State = "Dc" }, nil},
		{"name at limit", func(p *PPU) { p.FirstName = strings.Repeat("é", 50) }, nil},
		{"line at limit", func(p *PPU) { p.AddressLine1 = strings.Repeat("a", 100) }, nil},
		{"all required missing", func(p *PPU) { *p = PPU{AddressLine2: "Unit 5"} }, map[string]string{
			"ppu_first_name":    "is required",
			"ppu_last_name":     "is required",
			"ppu_address_line1": "is required",
			"ppu_city":          "is required",
			"ppu_state":         "is required",
			"ppu_zip":           "is required",
			"ppu_country":       "is required",
		}},
		{"whitespace only counts as missing", func(p *PPU) { p.City = "   " }, fails("ppu_city", "is required")},
		{"bad state", func(p *PPU) { p.State = "XX" }, fails("ppu_state", "2-letter US state")},
		{"state spelled out", func(p *PPU) { p.State = "Washington" }, fails("ppu_state", "2-letter US state")},
		{"military state", func(p *PPU) { p.State = "AE" }, fails("ppu_state", "2-letter US state")},
		{"zip short", func(p *PPU) { p.Zip = "9880" }, fails("ppu_zip", "5-digit ZIP")},
		{"zip+4 malformed", func(p *PPU) { p.Zip = "98801-12" }, fails("ppu_zip", "5-digit ZIP")},
		{"zip 9 digits without dash", func(p *PPU) { p.Zip = "988011234" }, fails("ppu_zip", "5-digit ZIP")},
		{"country", func(p *PPU) { p.Country = "Canada" }, fails("ppu_country", "US or USA")},
		{"po box line 1", func(p *PPU) { p.AddressLine1 = "P.O. Box 12" }, fails("ppu_address_line1", "PO box")},
		{"po box line 2", func(p *PPU) { p.AddressLine2 = "PO Box 12" }, fails("ppu_address_line2", "PO box")},
		{"name too long", func(p *PPU) { p.LastName = strings.Repeat("x", 51) }, fails("ppu_last_name", "at most 50")},
		{
			"line too long",
			func(p *PPU) { p.AddressLine2 = strings.Repeat("x", 101) },
			fails("ppu_address_line2", "at most 100"),
		},
		{
			"control character",
			func(p *PPU) { p.AddressLine1 = "100 Main St\nApt 4" },
			fails("ppu_address_line1", "control character"),
		},
		{"invalid UTF-8", func(p *PPU) { p.City = "Caf\xe9" }, fails("ppu_city", "UTF-8")},
		// ThingSpace refuses ', < and \ (INPUT_INVALID.Request.InvalidCharacter):
		// one such name would fail the whole activation batch at Verizon.
		{"PPU with an apostrophe", func(p *PPU) { p.LastName = "O'Brien" }, fails("ppu_last_name", "apostrophe (')")},
		{"apostrophe in first name", func(p *PPU) { p.FirstName = "D'Arcy" }, fails("ppu_first_name", "ThingSpace refuses")},
		{"less-than in address", func(p *PPU) { p.AddressLine1 = "100 Main St <rear>" }, fails("ppu_address_line1", "(<)")},
		{"backslash in line 2", func(p *PPU) { p.AddressLine2 = `Suite 4\5` }, fails("ppu_address_line2", `backslash (\)`)},
		{"apostrophe in city", func(p *PPU) { p.City = "Coeur d'Alene" }, fails("ppu_city", "apostrophe")},
		{"apostrophe in state", func(p *PPU) { p.State = "W'A" }, fails("ppu_state", "apostrophe")},
		{"backslash in zip", func(p *PPU) { p.Zip = `98801\` }, fails("ppu_zip", "backslash")},
		{"less-than in country", func(p *PPU) { p.Country = "<US" }, fails("ppu_country", "(<)")},
		{
			"several refused characters in one field",
			func(p *PPU) { p.LastName = `O'Brien<\` },
			fails("ppu_last_name", "apostrophe (')"),
		},
		{
			"other punctuation is fine",
			func(p *PPU) { p.LastName = "Smith-Jones, Jr."; p.AddressLine1 = "100 Main St #4 & Co. (rear)" },
			nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := goodPPU()
			tt.modify(&p)
			errs := ValidatePPU(p)
			got := map[string]string{}
			for _, e := range errs {
				assert.Zero(t, e.Row)
				got[e.Field] = e.Message
			}
			assert.Len(t, got, len(errs), "one error per field")
			assert.Len(t, got, len(tt.want), "errors: %v", errs)
			for field, frag := range tt.want {
				assert.Contains(t, got[field], frag, field)
			}
		})
	}
}

func TestPOBoxDetection(t *testing.T) {
	caught := []string{
		"PO Box 12",
		"P.O. Box 12",
		"p.o. box 12",
		"P O Box 12",
		"P. O. Box 12",
		"PO  BOX 12",
		"P.O.Box 12",
		"PO. Box 12",
		"POBox 12",
		"pobox12",
		"PO Box",
		"P.O. Box",
		"PO Box #7",
		"PO Bx 7",
		"P.O. Drawer 4",
		"P0 Box 12", // zero for O
		"POB 5",
		"pob 5",
		"POB #5",
		"P.O.B. 5",
		"Post Office Box 9",
		"post office box",
		"POST OFFICE BOX 9",
		"PostOffice Box 3",
		"Postal Box 1",
		"100 Main St PO Box 3",
	}
	for _, s := range caught {
		assert.True(t, isPOBox(s), "should be a PO box: %q", s)
	}
	allowed := []string{
		"Box Elder Rd",
		"12 Box Elder Rd",
		"Pobox Street",
		"12 Pobox Street",
		"12 Po Boxwood Lane",
		"123 Poplar St",
		"1 Post Office Rd",
		"100 Apollo Box Rd",
		"9 Pine Box Rd",
		"RR 2 Box 15", // rural-route boxes are physical locations
		"Pob Hill Rd",
		"Shipbox Way 5",
		"500 Pointe Blvd",
	}
	for _, s := range allowed {
		assert.False(t, isPOBox(s), "should be allowed: %q", s)
	}
}

func TestNormalizePPU(t *testing.T) {
	p := goodPPU()
	p.FirstName = "  Ada "
	n := normalizePPU(p)
	assert.Equal(t, "Ada", n.FirstName)
	assert.Equal(t, "WA", n.State)
	assert.Equal(t, "USA", n.Country)
}

func TestPPUIsRedactedWhenPrinted(t *testing.T) {
	p := goodPPU()
	req := DeviceRequest{ICCID: iccidA, Operation: change.Activate, PPU: &p}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("request", "ppu", p, "req", req)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("request", "ppu", p)
	outputs := []string{
		fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p),
		fmt.Sprint(&p), fmt.Sprintf("%+v", &p), fmt.Sprintf("%#v", &p),
		fmt.Sprint(req), fmt.Sprintf("%+v", req), fmt.Sprintf("%#v", req),
		fmt.Sprintf("%v", []DeviceRequest{req}),
		logged.String(),
	}
	for _, out := range outputs {
		assertNoPPU(t, out, p)
	}
	assert.Contains(t, fmt.Sprintf("%+v", req), iccidA, "the rest of the request still prints")
}

// assertNoPPU fails if text contains any distinctive PPU value.
func assertNoPPU(t *testing.T, text string, p PPU) {
	t.Helper()
	lower := strings.ToLower(text)
	for _, v := range []string{p.FirstName, p.LastName, p.AddressLine1, p.AddressLine2, p.City} {
		v = strings.TrimSpace(v)
		if len(v) < 4 {
			continue
		}
		assert.NotContains(t, lower, strings.ToLower(v), "PPU value leaked")
	}
}
