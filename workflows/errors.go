package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"
)

// ErrTypeBulkChangeFailed is the error type of a bulk change that could not
// run at all (its credentials were refused).
const ErrTypeBulkChangeFailed = "BulkChangeFailed"

// isType reports whether err carries an application error of the given type
// (activities set the type; workflows never branch on message text).
func isType(err error, typ string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == typ
}

// rootMessage is the message of the innermost application error, without
// the activity and workflow wrapping, for operators to read.
func rootMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// errorType is the type of the innermost application error ("" for
// others): the code recorded with a failed step.
func errorType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}
