package defender

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Permission is an application permission (app role) of the WindowsDefenderATP API that Quarry uses.
type Permission struct {
	Name string `json:"name"`
	// Purpose says in one line what Quarry needs it for.
	Purpose string `json:"purpose"`
	// SatisfiedBy lists broader permissions that include this one.
	SatisfiedBy []string `json:"satisfied_by,omitempty"`
}

// RequiredPermissions are the application permissions a Quarry connection needs (mde-api.md §9).
var RequiredPermissions = []Permission{
	{Name: "Machine.Read.All", Purpose: "list devices and poll the Live Response actions Quarry starts", SatisfiedBy: []string{"Machine.ReadWrite.All"}},
	{Name: "Machine.ReadWrite.All", Purpose: "fetch Live Response result links (the current API page requires the read-write permission)"},
	{Name: "Machine.LiveResponse", Purpose: "start the collection bootstrap on a device with runliveresponse, and cancel it"},
	{Name: "Library.Manage", Purpose: "upload and refresh the bootstrap scripts in the Live Response library"},
	{Name: "Alert.Read.All", Purpose: "read alerts so an alert can pick the hosts to collect from", SatisfiedBy: []string{"Alert.ReadWrite.All"}},
	{Name: "Alert.ReadWrite.All", Purpose: "comment on and update alerts with the collection's outcome"},
}

// MissingPermissionsFor returns the required permissions that granted (a token's roles) does not cover.
func MissingPermissionsFor(granted []string) []Permission {
	has := map[string]bool{}
	for _, g := range granted {
		has[strings.ToLower(g)] = true
	}
	var out []Permission
	for _, p := range RequiredPermissions {
		ok := has[strings.ToLower(p.Name)]
		for _, s := range p.SatisfiedBy {
			ok = ok || has[strings.ToLower(s)]
		}
		if !ok {
			out = append(out, p)
		}
	}
	return out
}

// Claims is the part of an access token's payload the client reads (mde-api.md §1.4).
type Claims struct {
	Audience     string   `json:"aud"`
	Issuer       string   `json:"iss"`
	IssuedAt     int64    `json:"iat"`
	NotBefore    int64    `json:"nbf"`
	Expires      int64    `json:"exp"`
	AppID        string   `json:"appid"`
	AppIDACR     string   `json:"appidacr"`
	IdentityType string   `json:"idtyp"`
	ObjectID     string   `json:"oid"`
	Roles        []string `json:"roles"`
	TenantID     string   `json:"tid"`
	Version      string   `json:"ver"`
}

// Claims fetches (or reuses) the access token and decodes its payload. The signature is not checked:
// the token came straight from the authority over TLS, and the API checks it anyway.
func (c *Client) Claims(ctx context.Context) (*Claims, error) {
	tok, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	cl, err := decodeClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("defender: access token: %w", err)
	}
	return cl, nil
}

// GrantedRoles returns the application permissions in the access token's roles claim, so a connection
// check can name what is missing before any call fails.
func (c *Client) GrantedRoles(ctx context.Context) ([]string, error) {
	cl, err := c.Claims(ctx)
	if err != nil {
		return nil, err
	}
	return cl.Roles, nil
}

func decodeClaims(token string) (*Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	var cl Claims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return &cl, nil
}

// TokenError is a failure to obtain an access token. Its message is safe to show a user: it never
// includes the secret, and says what to fix when Entra ID gave a known AADSTS code.
type TokenError struct {
	// AADSTS is the Entra ID error number, e.g. "7000215", when the authority answered with one.
	AADSTS string
	// Rejected is true when the authority answered and refused the credentials (as opposed to being
	// unreachable).
	Rejected bool
	err      error
}

func (e *TokenError) Error() string {
	return "defender: sign-in: " + SignInErrorMessage(e)
}

// Unwrap exposes the cause and, when the authority refused the credentials, ErrUnauthorized.
func (e *TokenError) Unwrap() []error {
	if e.Rejected {
		return []error{ErrUnauthorized, e.err}
	}
	return []error{e.err}
}

