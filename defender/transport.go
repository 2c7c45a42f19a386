package defender

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// retryMode says what may be done after a failure whose outcome is unknown (a 5xx, a lost connection).
type retryMode int

const (
	// retrySafe: repeating the call has the same effect as making it once (GET, DELETE, PUT, most PATCH).
	retrySafe retryMode = iota
	// retryNever: the call creates something; after an unknown outcome the caller must look before it
	// leaps. Refusals that prove nothing happened (429, a connection that never opened) are still retried.
	retryNever
)

// request is one API call, replayable: the body is kept as bytes so an attempt can be sent again.
type request struct {
	fam    family
	method string
	// path is the escaped path below the API URL, e.g. "/api/machines/abc". Ignored when rawURL is set.
	path string
	// rawURL is an absolute URL on the API host, used to follow @odata.nextLink.
	rawURL      string
	query       url.Values
	body        []byte
	contentType string
	retry       retryMode
}

func (r request) op() string {
	p := r.path
	if r.rawURL != "" {
		if u, err := url.Parse(r.rawURL); err == nil {
			p = u.EscapedPath()
		}
	}
	return r.method + " " + p
}

// maxJSONBody bounds a decoded response; a full 10,000-machine page is about 30 MB.
const maxJSONBody = 256 << 20

// call sends r, retrying as its mode allows, and decodes a 2xx JSON body into out (when out is not nil).
func (c *Client) call(ctx context.Context, r request, out any) error {
	body, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	if out == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("defender: %s: decode response: %w", r.op(), err)
	}
	return nil
}

// send runs the attempts for r and returns the body of the first 2xx answer.
func (c *Client) send(ctx context.Context, r request) ([]byte, error) {
	var last error
	for attempt := 1; ; attempt++ {
		if err := c.limiter.wait(ctx, r.fam, c.now(), c.sleep); err != nil {
			return nil, c.stopped(r, last, err)
		}
		status, header, body, err := c.attempt(ctx, r)
		if err != nil {
			last = fmt.Errorf("defender: %s: %w", r.op(), err)
			if ctx.Err() != nil {
				return nil, c.stopped(r, last, ctx.Err())
			}
			var te *TokenError
			if errors.As(err, &te) && te.Rejected {
				return nil, te
			}
			// Without a token nothing was sent, so any call may be tried again.
			safe := r.retry == retrySafe || te != nil || notSent(err)
			if !safe {
				return nil, outcomeUnknown(last)
			}
			if attempt >= c.limits.MaxAttempts {
				return nil, last
			}
			d := c.backoff(attempt)
			c.log.Warn("defender call failed, retrying", "op", r.op(), "attempt", attempt, "wait", d, "err", err)
			if err := c.sleep(ctx, d); err != nil {
				return nil, c.stopped(r, last, err)
			}
			continue
		}
		if status >= 200 && status < 300 {
			return body, nil
		}
		ae := parseAPIError(r.op(), r.fam, status, header, body, c.now())
		last = ae
		var wait time.Duration
		switch {
		case status == http.StatusTooManyRequests:
			// A 429 is a refusal: nothing was done, so even a runliveresponse may be sent again.
			// Retry-After is the server's word in real seconds; an emulator running faster already
			// scaled it, so it is never scaled here.
			wait = ae.RetryAfter
			if ae.RetryAfter == 0 {
				wait = c.backoff(attempt)
			}
			if ae.RetryAfter > c.limits.MaxRetryAfter {
				return nil, ae
			}
		case status >= 500:
			if r.retry != retrySafe {
				return nil, outcomeUnknown(ae)
			}
			wait = c.backoff(attempt)
			if d, ok := parseRetryAfter(header.Get("Retry-After"), c.now()); ok && d > wait && d <= c.limits.MaxRetryAfter {
				wait = d
			}
		default:
			return nil, ae
		}
		if attempt >= c.limits.MaxAttempts {
			return nil, ae
		}
		c.log.Warn("defender call refused, retrying", "op", r.op(), "status", status, "code", ae.Code, "attempt", attempt, "wait", wait)
		if err := c.sleep(ctx, wait); err != nil {
			return nil, c.stopped(r, ae, err)
		}
	}
}

