package defender

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Config says where and as whom the client connects. Only TenantID, ClientID and ClientSecret are
// required; everything else defaults to the commercial cloud and the documented limits.
type Config struct {
	TenantID     string
	ClientID     string
	ClientSecret string
	// Cloud is the ID of one of Clouds ("" = commercial). APIURL, AuthorityURL and Scope override the
	// preset; setting APIURL without Cloud selects a custom deployment.
	Cloud        string
	APIURL       string
	AuthorityURL string
	Scope        string
	// CACertPEM is an extra trusted CA (PEM) for the API and the authority, for the emulator or a private
	// endpoint. It is added to the system roots, or to HTTPClient's roots when HTTPClient is set.
	CACertPEM []byte
	// HTTPClient is used for every call, token requests included. Nil means a client built here.
	HTTPClient *http.Client
	Limits     Limits
	Logger     *slog.Logger
	// Now is the clock (nil = time.Now). It drives the rate limiters, dates Retry-After headers and
	// bounds the window in which a runliveresponse that may have been lost is looked for.
	Now func() time.Time
}

// Limits bounds the client's own pace and persistence. Zero fields take the documented defaults
// (mde-api.md §10), so the client stays under the service's limits by itself.
type Limits struct {
	// LiveResponsePerMinute caps runliveresponse calls (default 10).
	LiveResponsePerMinute int
	// PerMinute and PerHour cap every other endpoint family (defaults 100 and 1500).
	PerMinute int
	PerHour   int
	// PackageURIPerMinute and PackageURIPerHour cap GetPackageUri (defaults 2 and 120).
	PackageURIPerMinute int
	PackageURIPerHour   int
	// TimeScale speeds up the client's own windows and waits — limiter windows, backoff, polling — by
	// this factor, to match an emulator run with the same TimeScale. 0 or 1 = real time. Retry-After is
	// taken as sent: the server states it in real seconds.
	TimeScale float64
	// MaxAttempts bounds tries per call, the first included (default 5).
	MaxAttempts int
	// BaseBackoff and MaxBackoff shape the jittered exponential backoff between retries
	// (defaults 1s and 30s, before TimeScale).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out by itself (default 2m); a longer
	// one is returned as ErrThrottled for the caller to schedule.
	MaxRetryAfter time.Duration
	// RequestTimeout bounds one HTTP attempt (default 60s, not scaled).
	RequestTimeout time.Duration
	// PageSize is the $top used when listing everything (default and maximum 10000).
	PageSize int
	// ClockSkew widens the window in which a lost runliveresponse is looked for (default 10m).
	ClockSkew time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.LiveResponsePerMinute, 10)
	def(&l.PerMinute, 100)
	def(&l.PerHour, 1500)
	def(&l.PackageURIPerMinute, 2)
	def(&l.PackageURIPerHour, 120)
	def(&l.MaxAttempts, 5)
	def(&l.PageSize, maxPageSize)
	if l.PageSize > maxPageSize {
		l.PageSize = maxPageSize
	}
	if l.TimeScale <= 0 {
		l.TimeScale = 1
	}
	defDur(&l.BaseBackoff, time.Second)
	defDur(&l.MaxBackoff, 30*time.Second)
	defDur(&l.MaxRetryAfter, 2*time.Minute)
	defDur(&l.RequestTimeout, time.Minute)
	defDur(&l.ClockSkew, 10*time.Minute)
	return l
}

// scaled converts a documented duration into the client's (possibly faster) time.
func (l Limits) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) / l.TimeScale)
}

// maxPageSize is the documented $top ceiling (mde-api.md §2.3).
const maxPageSize = 10000

// Client talks to one Defender for Endpoint tenant. It is safe for concurrent use.
type Client struct {
	apiURL  *url.URL
	scope   string
	cloud   Cloud
	http    *http.Client
	cred    azcore.TokenCredential
	limits  Limits
	limiter *limiterSet
	log     *slog.Logger
	now     func() time.Time
	// sleep waits d or until ctx ends. Tests replace it to observe waits without spending them.
	sleep func(ctx context.Context, d time.Duration) error
}

