package thingspace

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/iot-ops/tsbulk/change"
)

// errorBody is what could be read out of a non-2xx answer.
type errorBody struct {
	Code    string
	Message string
}

// maxPlainMessage bounds the text kept from a non-JSON error body (HTML
// error pages can be long and are for humans only).
const maxPlainMessage = 200

// parseErrorBody reads the three documented error shapes: M2M
// {errorCode, errorMessage}, gateway {"fault": {code, message, description}}
// and OAuth {error, error_description}; an array of the first is accepted
// too. Anything else is kept as a short plain-text message. Codes and
// messages are bounded (BoundCode, BoundText): they end up in errors,
// workflow histories, rows and metric labels.
func parseErrorBody(body []byte) errorBody {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return errorBody{}
	}
	if trimmed[0] == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(trimmed, &arr) == nil && len(arr) > 0 {
			return parseErrorBody(arr[0])
		}
	}
	if trimmed[0] == '{' {
		var m map[string]json.RawMessage
		if json.Unmarshal(trimmed, &m) == nil {
			if eb, ok := parseErrorObject(m); ok {
				return errorBody{Code: BoundCode(eb.Code), Message: BoundText(FaultText(eb.Message))}
			}
		}
	}
	if json.Valid(trimmed) {
		// Some JSON we do not know; do not copy it into error strings.
		return errorBody{}
	}
	return errorBody{Message: plainMessage(trimmed)}
}

func parseErrorObject(m map[string]json.RawMessage) (errorBody, bool) {
	get := func(obj map[string]json.RawMessage, names ...string) string {
		for k, v := range obj {
			for _, n := range names {
				if strings.EqualFold(k, n) {
					return scalarString(v)
				}
			}
		}
		return ""
	}
	if raw, ok := lookupFold(m, "fault"); ok {
		var f map[string]json.RawMessage
		if json.Unmarshal(raw, &f) == nil {
			msg := get(f, "message")
			if d := get(f, "description"); d != "" {
				if msg != "" {
					msg += ": "
				}
				msg += d
			}
			return errorBody{Code: get(f, "code"), Message: msg}, true
		}
	}
	if c := get(m, "errorCode"); c != "" {
		return errorBody{Code: c, Message: get(m, "errorMessage", "message")}, true
	}
	if c := get(m, "error"); c != "" {
		return errorBody{Code: c, Message: get(m, "error_description")}, true
	}
	if c := get(m, "code", "faultcode"); c != "" {
		return errorBody{Code: c, Message: get(m, "message", "faultstring")}, true
	}
	return errorBody{}, false
}

func lookupFold(m map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// scalarString renders a JSON string or number (gateway fault codes are
// sometimes numbers) as text; other values give "".
func scalarString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

func plainMessage(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > maxPlainMessage {
		s = s[:maxPlainMessage]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	return s
}

// Codes that make the client re-authenticate once before giving up.
func isGatewayAuthCode(code string) bool {
	return code == CodeGatewayInvalidCreds || code == CodeGatewayMissingCreds
}

func isSessionCode(code string) bool {
	switch change.ShortCode(code) {
	case CodeSessionExpired, CodeSessionFormat, CodeSessionInvalid:
		return true
	}
	// The prefix (REQUEST_FAILED / INPUT_INVALID) of session codes is only
	// known second-hand; the stable part is "SessionToken.<reason>".
	s := change.ShortCode(code)
	return strings.Contains(s, "SessionToken.Expired") ||
		strings.Contains(s, "SessionToken.Invalid") ||
		strings.Contains(s, "SessionToken.Format")
}

// classify maps an answer to an ErrorKind, by code first (messages change
// between releases, codes do not), then by HTTP status.
func classify(status int, code string) ErrorKind {
	short := change.ShortCode(code)
	switch {
	case isGatewayAuthCode(code), isSessionCode(code):
		return KindSessionExpired
	case code == CodeGatewayThrottled, status == http.StatusTooManyRequests:
		return KindRateLimited
	case short == CodeDeviceNotFound:
		return KindDeviceNotFound
	case short == CodeDeviceAlreadyActive:
		return KindDeviceAlreadyActive
	case short == CodeDeviceStateInvalid:
		return KindInvalidState
	case short == CodeAccountNotFound:
		return KindNotFound
	case short == CodeDeviceAccountInvalid:
		return KindDeviceAccountInvalid
	case strings.HasPrefix(short, "INPUT_INVALID."):
		return KindInvalidInput
	case strings.HasPrefix(short, "REQUEST_FAILED.") && strings.HasSuffix(short, "NotFound"):
		// Request ids and listeners have no documented "not found" code;
		// any *NotFound code is taken to mean the named resource is absent.
		return KindNotFound
	case status >= 500, status == http.StatusRequestTimeout:
		return KindTemporary
	}
	return KindPermanent
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date. A
// missing, malformed or past value gives 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 || secs > 365*24*3600 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			// Round up: waiting less than asked only earns another 429.
			return (d + time.Second - 1).Truncate(time.Second)
		}
	}
	return 0
}