var aadstsRE = regexp.MustCompile(`AADSTS(\d+)`)

func newTokenError(err error) *TokenError {
	te := &TokenError{err: err}
	if m := aadstsRE.FindStringSubmatch(err.Error()); m != nil {
		te.AADSTS = m[1]
	}
	// Entra ID answers 400 or 401 when it refuses the tenant, client or secret; 5xx (even with an
	// AADSTS code such as 50196) is a passing failure that may be retried.
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil {
		st := afe.RawResponse.StatusCode
		te.Rejected = st == 400 || st == 401
	} else {
		te.Rejected = te.AADSTS != ""
	}
	return te
}

// aadstsAdvice maps the Entra ID errors a misconfigured connection meets to what the user should do.
var aadstsAdvice = map[string]string{
	"7000215": "the client secret is wrong. Paste the secret's Value (not its Secret ID) from the app registration's Certificates & secrets page",
	"7000222": "the client secret has expired. Create a new secret in the app registration and update the connection",
	"7000218": "no client secret was sent. Enter the app registration's client secret",
	"700016":  "no application with this client ID exists in the tenant. Check the Application (client) ID and the tenant ID, and that the app registration still exists",
	"90002":   "the tenant was not found. Check the Directory (tenant) ID, and that the connection's cloud (commercial or US government) is the tenant's",
	"900023":  "the tenant ID is not valid. Use the Directory (tenant) ID GUID or a verified domain of the tenant",
	"90023":   "Entra ID refused the request as malformed. Check the tenant ID and the authority URL",
	"500011":  "the WindowsDefenderATP API is not present in this tenant or the scope is wrong. Check the tenant uses Defender for Endpoint and the connection's cloud",
	"7000112": "the application is disabled. Enable the app registration's enterprise application",
	"53003":   "a Conditional Access policy blocked the sign-in. Exclude the app's service principal or adjust the policy",
	"700024":  "the client assertion is not valid. Use a client secret, not a certificate assertion",
	"1002012": "the requested scope is invalid. Leave the scope empty to use the default for the cloud",
	"70011":   "the requested scope is invalid. Leave the scope empty to use the default for the cloud",
}

// SignInErrorMessage explains a token failure in words a user can act on. err may be any error from the
// client; for one that is not a sign-in failure it returns err.Error().
func SignInErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var te *TokenError
	if !errors.As(err, &te) {
		return err.Error()
	}
	if advice, ok := aadstsAdvice[te.AADSTS]; ok {
		return fmt.Sprintf("Entra ID error AADSTS%s: %s", te.AADSTS, advice)
	}
	if te.AADSTS != "" {
		return fmt.Sprintf("Entra ID refused the credentials (AADSTS%s). Look the code up at https://login.microsoftonline.com/error?code=%s", te.AADSTS, te.AADSTS)
	}
	// MSAL flattens transport errors into text, so the typed checks are backed by the text ones.
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var dns *net.DNSError
	var op *net.OpError
	text := te.err.Error()
	switch {
	case errors.As(te.err, &unknownCA) || strings.Contains(text, "certificate signed by unknown authority"):
		return "the sign-in server's TLS certificate is not trusted. Add its CA certificate to the connection"
	case errors.As(te.err, &hostname) || strings.Contains(text, "x509: certificate is valid for"):
		return "the sign-in server's TLS certificate does not match its name. Check the authority URL"
	case errors.As(te.err, &dns) || strings.Contains(text, "no such host"):
		return "the sign-in server's name does not resolve. Check the authority URL and DNS"
	case errors.As(te.err, &op) || strings.Contains(text, "connection refused"):
		return "the sign-in server cannot be reached. Check the authority URL and the network path to it"
	case errors.Is(te.err, context.Canceled), errors.Is(te.err, context.DeadlineExceeded):
		return "the sign-in was interrupted before Entra ID answered"
	case te.Rejected:
		return "Entra ID refused the credentials. Check the tenant ID, client ID and client secret"
	}
	return "could not obtain an access token. Check the authority URL and the network path to it"
}
