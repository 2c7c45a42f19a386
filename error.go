// Package quarry holds Quarry's domain: the nouns of the product (users, projects, audit entries,
// experiments, …), the service interfaces between its parts, and the error type every layer speaks.
// It imports no infrastructure: SQL stores, the HTTP server and the Defender client implement or
// consume these interfaces from their own packages.
package quarry

import (
	"errors"
	"fmt"
)

// Error codes. Only the HTTP layer maps them to statuses; everything else branches on the code.
const (
	ECONFLICT       = "conflict"        // the thing exists already, or the state forbids the change
	EINTERNAL       = "internal"        // a bug or an infrastructure failure; details go to the log only
	EINVALID        = "invalid"         // the request is malformed or a field is wrong
	ENOTFOUND       = "not_found"       // no such thing (or the caller may not know it exists)
	EUNAUTHORIZED   = "unauthorized"    // who you are is unknown: no, expired or bad credentials
	EFORBIDDEN      = "forbidden"       // who you are is known, and may not do this
	ETHROTTLED      = "throttled"       // too many attempts; try again later
	EUNAVAILABLE    = "unavailable"     // a dependency is down; try again later
	ENOTIMPLEMENTED = "not_implemented" // the feature does not exist (yet)
)

// Error is an error a user may see. Message is written for the user and never carries internal
// detail; Err is the internal cause, logged but never shown.
type Error struct {
	Code    string
	Message string
	Field   string // the request field at fault, for EINVALID
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted, user-facing message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an EINVALID error naming the field at fault.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or EINTERNAL when there is none.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of the first *Error in err's chain; errors
// without one get a generic message so internal text never reaches a user.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// ErrorField returns the field named by the first *Error in err's chain, if any.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
