package thingspace

import (
	"errors"
	"fmt"
	"time"

	"github.com/iot-ops/tsbulk/change"
)

// Short error codes (ShortCode form) that callers branch on.
const (
	CodeDeviceNotFound       = "REQUEST_FAILED.DeviceNotFound"
	CodeDeviceAlreadyActive  = "REQUEST_FAILED.DeviceAlreadyActive"
	CodeDeviceStateInvalid   = "INPUT_INVALID.DeviceState.Invalid"
	CodeDeviceKindInvalid    = "INPUT_INVALID.Device.Kind.Invalid"
	CodeDeviceIDInvalid      = "INPUT_INVALID.Device.Identifier.Invalid"
	CodeDeviceAccountInvalid = "INPUT_INVALID.Device.Account.Invalid" // S-cberr: not a part of the account specified
	CodeMaxRequestsExceeded  = "INPUT_INVALID.MaxRequestsExceeded"
	CodeNumberOfDevices      = "INPUT_INVALID.NumberofDevices"
	CodeAccountNotFound      = "REQUEST_FAILED.AccountNotFound"
	CodeSessionExpired       = "REQUEST_FAILED.SessionToken.Expired"
	CodeSessionFormat        = "REQUEST_FAILED.SessionToken.Format"
	CodeSessionInvalid       = "INPUT_INVALID.SessionToken.Invalid"
	CodeCustomFieldName      = "INPUT_INVALID.CustomField.InvalidName"
	CodeCustomFieldTooLong   = "INPUT_INVALID.CustomField.TooLong"
	CodeInvalidCharacter     = "INPUT_INVALID.Request.InvalidCharacter"
	CodeDailyActionsExceeded = "REQUEST_FAILED.MaxActionsPerDay" // simulator's choice: the live code is unconfirmed
	CodeGatewayInvalidCreds  = "900901"                          // wrong or expired Bearer token
	CodeGatewayMissingCreds  = "900902"
	CodeGatewayUnknownPath   = "900906"
	CodeGatewayThrottled     = "900800" // WSO2 "Message throttled out"
)

// ErrorKind classifies a ThingSpace failure by what the caller should do.
type ErrorKind int

const (
	// KindTemporary: timeouts, connection failures, 5xx. Retry with back-off
	// (a state change only if it cannot have been applied: MayHaveApplied).
	KindTemporary ErrorKind = iota + 1
	// KindRateLimited: 429 or throttling fault. Retry after RetryAfter.
	KindRateLimited
	// KindSessionExpired: the OAuth or session token is no longer valid. The
	// client re-authenticates once by itself; callers see it only when that
	// also failed.
	KindSessionExpired
	// KindInvalidCredentials: the OAuth client or the M2M username/password
	// were refused. Never retry: five failed logins lock the account.
	KindInvalidCredentials
	// KindInvalidInput: the request itself is wrong (bad field, too many
	// devices, bad identifier).
	KindInvalidInput
	// KindDeviceNotFound: ThingSpace does not know the device.
	KindDeviceNotFound
	// KindDeviceAlreadyActive: activation of a device that is already active.
	KindDeviceAlreadyActive
	// KindInvalidState: the device's state does not allow the change.
	KindInvalidState
	// KindNotFound: the resource (request id, callback listener, account) does
	// not exist.
	KindNotFound
	// KindPermanent: any other refusal that retrying will not change.
	KindPermanent
	// KindDeviceAccountInvalid: the device exists at ThingSpace but not in
	// the account the request named (INPUT_INVALID.Device.Account.Invalid).
	// A refusal of that device alone, like KindDeviceNotFound, but kept
	// apart from it: the device is not absent, it is someone else's (or the
	// file named the wrong account), and lookups that take "not found" to
	// mean "absent" must not see it.
	KindDeviceAccountInvalid
)

