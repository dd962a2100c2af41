package changefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
)

func TestParseFileChoosesFormatByExtension(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
		return p
	}

	reqs, err := ParseFile(write("UPPER.CSV", "iccid\n"+iccidA+"\n"), Options{DefaultOperation: change.Suspend})
	require.NoError(t, err)
	assert.Len(t, reqs, 1)

	reqs, err = ParseFile(write("x.Json", `[{"iccid":"`+iccidA+`"}]`), Options{DefaultOperation: change.Suspend})
	require.NoError(t, err)
	assert.Len(t, reqs, 1)

	for _, name := range []string{"devices.txt", "devices.xlsx", "devices"} {
		_, err = ParseFile(write(name, "iccid\n"+iccidA+"\n"), Options{DefaultOperation: change.Suspend})
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "use .csv or .json", name)
	}

	_, err = ParseFile(filepath.Join(dir, "missing.csv"), Options{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrNotExist))

	// Validation problems come back unwrapped; read failures carry the path.
	_, err = ParseFile(write("bad.csv", "iccid\nnope\n"), Options{DefaultOperation: change.Suspend})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	_, err = ParseFile(write("broken.json", "[{"), Options{})
	require.Error(t, err)
	assert.False(t, errors.As(err, &ve))
	assert.Contains(t, err.Error(), "broken.json")
}

func TestErrorFormats(t *testing.T) {
	assert.Equal(
		t,
		"row 7, field iccid: check digit is wrong",
		FieldError{Row: 7, Field: "iccid", Message: "check digit is wrong"}.Error(),
	)
	assert.Equal(t, "row 7: has 2 fields", FieldError{Row: 7, Message: "has 2 fields"}.Error())
	assert.Equal(t, "field iccid: is missing", FieldError{Field: "iccid", Message: "is missing"}.Error())
	assert.Equal(t, "file has no device rows", FieldError{Message: "file has no device rows"}.Error())

	one := &ValidationError{Errors: []FieldError{{Row: 2, Field: "imei", Message: "check digit is wrong"}}}
	assert.Equal(t, "bulk change file has 1 problem:\nrow 2, field imei: check digit is wrong", one.Error())
	two := &ValidationError{Errors: []FieldError{{Row: 2, Field: "imei", Message: "a"}, {Row: 3, Message: "b"}}}
	assert.Equal(t, "bulk change file has 2 problems:\nrow 2, field imei: a\nrow 3: b", two.Error())
}

// TestErrorsNeverContainPPU feeds PPU values through every path that
// produces a message about a PPU column and checks none is echoed.
func TestErrorsNeverContainPPU(t *testing.T) {
	secret := PPU{
		FirstName:    "Zebulon" + strings.Repeat("z", 60), // too long
		LastName:     "Quixote\tBarataria",                // control character
		AddressLine1: "PO Box 4242 Rocinante",             // PO box
		AddressLine2: "Post Office Box 777 Dulcinea",      // PO box
		City:         "Toboso\xff",                        // invalid UTF-8
		State:        "Mancha",                            // not a state
		Zip:          "Sancho",                            // not a ZIP
		Country:      "Narnia",                            // not US
	}
	check := func(t *testing.T, text string) {
		t.Helper()
		lower := strings.ToLower(text)
		for _, v := range []string{"zebulon", "quixote", "barataria", "4242", "rocinante", "777", "dulcinea", "toboso", "mancha", "sancho", "narnia"} {
			assert.NotContains(t, lower, v)
		}
	}

	var all []string
	for _, fe := range ValidatePPU(secret) {
		all = append(all, fe.Error())
	}
	assert.Len(t, all, 8, "every field is wrong")
	check(t, strings.Join(all, "\n"))

	header := "iccid,operation,service_plan,mdn_zip_code,ppu_first_name,ppu_last_name,ppu_address_line1,ppu_address_line2,ppu_city,ppu_state,ppu_zip,ppu_country\n"
	ppuCells := strings.Join(
		[]string{
			secret.FirstName,
			`"` + secret.LastName + `"`,
			secret.AddressLine1,
			secret.AddressLine2,
			secret.City,
			secret.State,
			secret.Zip,
			secret.Country,
		},
		",",
	)
	csvText := header +
		iccidA + ",activate,m2m_4G,98801," + ppuCells + "\n" + // invalid PPU on an activate row
		iccidB + ",suspend,,," + ppuCells + "\n" + // PPU on a row that does not use it
		iccidC + ",bogus,,," + ppuCells + "\n" + // unknown operation
		iccidD + ",activate,m2m_4G,98801," + ppuCells + ",extra\n" // wrong field count
	_, err := ParseCSV(strings.NewReader(csvText), Options{})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.GreaterOrEqual(t, len(ve.Errors), 17)
	check(t, ve.Error())

	// A file whose header line is missing starts with personal data.
	_, err = ParseCSV(strings.NewReader(iccidA+",activate,m2m_4G,98801,"+ppuCells+"\n"), Options{})
	require.ErrorAs(t, err, &ve)
	check(t, ve.Error())

	jsonText := `[{"iccid":"` + iccidA + `","operation":"activate","imei":"` + imeiWiki + `","service_plan":"p","mdn_zip_code":"98801",` +
		`"ppu_first_name":"` + secret.FirstName + `","ppu_last_name":"Quixote\tBarataria","ppu_address_line1":"` + secret.AddressLine1 +
		`","ppu_address_line2":"` + secret.AddressLine2 + `","ppu_city":"Toboso\u0000","ppu_state":"` + secret.State +
		`","ppu_zip":"` + secret.Zip + `","ppu_country":"` + secret.Country + `"},` +
		`{"iccid":"` + iccidB + `","operation":"suspend","ppu_city":"Toboso","ppu_state":"Mancha"}]`
	_, err = ParseJSON(strings.NewReader(jsonText), Options{})
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Errors, 10)
	check(t, ve.Error())
}
