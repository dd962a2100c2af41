package changefile

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Known-good numbers. The check digits were computed by hand (and checked
// with an independent script), not with luhn.Valid, so the tests do not
// merely agree with the code under test.
const (
	iccidA     = "89148000001234567898" // Verizon-style 20 digits
	iccidB     = "89148000000000000019"
	iccidC     = "89148000000000000027"
	iccidD     = "89148000000000000035"
	iccidE     = "89148000001111111117"
	iccidDoc   = "89141390780800784259" // the ICCID in the ThingSpace SDK's activate example
	iccid19A   = "8914800000123456788"  // 19 digits
	iccid19B   = "8914800000000000006"
	imeiWiki   = "490154203237518" // Wikipedia's IMEI example
	imeiB      = "356938035643809"
	imeiBadDoc = "990013907835573"  // the IMEI in the SDK's activate example: its check digit is wrong
	imeiSV     = "4901542032375102" // an IMEISV: 14 digits of imeiWiki and a software version, no check digit
)

func TestValidateICCID(t *testing.T) {
	tests := []numberCase{
		{iccidA, ""},
		{iccidB, ""},
		{iccidDoc, ""},
		{iccid19A, ""},
		{iccid19B, ""},
		{"89148000001234567890", "check digit is wrong"},
		{"8914800000123456789", "check digit is wrong"}, // 19 digits, wrong check digit
		{"891480000012345678", "must be 19 or 20 digits, has 18"},
		{"891480000012345678988", "must be 19 or 20 digits, has 21"},
		{imeiWiki, "must be 19 or 20 digits, has 15"},
		{"8914800000123456789X", "only digits"},
		{"8914 8000 0012 3456 7898", "only digits"},
		{"8.91480E+19", "scientific notation"},
		{"8.9148E19", "scientific notation"},
		{"", "is empty"},
	}
	checkNumbers(t, ValidateICCID, tests)
}

func TestValidateIMEI(t *testing.T) {
	tests := []numberCase{
		{imeiWiki, ""},
		{imeiB, ""},
		{imeiBadDoc, "check digit is wrong"},
		{"490154203237519", "check digit is wrong"},
		{"49015420323751", "must be 15 digits (IMEI) or 16 (IMEISV), has 14"},
		{imeiSV, ""},             // an IMEISV: no check digit to verify
		{"4901542032375180", ""}, // an IMEISV too, whatever its last digits
		{"49015420323751802", "must be 15 digits (IMEI) or 16 (IMEISV), has 17"},
		{"490154203237510A", "only digits"},
		{"49015420323751A", "only digits"},
		{"4.90154E+14", "scientific notation"},
		{"", "is empty"},
	}
	checkNumbers(t, ValidateIMEI, tests)
}

// numberCase is an ICCID or IMEI and what its validation says: wantErr is a
// fragment of the error, "" when the number is valid.
type numberCase struct {
	in      string
	wantErr string
}

func checkNumbers(t *testing.T, validate func(string) error, tests []numberCase) {
	t.Helper()
	for _, tt := range tests {
		err := validate(tt.in)
		if tt.wantErr == "" {
			assert.NoError(t, err, tt.in)
			continue
		}
		if assert.Error(t, err, tt.in) {
			assert.Contains(t, err.Error(), tt.wantErr, tt.in)
		}
	}
}
