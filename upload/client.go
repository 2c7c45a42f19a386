// Package upload is quarry-host's side of the collector protocol: it proves a setup works before any
// collection starts (preflight), reports progress while the collector runs (heartbeats), sends the
// package with resumable tus 1.0.0 uploads that survive cut connections and collector restarts, and
// asks the server for its verdict on the received bytes.
//
// It is written against the standard library only, because quarry-host must stay small.
package upload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Errors callers branch on. Every error the package returns for these cases wraps one of them.
var (
	// ErrUnauthorized means the server refused the upload token.
	ErrUnauthorized = errors.New("the token is invalid or expired")
	// ErrTooLarge means the package is larger than the server accepts.
	ErrTooLarge = errors.New("package too large for the server")
	// ErrRejected means the server received the package but rejected it (for example a hash mismatch).
	ErrRejected = errors.New("server rejected the package")
	// ErrAcquisitionClosed means the server no longer wants anything for this acquisition (cancelled,
	// expired or failed): the collector should stop.
	ErrAcquisitionClosed = errors.New("the server closed the acquisition")
)

// Config says how to reach the server. Only Server and Token are required.
type Config struct {
	Server string // base URL of quarry, e.g. "https://quarry.example.com"
	Token  string // the acquisition's upload token ("qu_..."); sent only in the Authorization header

	CACertFile string // PEM file with extra roots to trust (a private CA); the system roots stay trusted
	Insecure   bool   // skip TLS verification; the caller must warn loudly

	// ChunkSize bounds one PATCH request; 0 means MaxChunkSize.
	ChunkSize int64
	// MinBackoff and MaxBackoff bound the jittered exponential wait between retries (defaults 1 s and 1 min).
	MinBackoff, MaxBackoff time.Duration
	// MaxFailures is the number of consecutive failed attempts without progress after which an upload
	// gives up; 0 means retry until the context ends.
	MaxFailures int
	// StatusWait bounds how long Upload waits for the server's verdict after the last byte (default 2 min).
	StatusWait time.Duration

	// Transport, when set, replaces the HTTP transport built from the fields above (tests use it to cut
	// connections). Proxy, CA and Insecure are then the transport's business.
	Transport http.RoundTripper
	// Logf receives one line per notable event (retries, warnings); nil discards them.
	Logf func(format string, args ...any)
	// Now is the clock for the clock-skew check; nil means time.Now.
	Now func() time.Time
}

// MaxChunkSize is the largest PATCH body the client sends: small enough that a cut connection loses
// little, large enough that request overhead does not matter.
const MaxChunkSize = 8 << 20

// Client talks to one quarry server with one upload token. It is safe for concurrent use, so the
// heartbeat goroutine shares it with the upload.
type Client struct {
	base *url.URL
	cfg  Config
	http *http.Client
}

// New checks cfg and builds a client. It reads the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)
// from the environment now, so a detached collector uses what its parent was started with.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(strings.TrimRight(cfg.Server, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("upload: server %q: want an http or https URL", cfg.Server)
	}
	if cfg.Token == "" {
		return nil, errors.New("upload: no token")
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("upload: token contains white space")
	}
	if cfg.ChunkSize <= 0 || cfg.ChunkSize > MaxChunkSize {
		cfg.ChunkSize = MaxChunkSize
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.StatusWait <= 0 {
		cfg.StatusWait = 2 * time.Minute
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rt := cfg.Transport
	if rt == nil {
		if rt, err = newTransport(cfg); err != nil {
			return nil, err
		}
	}
	return &Client{base: base, cfg: cfg, http: &http.Client{Transport: rt}}, nil
}

func newTransport(cfg Config) (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACertFile != "" {
		pem, err := os.ReadFile(cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("upload: ca cert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upload: ca cert %s: no PEM certificate in it", cfg.CACertFile)
		}
		tc.RootCAs = pool
	}
	tc.InsecureSkipVerify = cfg.Insecure
	// httpproxy reads the environment on every call, unlike http.ProxyFromEnvironment which caches it
	// for the life of the process; same rules otherwise.
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	return &http.Transport{
		Proxy:                 func(r *http.Request) (*url.URL, error) { return proxy(r.URL) },
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}, nil
}

// resolve turns an API path or a Location header into an absolute URL on the server.
func (c *Client) resolve(ref string) (string, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("bad url %q: %w", ref, err)
	}
	if !u.IsAbs() && strings.HasPrefix(ref, "/") && c.base.Path != "" {
		// An API path is relative to the configured base, which may itself carry a path prefix.
		u, _ = url.Parse(c.base.Path + ref)
	}
	return c.base.ResolveReference(u).String(), nil
}

// statusError is a response the server meant: its status and the start of its body.
type statusError struct {
	op     string
	status int
	body   string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.status, http.StatusText(e.status))
	if e.body != "" {
		msg += ": " + e.body
	}
	if sentinel := e.Unwrap(); sentinel != nil {
		return fmt.Sprintf("%s: %v (%s)", e.op, sentinel, msg)
	}
	return e.op + ": " + msg
}

func (e *statusError) Unwrap() error {
	switch e.status {
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusRequestEntityTooLarge:
		return ErrTooLarge
	}
	return nil
}

// do sends one request with the token and returns the response when its status is one of want. Other
// statuses become a *statusError with the body's first bytes, which are the server's own words.
func (c *Client) do(req *http.Request, op string, want ...int) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("User-Agent", "quarry-host")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return nil, &statusError{op: op, status: resp.StatusCode, body: serverMessage(b)}
}

// serverMessage extracts the message of a quarry error body, or the trimmed text of any other body.
func serverMessage(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return oneLine(e.Error.Message)
	}
	return oneLine(string(b))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// permanent reports whether retrying err cannot help: the server refused on purpose, the certificate
// is not trusted, or the caller gave up.
func permanent(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var se *statusError
	if errors.As(err, &se) {
		// Creating twice conflicts with the upload the token already made: only its URL (in the
		// resume state) continues it, and retrying the creation cannot.
		if se.op == "create" && se.status == http.StatusConflict {
			return true
		}
		// Every refusal of an enrolment (unknown acquisition, enrolled already, wrong state)
		// is the server's considered answer; asking again gets the same one.
		if se.op == "enrol" && se.status >= 400 && se.status < 500 {
			return true
		}
		switch se.status {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusMethodNotAllowed,
			http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusPreconditionFailed:
			return true
		}
		return false
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// backoff is the wait before retry number n (1-based): exponential from MinBackoff, capped at
// MaxBackoff, with full jitter in its upper half so many collectors do not retry in step.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MinBackoff
	for i := 1; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// startAttempts bounds the tries of a start-up exchange: with the default backoff they span
// 15 to 30 s, enough to ride out a restart of Quarry.
const startAttempts = 6

// attempts runs fn up to startAttempts times, waiting between tries, until it succeeds or fails
// in a way that retrying cannot help. It is for the short exchanges at start-up (preflight,
// enrolment): what is wrong for good (a refused token, an untrusted certificate) fails at once,
// and an unreachable server within half a minute.
func (c *Client) attempts(ctx context.Context, op string, fn func() error) error {
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if attempt > 1 {
			c.cfg.Logf("%s failed, retrying: %v", op, err)
			if sleep(ctx, c.backoff(attempt-1)) != nil {
				break
			}
		}
		if err = fn(); err == nil || permanent(err) {
			break
		}
	}
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
