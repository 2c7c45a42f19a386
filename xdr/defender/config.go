package defender

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	mde "github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/xdr"
)

var (
	guidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	// domainRE: Entra also accepts a tenant's verified domain (contoso.onmicrosoft.com) as its ID.
	domainRE = regexp.MustCompile(`^(?i:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+)$`)
	// tokenRE is what a custom deployment may use as a tenant or client ID: it ends up in a URL path
	// and a form field, so only characters that need no escaping there.
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

func invalid(field, msg string) error { return &xdr.ConfigError{Field: field, Message: msg} }

// validate checks cfg without any network call and returns it with pasted whitespace trimmed from
// the IDs and URLs. The secret is checked for presence only and never quoted.
func validate(cfg xdr.Config) (xdr.Config, error) {
	cfg.TenantID = strings.TrimSpace(cfg.TenantID)
	cfg.ClientID = strings.TrimSpace(cfg.ClientID)
	cfg.Cloud = strings.ToLower(strings.TrimSpace(cfg.Cloud))
	cfg.APIURL = strings.TrimSpace(cfg.APIURL)
	cfg.AuthorityURL = strings.TrimSpace(cfg.AuthorityURL)
	if cfg.Cloud == "" && cfg.APIURL != "" {
		cfg.Cloud = mde.CloudCustom
	}
	custom := cfg.Cloud == mde.CloudCustom
	if cfg.Cloud != "" && !custom {
		if _, ok := mde.LookupCloud(cfg.Cloud); !ok {
			return cfg, invalid("cloud", fmt.Sprintf("unknown cloud %q; choose one of the listed clouds or custom", cfg.Cloud))
		}
	}

	switch {
	case cfg.TenantID == "":
		return cfg, invalid("tenant_id", "enter the Directory (tenant) ID of the app registration")
	case custom && !tokenRE.MatchString(cfg.TenantID):
		return cfg, invalid("tenant_id", "use letters, digits, '.', '-' and '_' only")
	case !custom && !guidRE.MatchString(cfg.TenantID) && !domainRE.MatchString(cfg.TenantID):
		return cfg, invalid("tenant_id", "must be the Directory (tenant) ID, a GUID such as 00000000-0000-0000-0000-000000000000, or a verified domain of the tenant")
	}
	switch {
	case cfg.ClientID == "":
		return cfg, invalid("client_id", "enter the Application (client) ID of the app registration")
	case custom && !tokenRE.MatchString(cfg.ClientID):
		return cfg, invalid("client_id", "use letters, digits, '.', '-' and '_' only")
	case !custom && !guidRE.MatchString(cfg.ClientID):
		return cfg, invalid("client_id", "must be the Application (client) ID, a GUID such as 00000000-0000-0000-0000-000000000000")
	}
	if strings.TrimSpace(cfg.ClientSecret) == "" {
		return cfg, invalid("client_secret", "enter the Value of a client secret of the app registration")
	}

	if custom {
		if cfg.APIURL == "" {
			return cfg, invalid("api_url", "a custom cloud needs the API base URL")
		}
		if cfg.AuthorityURL == "" {
			return cfg, invalid("authority_url", "a custom cloud needs the sign-in authority URL")
		}
	} else if cfg.APIURL != "" || cfg.AuthorityURL != "" {
		field := "api_url"
		if cfg.APIURL == "" {
			field = "authority_url"
		}
		return cfg, invalid(field, "only a custom cloud takes URLs; the listed clouds have theirs built in")
	}
	for _, u := range []struct{ field, raw string }{{"api_url", cfg.APIURL}, {"authority_url", cfg.AuthorityURL}} {
		if u.raw == "" {
			continue
		}
		if msg := checkURL(u.raw); msg != "" {
			return cfg, invalid(u.field, msg)
		}
	}
	if len(cfg.CACertPEM) > 0 {
		if msg := checkCA(cfg.CACertPEM); msg != "" {
			return cfg, invalid("ca_cert", msg)
		}
	}
	return cfg, nil
}

// checkURL returns what is wrong with a custom URL, or "".
func checkURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "not a URL"
	case u.Scheme != "https":
		// A bearer token and a client secret must not travel in clear text.
		return "must start with https://"
	case u.Host == "" || u.Hostname() == "":
		return "names no host"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "must not carry a user, query or fragment"
	}
	return ""
}

// checkCA returns what is wrong with a PEM CA bundle, or "". Every CERTIFICATE block must parse, so a
// truncated paste is caught here rather than as a TLS failure later.
func checkCA(data []byte) string {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return "a certificate in the PEM does not parse: " + err.Error()
		}
		n++
	}
	if n == 0 {
		return "no PEM CERTIFICATE block found"
	}
	return ""
}

// Open checks cfg and builds a client with the given API limits. Zero limits are the documented
// ones; tests against the emulator pass a TimeScale that matches the emulator's, which xdr.Config
// cannot carry. Errors are *xdr.ConfigError.
func Open(cfg xdr.Config, limits mde.Limits) (*Client, error) {
	cfg, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	c, err := mde.New(mde.Config{
		TenantID:     cfg.TenantID,
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Cloud:        cfg.Cloud,
		APIURL:       cfg.APIURL,
		AuthorityURL: cfg.AuthorityURL,
		CACertPEM:    cfg.CACertPEM,
		HTTPClient:   cfg.HTTPClient,
		Limits:       limits,
		Logger:       cfg.Logger,
	})
	if err != nil {
		// validate covers what mde.New checks; what remains is an HTTP client that cannot take the CA.
		return nil, &xdr.ConfigError{Field: "ca_cert", Message: strings.TrimPrefix(err.Error(), "defender: ")}
	}
	return &Client{api: c}, nil
}
