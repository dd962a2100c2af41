package api

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/iot-ops/tsbulk/change"
)

// The operators' requests to a running bulk change, and what the bulk
// change carries of them across its runs.

// Updates an operator sends a running bulk change (starter pause|resume|
// cancel|approve|reject, or `temporal workflow update execute --name NAME
// --input '{"by":"...","reason":"..."}'`). Each takes an OperatorRequest and
// returns an OperatorResult; a request that makes no sense is refused by
// the update's validator with the reason, and changes nothing.
const (
	// PauseUpdate: no new ThingSpace state change and no new device
	// workflow from the moment it is accepted; changes already sent are
	// still awaited and recorded. It returns once no request is in flight.
	PauseUpdate = "pause"
	// ResumeUpdate carries on a paused bulk change.
	ResumeUpdate = "resume"
	// CancelUpdate ends the device changes not yet sent as CANCELLED; those
	// already sent finish normally; the bulk change ends CANCELLED.
	CancelUpdate = "cancel"
	// ApproveUpdate lets a bulk change awaiting approval run; the approver
	// must not be its submitter.
	ApproveUpdate = "approve"
	// RejectUpdate cancels a bulk change awaiting approval.
	RejectUpdate = "reject"
)

// OperatorRequest is an operator's request to a bulk change: who asks and
// why (both go to the audit log).
type OperatorRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// Caps of an operator's text, in characters: a name, and a reason. They go
// to the audit log, the Web UI and the starter's output, so they are kept
// short enough to read and free of anything that hides or reorders text.
const (
	MaxByLength     = 200
	MaxReasonLength = 1000
)

// Validate refuses a request whose text could not be recorded as typed: too
// long, or holding characters that are not printable (control characters,
// bidi overrides and other invisible format characters would let an audit
// entry read differently from what was sent).
func (r OperatorRequest) Validate() error {
	if err := CheckOperatorText("by", r.By, MaxByLength); err != nil {
		return err
	}
	return CheckOperatorText("reason", r.Reason, MaxReasonLength)
}

// CheckOperatorText refuses text longer than max characters, not UTF-8, or
// with a character that is neither a letter, mark, number, punctuation,
// symbol nor a space (Unicode graphic characters): no control characters
// (newlines included), no format characters (bidi overrides and isolates,
// zero-width spaces and joiners), nothing private or unassigned.
func CheckOperatorText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not valid UTF-8 text", field)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return fmt.Errorf("%q is %d characters long: at most %d", field, n, max)
	}
	for i, r := range []rune(s) {
		if !unicode.IsGraphic(r) {
			return fmt.Errorf(
				"%q has a character that is not printable (%U) at character %d: only printable text is recorded",
				field, r, i+1,
			)
		}
	}
	return nil
}

// SameOperator reports whether two names typed by operators name the same
// person as far as anyone reading them can tell: compared after
// NormalizeOperator.
func SameOperator(a, b string) bool {
	return NormalizeOperator(a) == NormalizeOperator(b)
}

// NormalizeOperator is the form operators' names are compared in: Unicode
// compatibility normalisation (NFKC) and full case folding, repeated so that
// folding cannot leave an unnormalised string, then trimmed with inner
// spaces collapsed. NFKC rather than NFC because the comparison keeps one
// person from passing for two: a fullwidth "ａｌｉｃｅ", a ligature or a
// precomposed "é" against "e" and a combining accent look the same to the
// reader of the audit log, so they must compare the same. Two different
// people whose names fold together can only be refused an approval, the
// safe direction. The names are recorded as typed; only comparisons use this.
func NormalizeOperator(s string) string {
	s = norm.NFKC.String(cases.Fold().String(norm.NFKC.String(s)))
	return strings.Join(strings.Fields(s), " ")
}

// OperatorResult is the bulk change's answer to an operator's request.
type OperatorResult struct {
	Status  change.BulkStatus `json:"status"`
	Message string            `json:"message"`
}

// Control is what operators asked of a bulk change, carried across runs.
type Control struct {
	// Paused: sending nothing new (who and why in PausedBy).
	Paused   bool            `json:"paused,omitempty"`
	PausedBy *OperatorAction `json:"pausedBy,omitempty"`
	// Cancelled: the device changes not yet sent were ended CANCELLED.
	Cancelled *OperatorAction `json:"cancelled,omitempty"`
	// Approved: the second operator's approval.
	Approved *OperatorAction `json:"approved,omitempty"`
}

// OperatorAction records who asked what, when and why.
type OperatorAction struct {
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}
