package xdr

import (
	"errors"
	"time"
)

// Errors callers branch on. Providers translate their platform's errors into these (wrapped in
// *Error when there is more to say), so that callers never import a provider.
var (
	ErrUnauthorized    = errors.New("xdr: credentials refused")
	ErrForbidden       = errors.New("xdr: permission missing")
	ErrThrottled       = errors.New("xdr: rate limit reached")
	ErrBusy            = errors.New("xdr: host already has an active session")
	ErrNotFound        = errors.New("xdr: not found")
	ErrOffline         = errors.New("xdr: host offline")
	ErrLiveResponseOff = errors.New("xdr: live response is disabled for the tenant")
	ErrUnavailable     = errors.New("xdr: platform unavailable")
	ErrOutcomeUnknown  = errors.New("xdr: outcome unknown")
	ErrUnsupported     = errors.New("xdr: not supported by this provider")
)

// Error carries what a caller needs beyond the kind of failure.
type Error struct {
	Kind       error         // one of the sentinels above
	Message    string        // the platform's or provider's words, safe to show a user
	RetryAfter time.Duration // with ErrThrottled: how long to wait
	Missing    []string      // with ErrForbidden: the permissions that are missing
	Err        error         // the underlying error
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Kind.Error() + ": " + e.Message
	}
	if e.Err != nil {
		return e.Kind.Error() + ": " + e.Err.Error()
	}
	return e.Kind.Error()
}

// Is makes errors.Is(err, ErrThrottled) work on an *Error of that kind.
func (e *Error) Is(target error) bool { return e.Kind == target }

func (e *Error) Unwrap() error { return e.Err }

// RetryAfter returns how long a throttled call asks to wait, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// ConfigError is returned by Provider.Open for a setting that is wrong, naming the field.
type ConfigError struct {
	Field   string // tenant_id, client_id, client_secret, cloud, api_url, authority_url, ca_cert
	Message string // what is wrong, for the user
}

func (e *ConfigError) Error() string { return "xdr: " + e.Field + ": " + e.Message }
