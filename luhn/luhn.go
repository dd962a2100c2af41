// Package luhn checks strings of ASCII digits and the Luhn check digit
// that ends ICCIDs (ITU-T E.118) and IMEIs (3GPP TS 23.003). It depends on
// nothing, so both the product's file validation and the ThingSpace
// simulator use it.
package luhn

// AllDigits reports whether s is non-empty and all ASCII digits. unicode.IsDigit
// would also accept other scripts' digits, which no identifier here uses.
func AllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Valid reports whether s is a string of ASCII digits (at least two)
// whose last digit is the correct Luhn check digit.
func Valid(s string) bool {
	if len(s) < 2 || !AllDigits(s) {
		return false
	}
	return CheckDigit(s[:len(s)-1]) == s[len(s)-1]
}

// CheckDigit returns the check digit that makes body+digit pass the Luhn
// test. body must be ASCII digits.
func CheckDigit(body string) byte {
	sum := 0
	double := true // the rightmost body digit is doubled once the check digit is appended
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return byte('0' + (10-sum%10)%10)
}