// stopped reports a call given up because ctx ended. For a call that must not be repeated, an earlier
// failure leaves the outcome unknown, which the caller has to learn too.
func (c *Client) stopped(r request, last, ctxErr error) error {
	if last == nil {
		return fmt.Errorf("defender: %s: %w", r.op(), ctxErr)
	}
	if r.retry == retryNever {
		return outcomeUnknown(errors.Join(last, ctxErr))
	}
	return errors.Join(last, ctxErr)
}

// attempt makes one HTTP exchange. err is non-nil only when no status was received.
func (c *Client) attempt(ctx context.Context, r request) (int, http.Header, []byte, error) {
	u, err := c.url(r)
	if err != nil {
		return 0, nil, nil, err
	}
	token, err := c.token(ctx)
	if err != nil {
		return 0, nil, nil, err
	}
	actx, cancel := context.WithTimeout(ctx, c.limits.RequestTimeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, u, body)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	limit := int64(maxJSONBody)
	if resp.StatusCode >= 300 {
		limit = maxErrorBody
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if resp.StatusCode >= 300 {
			// The status is what matters; a truncated error body still classifies.
			return resp.StatusCode, resp.Header, data, nil
		}
		return 0, nil, nil, fmt.Errorf("read response: %w", err)
	}
	if int64(len(data)) > limit {
		if resp.StatusCode < 300 {
			return 0, nil, nil, fmt.Errorf("response larger than %d bytes", limit)
		}
		data = data[:limit]
	}
	c.log.Debug("defender call", "op", r.op(), "status", resp.StatusCode, "took", time.Since(start))
	return resp.StatusCode, resp.Header, data, nil
}

const userAgent = "quarry-defender/1"

func (c *Client) url(r request) (string, error) {
	if r.rawURL == "" {
		u := *c.apiURL
		u.RawPath = c.apiURL.Path + r.path
		p, err := url.PathUnescape(u.RawPath)
		if err != nil {
			return "", fmt.Errorf("bad path %q: %w", r.path, err)
		}
		u.Path = p
		u.RawQuery = encodeQuery(r.query)
		return u.String(), nil
	}
	// A nextLink is followed only on the API's own scheme and host: the bearer token goes with it.
	u, err := url.Parse(r.rawURL)
	if err != nil {
		return "", fmt.Errorf("bad next link: %w", err)
	}
	if u.Scheme != c.apiURL.Scheme || !strings.EqualFold(u.Host, c.apiURL.Host) {
		return "", fmt.Errorf("next link %s leaves the API host", u.Redacted())
	}
	return u.String(), nil
}

// encodeQuery writes OData options with literal '$' and spaces as %20, the form the service's own
// examples and nextLinks use (url.Values.Encode would write %24 and '+').
func encodeQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	var b strings.Builder
	for _, k := range []string{"$filter", "$expand", "$orderby", "$top", "$skip"} {
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(strings.ReplaceAll(url.QueryEscape(v), "+", "%20"))
		}
	}
	rest := url.Values{}
	for k, v := range q {
		if !strings.HasPrefix(k, "$") {
			rest[k] = v
		}
	}
	if len(rest) > 0 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(rest.Encode())
	}
	return b.String()
}

// token returns a bearer token for the API. azidentity keeps it in memory and asks Entra ID again only
// shortly before it expires, so this is cheap on every attempt.
func (c *Client) token(ctx context.Context) (string, error) {
	tk, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		return "", newTokenError(err)
	}
	return tk.Token, nil
}

// backoff is the wait before retry number attempt: exponential from BaseBackoff, capped at MaxBackoff,
// with "equal jitter" (half fixed, half random) so many clients do not retry in step.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.limits.BaseBackoff
	for i := 1; i < attempt && d < c.limits.MaxBackoff; i++ {
		d *= 2
	}
	if d > c.limits.MaxBackoff {
		d = c.limits.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	return c.limits.scaled(d)
}

// notSent reports whether err proves the request never reached the server (no connection, unknown
// host, untrusted certificate), which makes even a non-repeatable call safe to send again.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &certInvalid)
}

type unknownOutcomeError struct{ err error }

func (e *unknownOutcomeError) Error() string   { return e.err.Error() + " (outcome unknown)" }
func (e *unknownOutcomeError) Unwrap() []error { return []error{ErrOutcomeUnknown, e.err} }

func outcomeUnknown(err error) error { return &unknownOutcomeError{err: err} }
