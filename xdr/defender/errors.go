package defender

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	mde "github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/xdr"
)

// translate turns an error of the Defender client into one that matches the xdr sentinels, as an
// *xdr.Error whose Message is safe to show a user and whose Err is the original (so errors.Is on
// the defender sentinels keeps working). op names the call for errors that match no sentinel.
// Context errors pass through unchanged, so callers see their own cancellation as such.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	e := &xdr.Error{Err: err, Message: apiMessage(err)}
	var te *mde.TokenError
	var ne net.Error
	switch {
	case errors.As(err, &te):
		e.Message = "sign-in failed: " + mde.SignInErrorMessage(err)
		e.Kind = xdr.ErrUnavailable
		if te.Rejected {
			e.Kind = xdr.ErrUnauthorized
		}
	case errors.Is(err, mde.ErrActiveRequestAlreadyExists):
		e.Kind = xdr.ErrBusy
	case errors.Is(err, mde.ErrLiveResponseDisabled):
		e.Kind = xdr.ErrLiveResponseOff
		e.Message = liveResponseOffMessage
	case errors.Is(err, mde.ErrOutcomeUnknown):
		e.Kind = xdr.ErrOutcomeUnknown
		e.Message = "the request was sent but its answer was lost; look for an active action on the host before trying again"
	case errors.Is(err, mde.ErrDeviceOffline):
		e.Kind = xdr.ErrOffline
		e.Message = "the host never picked the request up; it is probably offline"
	case errors.Is(err, mde.ErrUnauthorized):
		e.Kind = xdr.ErrUnauthorized
	case errors.Is(err, mde.ErrForbidden):
		e.Kind = xdr.ErrForbidden
		e.Missing = mde.MissingPermissions(err)
	case errors.Is(err, mde.ErrThrottled):
		e.Kind = xdr.ErrThrottled
		e.RetryAfter, _ = mde.RetryAfter(err)
	case errors.Is(err, mde.ErrNotFound):
		e.Kind = xdr.ErrNotFound
	case errors.Is(err, mde.ErrServer):
		e.Kind = xdr.ErrUnavailable
	case errors.As(err, &ne):
		e.Kind = xdr.ErrUnavailable
		e.Message = "the Defender API cannot be reached"
	default:
		return fmt.Errorf("defender: %s: %w", op, err)
	}
	if e.Message == "" {
		e.Message = op + " failed"
	}
	return e
}

const liveResponseOffMessage = "Live Response is not enabled for the tenant. Turn on Live response (and Live response " +
	"for servers) in the Defender portal under Settings > Endpoints > Advanced features"

// apiMessage returns the service's own words from an API error, or "" for any other error. The
// service's messages name ids and permissions, never credentials.
func apiMessage(err error) string {
	var ae *mde.APIError
	if errors.As(err, &ae) {
		return strings.TrimSpace(ae.Message)
	}
	return ""
}
