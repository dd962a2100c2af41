package luhn

import "testing"

func TestAll(t *testing.T) {
	for s, want := range map[string]bool{"0123456789": true, "7": true, "": false, "12a": false, " 12": false,
		"１２": false, "-1": false} {
		if got := All(s); got != want {
			t.Errorf("All(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestLuhn(t *testing.T) {
	for _, good := range []string{"79927398713", "490154203237518", "89148000000000000019"} {
		if !LuhnValid(good) {
			t.Errorf("%s should pass Luhn", good)
		}
		if d := LuhnDigit(good[:len(good)-1]); d != good[len(good)-1] {
			t.Errorf("check digit of %s: got %c", good[:len(good)-1], d)
		}
	}
	for _, bad := range []string{"79927398710", "490154203237519", "8914800000000000001", "0", "", "7992739871x"} {
		if LuhnValid(bad) {
			t.Errorf("%s should fail Luhn", bad)
		}
	}
}
