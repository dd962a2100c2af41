// Package notify tells people about the bulk changes they must act on or
// want to know about: one awaits approval, finished (with its error
// count), failed, stalled, or has billing steps owed. An Event is sent to
// the webhooks (JSON, or Slack's shape) and the e-mail recipients
// configured for its kind (config.Notifications).
//
// An event carries counts and codes, never personal data: no PPU, no
// MSISDN, no list of devices. Free text (the summary, the reason) is cut
// to one line, and long runs of digits in it are removed, as a backstop
// against an ICCID or a phone number slipping into a message.
//
// Delivery is at least once and never blocks a workflow: the activity
// (activities.Notifier) sends to every channel of the kind, records each
// delivery in the audit log, and fails when a channel did not take the
// event, so that its retry policy (ActivityOptions) tries again; channels
// already delivered are skipped on retry.
package notify

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/iot-ops/tsbulk/change"
)

// Kind is the kind of an event; channels are configured per kind.
type Kind string

const (
	// ApprovalNeeded: the bulk change waits for a second operator's
	// approval before anything is sent.
	ApprovalNeeded Kind = "approval_needed"
	// Finished: every device change has its outcome; Errors says how many
	// failed.
	Finished Kind = "finished"
	// Failed: the bulk change stopped without finishing (Reason says why).
	Failed Kind = "failed"
	// Stalled: the bulk change has heard from none of its devices for a
	// while.
	Stalled Kind = "stalled"
	// BillingOwed: Rev.io billing steps are owed (BillingOwed of them),
	// to be settled by `starter billing-retry` or by the settling workflow.
	BillingOwed Kind = "billing_owed"
)

// Kinds are every kind, in the order the documentation lists them.
func Kinds() []Kind { return []Kind{ApprovalNeeded, Finished, Failed, Stalled, BillingOwed} }

// Valid reports whether k is a kind of event.
func (k Kind) Valid() bool { return slices.Contains(Kinds(), k) }

// MaxErrorCodes is how many error codes an event lists: the most frequent.
const MaxErrorCodes = 5

// ErrorCount is how many device changes failed with one error code.
type ErrorCount struct {
	Code  string `json:"code"`
	Count int    `json:"count"`
}

// Event is what a person is told. Its fields are what the message shows;
// the Web UI link is added by the Sender from temporal.ui_url.
type Event struct {
	// ID identifies the event across the activity's retries: a channel
	// that took an event of this ID is not sent it again. Make it from the
	// bulk change, the kind and what makes this occurrence distinct (a
	// stall's sequence number): EventID.
	ID           string `json:"id"`
	Kind         Kind   `json:"kind"`
	BulkChangeID string `json:"bulkChangeId"`
	Tenant       string `json:"tenant,omitempty"`
	// Operation is the bulk change's operation (change.Operation).
	Operation string `json:"operation,omitempty"`
	// Account is the ThingSpace account (a business account number, not
	// a line's).
	Account string `json:"account,omitempty"`
	// Summary is one line for people ("suspend 10,000 devices, submitted
	// by alice"): no device identifiers.
	Summary   string `json:"summary,omitempty"`
	Total     int    `json:"total"`
	Processed int    `json:"processed"`
	Errors    int    `json:"errors"`
	Cancelled int    `json:"cancelled,omitempty"`
	// ErrorsByCode are the most frequent error codes (at most
	// MaxErrorCodes: TopErrors).
	ErrorsByCode []ErrorCount `json:"errorsByCode,omitempty"`
	// BillingOwed counts the Rev.io steps owed (billing_owed).
	BillingOwed int `json:"billingOwed,omitempty"`
	// Reason says why (failed, stalled) or what is waited for
	// (approval_needed).
	Reason string `json:"reason,omitempty"`
	// At is when it happened (workflow.Now in a workflow).
	At time.Time `json:"at"`
}