// New checks cfg and builds a client. It makes no network call; GrantedRoles or any operation is the
// first to reach Entra ID.
func New(cfg Config) (*Client, error) {
	if cfg.TenantID == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("defender: tenant id, client id and client secret are required")
	}
	cl, err := resolveCloud(cfg)
	if err != nil {
		return nil, err
	}
	api, err := parseHTTPSURL("api url", cl.APIURL)
	if err != nil {
		return nil, err
	}
	auth, err := parseHTTPSURL("authority url", cl.AuthorityURL)
	if err != nil {
		return nil, err
	}
	hc, err := httpClient(cfg.HTTPClient, cfg.CACertPEM)
	if err != nil {
		return nil, err
	}
	authority := auth.String()
	if !strings.HasSuffix(authority, "/") {
		authority += "/"
	}
	cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: authority},
			Transport: hc,
			// Token failures are mostly wrong credentials; azidentity's own retries would only delay the
			// answer. Transient network errors are retried by the API call around them.
			Retry: policy.RetryOptions{MaxRetries: -1},
		},
		DisableInstanceDiscovery: !knownAuthority(auth.Hostname()),
	})
	if err != nil {
		return nil, fmt.Errorf("defender: credential: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	lim := cfg.Limits.withDefaults()
	cl.APIURL = strings.TrimRight(api.String(), "/")
	cl.AuthorityURL = authority
	return &Client{
		apiURL:  api,
		scope:   cl.Scope,
		cloud:   cl,
		http:    hc,
		cred:    cred,
		limits:  lim,
		limiter: newLimiterSet(lim),
		log:     log.With("component", "defender", "tenant", cfg.TenantID),
		now:     now,
		sleep:   sleepCtx,
	}, nil
}

// Cloud returns the deployment the client talks to, with any overrides applied.
func (c *Client) Cloud() Cloud { return c.cloud }

func resolveCloud(cfg Config) (Cloud, error) {
	var cl Cloud
	switch {
	case cfg.Cloud == "" && cfg.APIURL != "", strings.EqualFold(cfg.Cloud, CloudCustom):
		cl = Cloud{ID: CloudCustom, Name: "Custom", AuthorityURL: commercialAuthority, Scope: commercialScope}
	case cfg.Cloud == "":
		cl = Clouds[0]
	default:
		var ok bool
		if cl, ok = LookupCloud(cfg.Cloud); !ok {
			return Cloud{}, fmt.Errorf("defender: unknown cloud %q", cfg.Cloud)
		}
	}
	if cfg.APIURL != "" {
		cl.APIURL = cfg.APIURL
	}
	if cfg.AuthorityURL != "" {
		cl.AuthorityURL = cfg.AuthorityURL
	}
	if cfg.Scope != "" {
		cl.Scope = cfg.Scope
	}
	if cl.APIURL == "" {
		return Cloud{}, errors.New("defender: a custom cloud needs an api url")
	}
	return cl, nil
}

func parseHTTPSURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("defender: %s: %w", what, err)
	}
	// azidentity refuses plain-HTTP authorities, and a bearer token must not travel in clear text either.
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("defender: %s %q must be an https URL", what, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("defender: %s %q must not carry a query, fragment or user", what, raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// httpClient returns base (or a new client) trusting the extra CA. base itself is never modified.
func httpClient(base *http.Client, caPEM []byte) (*http.Client, error) {
	if len(caPEM) == 0 {
		if base != nil {
			return base, nil
		}
		return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, nil
	}
	var tr *http.Transport
	switch {
	case base == nil || base.Transport == nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	default:
		t, ok := base.Transport.(*http.Transport)
		if !ok {
			return nil, errors.New("defender: a CA certificate needs an HTTP client with an *http.Transport")
		}
		tr = t.Clone()
	}
	var pool *x509.CertPool
	if tr.TLSClientConfig != nil && tr.TLSClientConfig.RootCAs != nil {
		pool = tr.TLSClientConfig.RootCAs.Clone()
	} else if sys, err := x509.SystemCertPool(); err == nil {
		pool = sys
	} else {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("defender: CA certificate: no PEM certificate found")
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.RootCAs = pool
	out := &http.Client{Transport: tr}
	if base != nil {
		out.Timeout = base.Timeout
		out.Jar = base.Jar
		out.CheckRedirect = base.CheckRedirect
	}
	return out, nil
}
