package defender

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors callers branch on. Every error from an API call that the service answered is an *APIError, which
// unwraps to at most one of these; the rest come from the client itself.
var (
	// ErrUnauthorized: the token was refused (401) or could not be obtained because Entra ID rejected the
	// tenant, client id or secret. SignInErrorMessage explains the latter in plain words.
	ErrUnauthorized = errors.New("defender: unauthorized")
	// ErrForbidden: the token lacks an application permission. APIError.MissingPermissions names it when
	// the message says which.
	ErrForbidden = errors.New("defender: permission missing")
	// ErrThrottled: 429. APIError.RetryAfter says how long the service asked us to wait.
	ErrThrottled = errors.New("defender: throttled")
	// ErrActiveRequestAlreadyExists: the device already has a Live Response request (or the same action)
	// pending or running.
	ErrActiveRequestAlreadyExists = errors.New("defender: an action is already active on the device")
	// ErrNotFound: the machine, action, library file or alert does not exist.
	ErrNotFound = errors.New("defender: not found")
	// ErrDeviceOffline: the device never picked the request up. The API does not answer this directly: a
	// request for an offline device is accepted and stays Pending for up to 3 days, then ends TimeOut
	// without any command having started (mde-api.md §5.1). ActionError and WaitForAction report it.
	ErrDeviceOffline = errors.New("defender: device offline")
	// ErrLiveResponseDisabled: the tenant has Live Response (or Live Response for servers) turned off
	// in the portal's advanced features (403 DisabledFeature on a Live Response endpoint).
	ErrLiveResponseDisabled = errors.New("defender: live response is disabled for the tenant")
	// ErrFeatureDisabled: another tenant feature is off (403 DisabledFeature elsewhere).
	ErrFeatureDisabled = errors.New("defender: feature disabled for the tenant")
	// ErrServer: the service failed (5xx) and the call was not, or no longer, retried.
	ErrServer = errors.New("defender: service error")
	// ErrBadRequest: the service refused the request as malformed (400 other than the codes above).
	ErrBadRequest = errors.New("defender: bad request")
	// ErrOutcomeUnknown: a call that must not be repeated blindly (runliveresponse, collectInvestigationPackage)
	// may or may not have taken effect, and the client could not find out. Look at the device's recent
	// machine actions before trying again.
	ErrOutcomeUnknown = errors.New("defender: outcome unknown")
	// ErrLinkExpired: a result or package URL was refused, most likely because it expired. Ask for a
	// new one; there is no need to run the command again.
	ErrLinkExpired = errors.New("defender: download link refused or expired")
	// ErrActionFailed, ErrActionTimedOut and ErrActionCancelled describe a machine action's final status.
	ErrActionFailed    = errors.New("defender: action failed")
	ErrActionTimedOut  = errors.New("defender: action timed out")
	ErrActionCancelled = errors.New("defender: action cancelled")
)

// APIError is a non-success answer from the API, decoded from its {"error":{"code","message","target"}}
// envelope (mde-api.md §2.4). Code is the stable part; Message is free text from the service.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Target is the service's per-request correlation id, worth quoting to Microsoft support.
	Target string
	// Op names the call, e.g. "GET /api/machines".
	Op string
	// RetryAfter is set on 429 from the Retry-After header.
	RetryAfter time.Duration
	// MissingPermissions lists the application permissions a 403 message names, e.g. Machine.Read.All.
	MissingPermissions []string

	sentinel error
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("defender: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%d %s", e.Status, e.Code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Target != "" {
		fmt.Fprintf(&b, " (target %s)", e.Target)
	}
	return b.String()
}

// Unwrap returns the sentinel the status and code map to, so errors.Is(err, ErrNotFound) works.
func (e *APIError) Unwrap() error { return e.sentinel }

// MissingPermissions returns the permissions a 403 named, if err carries one.
func MissingPermissions(err error) []string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.MissingPermissions
	}
	return nil
}

// RetryAfter returns how long the service asked the caller to wait, if err is a 429.
func RetryAfter(err error) (time.Duration, bool) {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests {
		return ae.RetryAfter, true
	}
	return 0, false
}

// maxErrorBody bounds how much of an error response is read; MDE error bodies are a few hundred bytes.
const maxErrorBody = 64 << 10

// errorEnvelope is the API's error body.
type errorEnvelope struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Target  string `json:"target"`
	} `json:"error"`
}

// parseAPIError builds the APIError for a non-2xx response. It never fails: a body that is not the
// documented envelope (a proxy's HTML page, an empty 401) still yields an error with the status.
func parseAPIError(op string, fam family, status int, header http.Header, body []byte, now time.Time) *APIError {
	e := &APIError{Status: status, Op: op}
	var env errorEnvelope
	if json.Unmarshal(body, &env) == nil && env.Error.Code != "" {
		e.Code = env.Error.Code
		e.Message = clip(env.Error.Message, 1000)
		e.Target = clip(env.Error.Target, 100)
	} else {
		e.Code = strings.ReplaceAll(http.StatusText(status), " ", "")
		if e.Code == "" {
			e.Code = "HTTP" + strconv.Itoa(status)
		}
		e.Message = clip(strings.TrimSpace(string(body)), 200)
	}
	if status == http.StatusTooManyRequests {
		e.RetryAfter, _ = parseRetryAfter(header.Get("Retry-After"), now)
	}
	e.sentinel = classify(e, fam)
	if errors.Is(e.sentinel, ErrForbidden) {
		e.MissingPermissions = permissionsIn(e.Message)
	}
	return e
}

func classify(e *APIError, fam family) error {
	switch {
	case strings.EqualFold(e.Code, "ActiveRequestAlreadyExists"):
		return ErrActiveRequestAlreadyExists
	case e.Status == http.StatusBadRequest && strings.Contains(strings.ToLower(e.Message), "already in progress"):
		// The older wording of the same refusal (mde-api.md §2.4, issue #5908).
		return ErrActiveRequestAlreadyExists
	case strings.EqualFold(e.Code, "DisabledFeature"):
		if fam.liveResponse() {
			return ErrLiveResponseDisabled
		}
		return ErrFeatureDisabled
	case e.Status == http.StatusUnauthorized:
		return ErrUnauthorized
	case e.Status == http.StatusForbidden:
		return ErrForbidden
	case e.Status == http.StatusNotFound:
		return ErrNotFound
	case e.Status == http.StatusTooManyRequests:
		return ErrThrottled
	case e.Status >= 500:
		return ErrServer
	case e.Status == http.StatusBadRequest:
		return ErrBadRequest
	}
	return nil
}

// permissionRE matches application permission names such as Machine.Read.All or Library.Manage.
var permissionRE = regexp.MustCompile(`\b[A-Z][A-Za-z]+(?:\.[A-Z][A-Za-z]+)+\b`)

// permissionsIn extracts permission names from a 403 message, e.g. "The application does not have any of
// the required application permissions (Machine.Read.All, Machine.ReadWrite.All) to access the resource."
func permissionsIn(msg string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range permissionRE.FindAllString(msg, -1) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// parseRetryAfter reads a Retry-After header in either of its forms: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs != secs {
			return 0, false
		}
		if secs > 86400 {
			secs = 86400
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// clip shortens s to at most n bytes on a rune boundary; service text ends up in logs and UIs.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
