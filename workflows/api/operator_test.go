package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// What an operator types is recorded as typed, so it must be readable as
// sent: bounded, and without characters that hide or reorder text.
func TestOperatorRequestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  OperatorRequest
		want string // "" for accepted
	}{
		{"plain", OperatorRequest{By: "Zoë O’Neil", Reason: "ticket 42: wrong customer, see #ops"}, ""},
		{"no-break space", OperatorRequest{By: "bob", Reason: "ticket\u00a042"}, ""},
		{"name at the cap", OperatorRequest{By: strings.Repeat("é", MaxByLength)}, ""},
		{"name too long", OperatorRequest{By: strings.Repeat("a", MaxByLength+1)},
			`"by" is 201 characters long: at most 200`},
		{"reason too long", OperatorRequest{By: "bob", Reason: strings.Repeat("x", MaxReasonLength+1)},
			`"reason" is 1001 characters long: at most 1000`},
		{"bidi override", OperatorRequest{By: "bob", Reason: "approved \u202edevorppa ton"},
			`"reason" has a character that is not printable (U+202E) at character 10`},
		{"bidi isolate in name", OperatorRequest{By: "bo\u2066b"}, `"by" has a character that is not printable (U+2066)`},
		{"zero-width space", OperatorRequest{By: "al\u200bice"}, `"by" has a character that is not printable (U+200B)`},
		{"newline", OperatorRequest{By: "bob", Reason: "ok\nFAKE AUDIT LINE"}, `(U+000A)`},
		{"escape", OperatorRequest{By: "bob\x1b[2J"}, `(U+001B)`},
		{"not UTF-8", OperatorRequest{By: "bob\xff"}, `"by" is not valid UTF-8 text`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Names are compared as a reader of the audit log would: "Alice" is alice.
func TestSameOperator(t *testing.T) {
	same := [][2]string{
		{"alice", "Alice"},
		{"alice", "  ALICE "},
		{"alice smith", "Alice   Smith"},
		{"alice", "ａｌｉｃｅ"},                  // fullwidth
		{"José", "Jose\u0301"},              // precomposed and combining accent
		{"strasse", "STRASSE"},              // and full case folding:
		{"straße", "STRASSE"},               // ß folds to ss
		{"ﬁona", "Fiona"},                   // ligature
		{"alice\u00a0smith", "alice smith"}, // no-break space
	}
	for _, p := range same {
		require.True(t, SameOperator(p[0], p[1]), "%q and %q", p[0], p[1])
	}
	for _, p := range [][2]string{{"alice", "bob"}, {"alice", "alicia"}, {"alice smith", "alicesmith"}} {
		require.False(t, SameOperator(p[0], p[1]), "%q and %q", p[0], p[1])
	}
}
