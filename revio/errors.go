package revio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalidRequest marks a request the client refused to send because it
// would certainly be rejected (missing id, malformed date or rate). Such an
// *Error has HTTPStatus 0 and Sent false and is never retryable.
var ErrInvalidRequest = errors.New("invalid request")

// ErrUnexpectedResponse marks a 2xx answer the client could not understand
// (undecodable body, "ok": false, a create without an id). For a POST this
// means the change may well have happened: see Error.OutcomeUnknown.
var ErrUnexpectedResponse = errors.New("unexpected response")

// Error is every error returned by Client methods (also validation errors,
// see ErrInvalidRequest). It never contains credentials.
type Error struct {
	// Op is the client method, e.g. "CreateService".
	Op string
	// HTTPStatus is the status of the last answer, 0 when none was received.
	HTTPStatus int
	// Message is the human message extracted from the error body (or the
	// reason the client refused), scrubbed of credentials and shortened.
	Message string
	// RetryAfter is the server's Retry-After, when it sent one (429/503).
	RetryAfter time.Duration
	// Sent reports whether the request may have reached Rev.io. False means
	// it certainly did not (validation, dial failure, pacing wait); true with
	// HTTPStatus 0 means the outcome is unknown (e.g. timeout after writing).
	Sent bool
	// Err is the underlying cause, if any (transport error, context error,
	// ErrInvalidRequest, ErrUnexpectedResponse).
	Err error

	// transport marks failures without an HTTP answer that are worth
	// retrying: network errors, the per-attempt timeout, a pacing wait that
	// would outlast the caller's deadline. Not set for the caller's own
	// cancellation.
	transport bool
}

// Error formats the error without credentials or response bodies.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("revio: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, "HTTP %d", e.HTTPStatus)
		if e.Message != "" {
			b.WriteString(": ")
			b.WriteString(e.Message)
		}
		if e.Err != nil {
			b.WriteString(": ")
			b.WriteString(e.Err.Error())
		}
	} else {
		switch {
		case errors.Is(e.Err, ErrInvalidRequest):
			b.WriteString("invalid request: " + e.Message)
		case e.Message != "" && e.Err != nil:
			b.WriteString(e.Message + ": " + e.Err.Error())
		case e.Message != "":
			b.WriteString(e.Message)
		case e.Err != nil:
			b.WriteString(e.Err.Error())
		default:
			b.WriteString("unknown error")
		}
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.HTTPStatus == 0 && e.Err != nil && !errors.Is(e.Err, ErrInvalidRequest) {
		if e.Sent {
			b.WriteString(" (request sent, outcome unknown)")
		} else {
			b.WriteString(" (request not sent)")
		}
	}
	return b.String()
}

// Unwrap exposes the cause for errors.Is / errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether trying again later can help: 429, 5xx and
// transport failures. It does not say a retry is safe: for a POST with
// OutcomeUnknown the caller must first check whether the resource exists.
func (e *Error) Retryable() bool {
	switch {
	case e.HTTPStatus == http.StatusTooManyRequests:
		return true
	case e.HTTPStatus >= 500:
		return true
	case e.HTTPStatus == 0:
		return e.transport
	}
	return false
}

// OutcomeUnknown reports whether the request may have been applied although
// no success was seen: it was sent and either no answer came (timeout,
// connection reset), the answer was a 5xx, or a 2xx could not be understood.
// After a CreateService with OutcomeUnknown, search by number before
// creating again.
func (e *Error) OutcomeUnknown() bool {
	if !e.Sent {
		return false
	}
	return e.HTTPStatus == 0 || e.HTTPStatus >= 500 || (e.HTTPStatus >= 200 && e.HTTPStatus < 300)
}

// IsRetryable reports whether err is an *Error that is Retryable.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable()
}

// IsNotFound reports whether err is a 404 from Rev.io.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.HTTPStatus == http.StatusNotFound
}

// maxMessageLen bounds Error.Message: it ends up in logs and workflow
// histories, where a whole HTML error page is noise.
const maxMessageLen = 500

// extractMessage pulls a human message out of an error body whose schema
// Rev.io does not document: a JSON object (Rev.io {ok,message}, APIM
// {statusCode,message}, ASP.NET ModelState {message,modelState} or
// problem+json {title,detail}), a JSON array of such objects (what Altaworx
// parsed), a JSON string, or plain text. HTML pages yield nothing so the
// caller falls back to the status text.
func extractMessage(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err == nil && !dec.More() {
		var parts []string
		collectMessages(v, 0, &parts)
		return shorten(strings.Join(dedupe(parts), "; "))
	}
	if body[0] == '<' {
		return ""
	}
	if !utf8.Valid(body) {
		return ""
	}
	return shorten(strings.Join(strings.Fields(string(body)), " "))
}

// messageKeys are tried in order; the first ones found are used. "error" is
// late because Rev.io-style arrays carry it as a code or a boolean next to a
// better "message".
var messageKeys = []string{
	"message",
	"Message",
	"error_message",
	"errorMessage",
	"detail",
	"title",
	"error_description",
	"error",
	"Error",
	"errors",
	"Errors",
	"modelState",
	"ModelState",
}

func collectMessages(v any, depth int, out *[]string) {
	if depth > 4 {
		return
	}
	switch t := v.(type) {
	case string:
		if s := strings.TrimSpace(t); s != "" {
			*out = append(*out, s)
		}
	case []any:
		for _, el := range t {
			collectMessages(el, depth+1, out)
		}
	case map[string]any:
		found := false
		for _, k := range messageKeys {
			mv, ok := t[k]
			if !ok {
				continue
			}
			switch mt := mv.(type) {
			case string:
				if strings.TrimSpace(mt) == "" {
					continue
				}
				// "message" plus a distinct "error" are both useful, so
				// every key is collected; dedupe drops repeats.
				*out = append(*out, strings.TrimSpace(mt))
				found = true
			case []any, map[string]any:
				before := len(*out)
				collectMessages(mt, depth+1, out)
				if len(*out) > before {
					found = true
				}
			}
		}
		if !found {
			// ModelState-like objects map a field name to a list of messages.
			for _, k := range slices.Sorted(maps.Keys(t)) { // stable messages for logs and tests
				if arr, ok := t[k].([]any); ok {
					before := len(*out)
					collectMessages(arr, depth+1, out)
					for i := before; i < len(*out); i++ {
						(*out)[i] = k + ": " + (*out)[i]
					}
				}
			}
		}
	}
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func shorten(s string) string {
	if len(s) <= maxMessageLen {
		return s
	}
	cut := maxMessageLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// parseRetryAfter reads Retry-After as delta-seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