func (k ErrorKind) String() string {
	switch k {
	case KindTemporary:
		return "temporary"
	case KindRateLimited:
		return "rate_limited"
	case KindSessionExpired:
		return "session_expired"
	case KindInvalidCredentials:
		return "invalid_credentials"
	case KindInvalidInput:
		return "invalid_input"
	case KindDeviceNotFound:
		return "device_not_found"
	case KindDeviceAlreadyActive:
		return "device_already_active"
	case KindInvalidState:
		return "invalid_state"
	case KindNotFound:
		return "not_found"
	case KindPermanent:
		return "permanent"
	case KindDeviceAccountInvalid:
		return "device_account_invalid"
	}
	return "unknown"
}

// Error is a failed ThingSpace call. Its text never contains secrets: only the
// operation, HTTP status, ThingSpace's code and message.
type Error struct {
	Op         string // "oauth", "login", "activate", "list", ...
	HTTPStatus int    // 0 when no answer was received
	Code       string // ThingSpace errorCode / gateway fault code, as sent
	Message    string // ThingSpace's message text (for humans only)
	Kind       ErrorKind
	RetryAfter time.Duration // from Retry-After on 429/503, else 0
	// Sent is true when the request may have reached ThingSpace (an answer
	// was received, or the connection failed after the request was written).
	// Whether a state change may have been applied is MayHaveApplied.
	Sent bool
	Err  error // underlying transport error, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("thingspace %s", e.Op)
	if e.HTTPStatus != 0 {
		msg += fmt.Sprintf(": HTTP %d", e.HTTPStatus)
	}
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// MayHaveApplied reports whether the call that failed may nevertheless
// have changed something at ThingSpace. A state change that fails this way
// has an unknown outcome: it must be reconciled (look the devices up, wait
// for their callbacks), never sent again blindly, or a device is changed
// twice, or refused as already changed.
//
// Only an answer that proves the request was turned away before anything
// was applied rules it out:
//   - no connection was ever made (not a byte of the request left);
//   - a 429 or the gateway's throttling fault;
//   - a refused token or session (900901/900902, SessionToken.*): the
//     gateway or the session check refused it before the backend acted;
//   - any other answer below 500: a 4xx is a refusal (ThingSpace's own
//     come with its error body).
//
// Everything else may have: any 5xx, whatever its body (the WSO2 gateway in
// front of the M2M API answers 502 or 504 when it loses the backend's
// answer, and a 500 may come after part of a request was applied); a
// timeout or reset after the request was written; a 2xx whose body could
// not be read. Calls safe to repeat (token, login, list, request status,
// callback listeners) have nothing to reconcile and report false; a state
// change whose re-authentication failed returns that login's error, and
// its own attempts were refused.
func (e *Error) MayHaveApplied() bool {
	switch {
	case safeOps[e.Op], !e.Sent:
		return false
	case e.Kind == KindRateLimited, e.Kind == KindSessionExpired, e.Kind == KindInvalidCredentials:
		return false
	case e.HTTPStatus == 0, e.HTTPStatus >= 500:
		return true
	}
	return e.HTTPStatus >= 200 && e.HTTPStatus < 300
}

// ShortCode is Code without its service-name prefix.
func (e *Error) ShortCode() string { return change.ShortCode(e.Code) }

// Retryable reports whether the same call may succeed later.
func (e *Error) Retryable() bool {
	switch e.Kind {
	case KindTemporary, KindRateLimited, KindSessionExpired:
		return true
	}
	return false
}

// AsError extracts a *Error from err.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// KindOf returns the ErrorKind of err, or 0 when err is not a ThingSpace error.
func KindOf(err error) ErrorKind {
	if e, ok := AsError(err); ok {
		return e.Kind
	}
	return 0
}

// IsRetryable reports whether err is a ThingSpace error worth retrying.
// Errors that are not ThingSpace errors (context cancelled, ...) are not.
func IsRetryable(err error) bool {
	e, ok := AsError(err)
	return ok && e.Retryable()
}

// IsInvalidCredentials reports whether ThingSpace refused our credentials.
func IsInvalidCredentials(err error) bool { return KindOf(err) == KindInvalidCredentials }
