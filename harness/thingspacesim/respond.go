package thingspacesim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// reply is what an API handler produces. Handlers return it instead of
// writing, so that the middleware can apply the stall fault and record the
// status in one place.
type reply struct {
	status int
	body   any    // JSON-encoded when raw is nil
	raw    []byte // written as-is with contentType
	ctype  string
	header http.Header
	// stall asks the middleware to hold the answer for Faults.StallFor:
	// the change was applied but the client will not learn it in time.
	stall bool
}

func okReply(v any) reply { return reply{status: http.StatusOK, body: v} }

// uwsError is a synchronous M2M error: HTTP 400 {errorCode, errorMessage}.
func uwsError(code, format string, args ...any) reply {
	return reply{
		status: http.StatusBadRequest,
		body:   errorBody{ErrorCode: code, ErrorMessage: fmt.Sprintf(format, args...)},
	}
}

func gatewayError(status int, code, message, description string) reply {
	return reply{
		status: status,
		body:   gatewayFault{Fault: gatewayFaultInner{Code: code, Message: message, Description: description}},
	}
}

func invalidCredentialsFault() reply {
	return gatewayError(http.StatusUnauthorized, GatewayInvalidCredential, "Invalid Credentials",
		"Access failure for API: /api/m2m/v1, version: v1. Make sure you have given the correct access token")
}

func missingCredentialsFault() reply {
	return gatewayError(
		http.StatusUnauthorized,
		GatewayMissingCredential,
		"Missing Credentials",
		"Required OAuth credentials not provided. "+
			"Make sure your API invocation call has a header: 'Authorization: Bearer ACCESS_TOKEN'",
	)
}

func unknownResourceFault() reply {
	return gatewayError(
		http.StatusBadRequest,
		GatewayUnknownResource,
		"No matching resource found for given API Request",
		"Access failure for API: /api/m2m/v1, version: v1. "+
			"Check the API documentation and add a proper REST resource path to the invocation URL",
	)
}

func throttledFault(retryAfter time.Duration) reply {
	secs := int((retryAfter + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	r := gatewayError(http.StatusTooManyRequests, GatewayThrottled, "Message throttled out",
		fmt.Sprintf("You have exceeded your quota. Retry after %d seconds.", secs))
	r.header = http.Header{"Retry-After": []string{strconv.Itoa(secs)}}
	return r
}

func oauthFailure(status int, code, description string) reply {
	return reply{status: status, body: oauthError{Error: code, ErrorDescription: description}}
}

// write sends rep. Encoding errors cannot be reported to anyone useful:
// the status line has already been sent.
func (rep reply) write(w http.ResponseWriter) {
	for k, vs := range rep.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if rep.raw != nil {
		w.Header().Set("Content-Type", rep.ctype)
		w.WriteHeader(rep.status)
		_, _ = w.Write(rep.raw)
		return
	}
	if rep.body == nil {
		w.WriteHeader(rep.status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_ = json.NewEncoder(w).Encode(rep.body)
}

// decodeStrict decodes a JSON body, refusing unknown members. ThingSpace's
// tolerance of unknown members is unconfirmed; refusing them makes contract
// tests catch misspelled field names in the client.
func decodeStrict(body []byte, v any) *reply {
	if len(bytes.TrimSpace(body)) == 0 {
		r := uwsError(CodeRequestUndefined, "INPUT_INVALID. Request body is empty")
		return &r
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		r := uwsError(CodeUnexpectedError, "REQUEST_FAILED. Malformed request: %s", jsonErrorText(err))
		return &r
	}
	if dec.More() {
		r := uwsError(CodeUnexpectedError, "REQUEST_FAILED. Malformed request: trailing data after JSON value")
		return &r
	}
	return nil
}

// jsonErrorText describes a decoding error without echoing request values
// (a login body holds a password).
func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s", typ.Field, typ.Type)
	}
	return err.Error() // "json: unknown field \"x\"" and EOF cases carry no values
}
