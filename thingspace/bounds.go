package thingspace

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/iot-ops/tsbulk/change"
)

// Bounds on what ThingSpace (or anyone posing as it) may put into the
// product. Codes and texts flow into workflow signals and histories, the
// bulk change's ErrorsByCode (carried through every continue-as-new, where
// a few megabyte codes would stop the bulk change), database rows and
// metric labels: a callback body may be a megabyte, so every entry point
// caps them.
const (
	// MaxCodeLen bounds a fault code: ThingSpace's longest documented one
	// is under 60 characters.
	MaxCodeLen = 128
	// MaxTextLen bounds a fault or error text.
	MaxTextLen = 1000
	// MaxStatusLen bounds a callback's status ("Success", "Failed").
	MaxStatusLen = 32
)

// truncated is appended to a text cut at MaxTextLen.
const truncated = "..."

// BoundCode restricts a fault code to MaxCodeLen characters of the
// charset codes use (letters, digits and "._:-/"): any other character is
// replaced by "_", so a code can carry no markup, spaces or control
// characters into labels, logs or the parent's error counts.
func BoundCode(code string) string {
	code = strings.TrimSpace(code)
	var b strings.Builder
	n := 0
	for _, r := range code {
		if n == MaxCodeLen {
			break
		}
		switch {
		case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'),
			strings.ContainsRune("._:-/", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		n++
	}
	return b.String()
}

// BoundText caps a free text at MaxTextLen characters (valid UTF-8, control
// characters as spaces), marking a cut with "...".
func BoundText(s string) string {
	return boundText(s, MaxTextLen)
}

// BoundStatus caps a callback's status.
func BoundStatus(s string) string {
	return boundText(s, MaxStatusLen)
}

func boundText(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == limit {
			return strings.TrimRightFunc(b.String(), unicode.IsSpace) + truncated
		}
		if unicode.IsControl(r) {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// requestIDPattern is the form of a ThingSpace requestId: a UUID in every
// published answer and callback.
var requestIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsRequestID reports whether s has the form of a ThingSpace requestId.
func IsRequestID(s string) bool {
	return requestIDPattern.MatchString(s)
}

// OtherCode is the metric label of every code outside the known set.
const OtherCode = "other"

// knownCodes are the codes a metric label may carry: ThingSpace's documented
// ones (short form) and the product's own.
var knownCodes = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range []string{
		CodeDeviceNotFound, CodeDeviceAlreadyActive, CodeDeviceStateInvalid, CodeDeviceKindInvalid,
		CodeDeviceIDInvalid, CodeDeviceAccountInvalid, CodeMaxRequestsExceeded, CodeNumberOfDevices,
		CodeAccountNotFound, CodeSessionExpired, CodeSessionFormat, CodeSessionInvalid, CodeCustomFieldName,
		CodeCustomFieldTooLong, CodeInvalidCharacter, CodeDailyActionsExceeded, CodeGatewayInvalidCreds,
		CodeGatewayMissingCreds, CodeGatewayUnknownPath, CodeGatewayThrottled,
	} {
		m[c] = true
	}
	for _, c := range []change.Code{
		change.DeviceBusy, change.DailyLimit, change.AuthFailed, change.SendFailed, change.NotConfirmed,
		change.PollStateMismatch, change.WorkflowStartFailed, change.DeviceWorkflowEnded, change.PPUUpdateFailed,
		change.Unexplained, change.AddFailed, change.AddNoAnswer, change.MSISDNUnknown, change.FaultAlreadyActive,
	} {
		m[string(c)] = true
	}
	return m
}()

// MetricCode is the label a code gets in a metric: itself when known (in
// its short form), OtherCode otherwise, so that codes sent by ThingSpace or
// a forger cannot grow a metric's label set without bound.
func MetricCode(code string) string {
	if code == "" {
		return ""
	}
	if c := change.ShortCode(code); knownCodes[c] {
		return c
	}
	return OtherCode
}

// PersonalValues lists the free-text parts of a Primary Place of Use (names,
// address lines, city, phone, e-mail) that an echo of them in a fault text
// would disclose.
func PersonalValues(p *PlaceOfUse) []string { return personalValues(p) }

// ScrubPersonal replaces each of the values in a text by Redacted: a fault
// text ThingSpace (or a forger) echoes a device's PPU in is recorded without
// it.
func ScrubPersonal(text string, values []string) string {
	for _, v := range values {
		if v != "" {
			text = strings.ReplaceAll(text, v, Redacted)
		}
	}
	return text
}
