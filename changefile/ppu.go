package changefile

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PPU is a device's Primary Place of Use: the E911 address ThingSpace
// records at activation. It is personal data, so String, GoString and
// LogValue hide it and no error message in this package quotes it. JSON
// encoding is left alone on purpose: the value has to travel to the
// activation step.
type PPU struct {
	FirstName, LastName, AddressLine1, AddressLine2, City, State, Zip, Country string
}

const redactedPPU = "PPU{redacted}"

// String hides the contents so that %v and %+v of a request cannot leak them.
func (PPU) String() string { return redactedPPU }

// GoString hides the contents from %#v as well.
func (PPU) GoString() string { return redactedPPU }

// LogValue hides the contents from log/slog.
func (PPU) LogValue() slog.Value { return slog.StringValue(redactedPPU) }

// Length limits. ThingSpace documents none; these are generous bounds that
// still catch a whole row pasted into one cell.
const (
	maxNameLen = 50
	maxLineLen = 100
	maxCityLen = 100
)

// usStates holds the codes ThingSpace accepts for a US place of use: the
// states plus DC and the inhabited territories, which have E911 service.
var usStates = func() map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Fields(`AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD
		MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA
		WV WI WY DC PR GU VI AS MP`) {
		m[s] = true
	}
	return m
}()

var zipPattern = regexp.MustCompile(`^[0-9]{5}(-[0-9]{4})?$`)

// poBox recognises post-office boxes, which cannot be a place of use (E911
// needs a physical location). Alternatives, all case-insensitive:
//   - "PO Box", "P.O. Box", "P O Box", "P.O.Box", "PO Bx", "PO Drawer": a
//     separator between the O and the box word.
//   - "POBox 12", "POBX12": no separator, so a number must follow; otherwise
//     "Pobox Street" would be rejected.
//   - "POB 5", "P.O.B. 5": only with a number, for the same reason.
//   - "Post Office Box", "Postal Box".
//
// The leading \b keeps words like "Apo" or "Shop" from matching, and the
// trailing \b keeps "Po Boxwood Lane" legal. A bare "Box 12" is allowed:
// rural-route addresses ("RR 2 Box 15") use it for physical locations, and
// "Box Elder Rd" is a street.
var poBox = regexp.MustCompile(`(?i)` +
	`\bp[\s.]*[o0][\s.]+(box|bx|drawer)\b` +
	`|\bp[\s.]*[o0][\s.]*(box|bx)[\s.#:-]*[0-9]` +
	`|\bp[\s.]*[o0][\s.]*b[\s.#:-]*[0-9]` +
	`|\bpost[\s.]*(office|off|ofc)[\s.]*(box|bx|drawer)\b` +
	`|\bpostal\s+box\b`)

// isPOBox reports whether an address line names a post-office box.
func isPOBox(line string) bool { return poBox.MatchString(line) }

// refusedChars are the characters ThingSpace refuses in a request
// (INPUT_INVALID.Request.InvalidCharacter in its synchronous error table:
// apostrophe, "<", backslash), named as an operator would look for them.
var refusedChars = []struct {
	char rune
	name string
}{
	{'\'', "an apostrophe (')"},
	{'<', "a less-than sign (<)"},
	{'\\', `a backslash (\)`},
}

// refusedCharProblem names the first character of v that ThingSpace refuses,
// or returns "". ThingSpace refuses the whole request for it, so one
// "O'Brien" would fail every activation of its batch.
func refusedCharProblem(v string) string {
	for _, c := range refusedChars {
		if strings.ContainsRune(v, c.char) {
			return "contains " + c.name + ", which ThingSpace refuses (it takes no ', < or \\ in a place of use); " +
				"leave it out or replace it"
		}
	}
	return ""
}

// ValidatePPU checks a Primary Place of Use that the operator supplied. All
// fields except AddressLine2 are required, because ThingSpace rejects a
// partial address for the whole request. No field may hold a character
// ThingSpace refuses (see refusedChars). State and country are accepted in
// any case. Errors carry Row 0 and the CSV column name as Field, and never
// quote the values.
func ValidatePPU(p PPU) []FieldError {
	var errs []FieldError
	check := func(col column, v string, required bool, ok func(string) string) {
		v = strings.TrimSpace(v)
		msg := ""
		switch {
		case v == "" && required:
			msg = "is required when any ppu_ column is filled"
		case v != "":
			if msg = refusedCharProblem(v); msg == "" {
				msg = ok(v)
			}
		}
		if msg != "" {
			errs = append(errs, FieldError{Field: col.String(), Message: msg})
		}
	}
	name := func(v string) string { return textProblem(v, maxNameLen) }
	line := func(v string) string {
		if msg := textProblem(v, maxLineLen); msg != "" {
			return msg
		}
		if isPOBox(v) {
			return "must be a street address, not a PO box (E911 needs the place where the device is)"
		}
		return ""
	}

	check(colPPUFirstName, p.FirstName, true, name)
	check(colPPULastName, p.LastName, true, name)
	check(colPPUAddressLine1, p.AddressLine1, true, line)
	check(colPPUAddressLine2, p.AddressLine2, false, line)
	check(colPPUCity, p.City, true, func(v string) string { return textProblem(v, maxCityLen) })
	check(colPPUState, p.State, true, func(v string) string {
		if !usStates[strings.ToUpper(v)] {
			return "must be a 2-letter US state or territory code such as CA, DC or PR"
		}
		return ""
	})
	check(colPPUZip, p.Zip, true, func(v string) string {
		if !zipPattern.MatchString(v) {
			return "must be a 5-digit ZIP code or ZIP+4 such as 12345-6789"
		}
		return ""
	})
	check(colPPUCountry, p.Country, true, func(v string) string {
		if !isUSA(v) {
			return "must be US or USA (ThingSpace takes only US places of use)"
		}
		return ""
	})
	return errs
}

func isUSA(c string) bool { return strings.EqualFold(c, "US") || strings.EqualFold(c, "USA") }

// normalizePPU returns the form sent to ThingSpace: trimmed, state in upper
// case, country spelled "USA". Call it only on a PPU that passed ValidatePPU.
func normalizePPU(p PPU) PPU {
	t := strings.TrimSpace
	return PPU{
		FirstName:    t(p.FirstName),
		LastName:     t(p.LastName),
		AddressLine1: t(p.AddressLine1),
		AddressLine2: t(p.AddressLine2),
		City:         t(p.City),
		State:        strings.ToUpper(t(p.State)),
		Zip:          t(p.Zip),
		Country:      "USA",
	}
}

// textProblem describes why free text cannot be sent on, or returns "". The
// message never includes the text, since it may be personal data.
func textProblem(v string, maxLen int) string {
	if !utf8.ValidString(v) {
		return "is not valid UTF-8 text; save the file as UTF-8"
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return "contains a line break, tab or other control character"
		}
	}
	if n := utf8.RuneCountInString(v); n > maxLen {
		return fmt.Sprintf("is too long: at most %d characters, has %d", maxLen, n)
	}
	return ""
}
