package changefile

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/iot-ops/tsbulk/luhn"
)

// scientific matches what spreadsheets make of a long digit string when the
// column is not formatted as text (8.91480E+19). The digits are lost, so the
// only useful message is how to avoid it.
var scientific = regexp.MustCompile(`^[0-9](\.[0-9]+)?[eE]\+?[0-9]+$`)

var errScientific = errors.New(
	"is in scientific notation (a spreadsheet converted it to a number and lost digits); " +
		"format the column as text and export again",
)

// ValidateICCID checks a SIM card number: 19 or 20 digits ending in a valid
// Luhn check digit (ITU-T E.118), so a mistyped number is caught here
// instead of failing device by device at ThingSpace. The error text names
// no value, so callers can prefix it with the row and field.
func ValidateICCID(s string) error {
	return validateLuhnNumber(s, 19, 20)
}

// ValidateIMEI checks a device's IMEI: 15 digits ending in a valid Luhn
// check digit, or the 16-digit IMEISV, which has no check digit (its last
// two digits are the software version). ThingSpace's DeviceId takes an IMEI
// of "up to 16 digits".
func ValidateIMEI(s string) error {
	if len(s) == 16 && luhn.AllDigits(s) {
		return nil
	}
	err := validateLuhnNumber(s, 15, 15)
	if err != nil && luhn.AllDigits(s) && len(s) != 15 {
		return fmt.Errorf("must be 15 digits (IMEI) or 16 (IMEISV), has %d", len(s))
	}
	return err
}

func validateLuhnNumber(s string, minLen, maxLen int) error {
	if s == "" {
		return errors.New("is empty")
	}
	if scientific.MatchString(s) {
		return errScientific
	}
	if !luhn.AllDigits(s) {
		return errors.New("must contain only digits 0-9")
	}
	if len(s) < minLen || len(s) > maxLen {
		if minLen == maxLen {
			return fmt.Errorf("must be %d digits, has %d", minLen, len(s))
		}
		return fmt.Errorf("must be %d or %d digits, has %d", minLen, maxLen, len(s))
	}
	if !luhn.Valid(s) {
		return errors.New("check digit is wrong")
	}
	return nil
}
