package luhn

import "testing"

func TestAllDigits(t *testing.T) {
	for s, want := range map[string]bool{"0123456789": true, "7": true, "": false, "12a": false, " 12": false,
		"１２": false, "-1": false} {
		if got := AllDigits(s); got != want {
			t.Errorf("AllDigits(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestLuhn(t *testing.T) {
	for _, good := range []string{"79927398713", "490154203237518", "89148000000000000019"} {
		if !Valid(good) {
			t.Errorf("%s should pass Luhn", good)
		}
		if d := CheckDigit(good[:len(good)-1]); d != good[len(good)-1] {
			t.Errorf("check digit of %s: got %c", good[:len(good)-1], d)
		}
	}
	for _, bad := range []string{"79927398710", "490154203237519", "8914800000000000001", "0", "", "7992739871x"} {
		if Valid(bad) {
			t.Errorf("%s should fail Luhn", bad)
		}
	}
}

// The check digits were computed by hand (and checked with an independent
// script), not with Valid, so the test does not merely agree with the code.
func TestValid(t *testing.T) {
	for s, want := range map[string]bool{
		"79927398713":          true, // the textbook example
		"79927398710":          false,
		"79927398714":          false,
		"89148000001234567898": true, // Verizon-style 20 digits
		"89141390780800784259": true, // the ICCID in the ThingSpace SDK's activate example
		"8914800000123456788":  true, // 19 digits
		"490154203237518":      true, // Wikipedia's IMEI example
		"356938035643809":      true,
		"990013907835573":      false, // the IMEI in the SDK's activate example: its check digit is wrong
		"89148000001234567890": false,
		"00":                   true,
		"18":                   true,
		"0":                    false, // too short to have a check digit
		"":                     false,
		"7992739871a":          false,
		"7992 7398713":         false,
		"-79927398713":         false,
		"７９９２７３９８７１３":          false, // full-width digits are not ASCII digits
	} {
		if got := Valid(s); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}