// EventID is the ID of the event of kind about a bulk change; occurrence
// tells apart the events of one kind that a bulk change may have more than
// one of (stalls, billing owed after each settling run); "" for the others.
func EventID(bulkChangeID string, kind Kind, occurrence string) string {
	id := "bulk-change/" + bulkChangeID + "/" + string(kind)
	if occurrence != "" {
		id += "/" + occurrence
	}
	return id
}

// TopErrors are the MaxErrorCodes most frequent codes of a tally's
// ErrorsByCode, the most frequent first (ties by code, so the order does
// not depend on the map's: workflow code may call it).
func TopErrors(byCode map[change.Code]int) []ErrorCount {
	out := make([]ErrorCount, 0, len(byCode))
	//workflowcheck:ignore the result is sorted below
	for code, n := range byCode {
		if n > 0 {
			out = append(out, ErrorCount{Code: string(code), Count: n})
		}
	}
	return topOf(out)
}

func topOf(list []ErrorCount) []ErrorCount {
	slices.SortFunc(list, func(a, b ErrorCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Code, b.Code)
	})
	if len(list) > MaxErrorCodes {
		list = list[:MaxErrorCodes]
	}
	return list
}

// eventIDPattern keeps IDs printable and short: they are part of the
// audit log's dedupe keys and of the mail's Message-ID.
var eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,200}$`)

// Validate checks what an event must have, naming the field.
func (e Event) Validate() error {
	if !eventIDPattern.MatchString(e.ID) {
		return fmt.Errorf("event id %q: 1 to 200 letters, digits or . _ : / -", e.ID)
	}
	if !e.Kind.Valid() {
		return fmt.Errorf("event %s: kind %q is not one of %v", e.ID, e.Kind, Kinds())
	}
	if _, err := uuid.Parse(e.BulkChangeID); err != nil {
		return fmt.Errorf("event %s: bulkChangeId %q is not a bulk change id (a UUID)", e.ID, e.BulkChangeID)
	}
	for name, n := range map[string]int{"total": e.Total, "processed": e.Processed, "errors": e.Errors,
		"cancelled": e.Cancelled, "billingOwed": e.BillingOwed} {
		if n < 0 {
			return fmt.Errorf("event %s: %s is negative (%d)", e.ID, name, n)
		}
	}
	return nil
}

// Limits of the free text an event carries.
const (
	maxSummary = 300
	maxReason  = 1000
	maxCode    = 100
	maxName    = 100
)

// normalized is the event as it is sent: one-line free text without long
// runs of digits, the top error codes, a time.
func (e Event) normalized(now time.Time) Event {
	e.Tenant = oneLine(e.Tenant, maxName)
	e.Operation = oneLine(e.Operation, maxName)
	e.Account = oneLine(e.Account, maxName)
	e.Summary = scrub(oneLine(e.Summary, maxSummary))
	e.Reason = scrub(oneLine(e.Reason, maxReason))
	codes := make([]ErrorCount, 0, len(e.ErrorsByCode))
	for _, c := range e.ErrorsByCode {
		if c.Count > 0 {
			codes = append(codes, ErrorCount{Code: scrub(oneLine(c.Code, maxCode)), Count: c.Count})
		}
	}
	e.ErrorsByCode = topOf(codes)
	if e.At.IsZero() {
		e.At = now
	}
	e.At = e.At.UTC()
	return e
}

// longNumber is a run of digits as long as the shortest identifier of a
// line (a 10-digit MSISDN; ICCIDs and IMEIs are longer). Digits split by
// separators are left: dates and times are written so.
var longNumber = regexp.MustCompile(`\+?\d{10,}`)

// scrub removes long numbers from free text: a backstop, the callers put
// no device identifier in it.
func scrub(s string) string { return longNumber.ReplaceAllString(s, "[number removed]") }

// oneLine turns control characters (line breaks: header injection in a
// mail's subject) into spaces, trims, and cuts to max characters.
func oneLine(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > limit {
		r := []rune(s)
		s = string(r[:limit-1]) + "…"
	}
	return s
}
