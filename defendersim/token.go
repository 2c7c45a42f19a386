package defendersim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// mdeResource is the WindowsDefenderATP resource a token is normally requested for (§1.2).
const mdeResource = "https://api.securitycenter.microsoft.com"

// mdeAudiences are the identifier URIs of the WindowsDefenderATP service principal (§1.2). A token for
// any of them is accepted by the API.
var mdeAudiences = map[string]bool{
	"https://api.securitycenter.microsoft.com":                 true,
	"https://api.securitycenter.windows.com":                   true,
	"https://api-us.securitycenter.microsoft.com":              true,
	"https://api-eu.securitycenter.microsoft.com":              true,
	"https://api-uk.securitycenter.microsoft.com":              true,
	"https://api-gcc.securitycenter.microsoft.us":              true,
	"https://api-gov.securitycenter.microsoft.us":              true,
	"https://securitycenter.onmicrosoft.com/windowsatpservice": true,
	"https://securitycenter.microsoft.com/mtp":                 true,
	"https://securityoperations.microsoft.com":                 true,
}

// otherResources exist in Entra but are not the MDE API: Entra issues tokens for them and the API
// refuses those tokens with 403, as users reported for a wrong audience (#9246).
var otherResources = map[string]bool{
	"https://api.security.microsoft.com":                  true,
	"https://graph.microsoft.com":                         true,
	"https://userrequestsgraphapi-prd.trafficmanager.net": true,
}

func normalizeResource(r string) string {
	return strings.TrimRight(strings.ToLower(strings.TrimSpace(r)), "/")
}

func newSigningKey() (*ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(append(key.PublicKey.X.Bytes(), key.PublicKey.Y.Bytes()...))
	return key, base64.RawURLEncoding.EncodeToString(sum[:12]), nil
}

// claims are the access-token claims of §1.4.
type claims struct {
	Aud     string   `json:"aud"`
	Iss     string   `json:"iss"`
	Iat     int64    `json:"iat"`
	Nbf     int64    `json:"nbf"`
	Exp     int64    `json:"exp"`
	AppID   string   `json:"appid"`
	AppIDAC string   `json:"appidacr"`
	IDTyp   string   `json:"idtyp"`
	OID     string   `json:"oid"`
	Roles   []string `json:"roles"`
	TID     string   `json:"tid"`
	Ver     string   `json:"ver"`
}

func (s *Sim) mint(c claims) (string, error) {
	header, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "ES256", "kid": s.tokenKID})
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signed))
	r, sv, err := ecdsa.Sign(rand.Reader, s.tokenKey, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signed + "." + enc.EncodeToString(sig), nil
}

var errBadToken = errors.New("bad token")

// verify checks a bearer token's signature and lifetime and returns its claims.
func (s *Sim) verify(token string, now time.Time) (claims, error) {
	var c claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errBadToken
	}
	enc := base64.RawURLEncoding
	sig, err := enc.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return c, errBadToken
	}
	var header struct{ Alg, Kid string }
	hb, err := enc.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &header) != nil || header.Alg != "ES256" || header.Kid != s.tokenKID {
		return c, errBadToken
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&s.tokenKey.PublicKey, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return c, errBadToken
	}
	pb, err := enc.DecodeString(parts[1])
	if err != nil || json.Unmarshal(pb, &c) != nil {
		return c, errBadToken
	}
	if now.Unix() >= c.Exp {
		return c, fmt.Errorf("token expired at %s: %w", time.Unix(c.Exp, 0).UTC().Format(time.RFC3339), errBadToken)
	}
	if c.Nbf > now.Add(5*time.Minute).Unix() {
		return c, fmt.Errorf("token not yet valid: %w", errBadToken)
	}
	return c, nil
}

// entraError writes an Entra ID token-endpoint error.
func entraError(w http.ResponseWriter, status int, errCode string, aadsts int, desc string) {
	trace, corr := newGUID(), newGUID()
	now := time.Now().UTC()
	full := fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", aadsts, desc, trace, corr, now.Format("2006-01-02 15:04:05Z"))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"error":             errCode,
		"error_description": full,
		"error_codes":       []int{aadsts},
		"timestamp":         now.Format("2006-01-02 15:04:05Z"),
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

func (s *Sim) knownTenant(t string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.EqualFold(t, s.tenantID) {
		return true
	}
	for _, a := range s.apps {
		if strings.EqualFold(a.TenantID, t) {
			return true
		}
	}
	return false
}

// handleToken serves the v1 (`resource`) and v2 (`scope=.../.default`) client-credentials grants.
func (s *Sim) handleToken(w http.ResponseWriter, r *http.Request, tenant string, v2 bool) {
	s.count("Token")
	if r.Method != http.MethodPost {
		entraError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	form := r.PostForm
	if !s.knownTenant(tenant) {
		entraError(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	grant := form.Get("grant_type")
	switch {
	case grant == "":
		entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	case grant != "client_credentials":
		entraError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", grant))
		return
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	}
	s.mu.Lock()
	app, ok := s.apps[clientID]
	s.mu.Unlock()
	if !ok || !strings.EqualFold(app.TenantID, tenant) {
		entraError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, tenant))
		return
	}
	secret := form.Get("client_secret")
	if secret == "" {
		entraError(w, http.StatusUnauthorized, "invalid_client", 7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(app.ClientSecret)) != 1 {
		entraError(w, http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
		return
	}

	var resource string
	if v2 {
		scope := form.Get("scope")
		if scope == "" {
			entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
			return
		}
		for _, sc := range strings.Fields(scope) {
			if strings.HasSuffix(sc, "/.default") {
				resource = strings.TrimSuffix(sc, "/.default")
				break
			}
		}
		if resource == "" {
			entraError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope))
			return
		}
	} else {
		resource = form.Get("resource")
		if resource == "" {
			entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'resource'.")
			return
		}
	}
	aud := normalizeResource(resource)
	if !mdeAudiences[aud] && !otherResources[aud] {
		entraError(w, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", resource, tenant))
		return
	}

	now := time.Now()
	life := max(s.clock.real(s.limits.TokenLifetime), 30*time.Second)
	roles := app.Roles
	if !mdeAudiences[aud] {
		roles = nil // roles are granted on the WindowsDefenderATP app only
	}
	oid := sha256.Sum256([]byte("oid:" + app.ClientID))
	c := claims{
		Aud: aud, Iss: "https://sts.windows.net/" + app.TenantID + "/",
		Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(life).Unix(),
		AppID: app.ClientID, AppIDAC: "1", IDTyp: "app", OID: guidFromBytes(oid[:16]),
		Roles: append([]string{}, roles...), TID: app.TenantID, Ver: "1.0",
	}
	tok, err := s.mint(c)
	if err != nil {
		entraError(w, http.StatusInternalServerError, "server_error", 90011, "The token could not be issued.")
		return
	}
	secs := int64(life / time.Second)
	var body map[string]any
	if v2 {
		body = map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok}
	} else {
		// Entra v1 writes the numbers as strings and adds expires_on, not_before and resource (§1.3).
		body = map[string]any{
			"token_type": "Bearer", "expires_in": strconv.FormatInt(secs, 10), "ext_expires_in": strconv.FormatInt(secs, 10),
			"expires_on": strconv.FormatInt(c.Exp, 10), "not_before": strconv.FormatInt(c.Nbf, 10),
			"resource": resource, "access_token": tok,
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	json.NewEncoder(w).Encode(body)
}

func guidFromBytes(b []byte) string {
	h := fmt.Sprintf("%x", b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// handleOpenID serves the OpenID Connect metadata MSAL reads before its first token request.
func (s *Sim) handleOpenID(w http.ResponseWriter, r *http.Request, tenant string, v2 bool) {
	s.count("OpenIDConfiguration")
	if !s.knownTenant(tenant) {
		entraError(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	base := s.AuthorityURL() + tenant
	doc := map[string]any{
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"tenant_region_scope":                   "NA",
		"cloud_instance_name":                   "microsoftonline.com",
	}
	if v2 {
		doc["issuer"] = base + "/v2.0"
		doc["token_endpoint"] = base + "/oauth2/v2.0/token"
		doc["authorization_endpoint"] = base + "/oauth2/v2.0/authorize"
		doc["jwks_uri"] = base + "/discovery/v2.0/keys"
	} else {
		doc["issuer"] = "https://sts.windows.net/" + tenant + "/"
		doc["token_endpoint"] = base + "/oauth2/token"
		doc["authorization_endpoint"] = base + "/oauth2/authorize"
		doc["jwks_uri"] = base + "/discovery/keys"
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(doc)
}

// handleKeys publishes the token-signing key so tools can check the emulator's tokens.
func (s *Sim) handleKeys(w http.ResponseWriter, r *http.Request) {
	pub := s.tokenKey.PublicKey
	x, y := make([]byte, 32), make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	enc := base64.RawURLEncoding
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "use": "sig", "crv": "P-256", "kid": s.tokenKID, "alg": "ES256",
		"x": enc.EncodeToString(x), "y": enc.EncodeToString(y),
	}}})
}

// handleInstanceDiscovery answers MSAL's instance discovery for clients that did not disable it.
func (s *Sim) handleInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{
		"tenant_discovery_endpoint": s.AuthorityURL() + "common/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata":                  []map[string]any{{"preferred_network": host, "preferred_cache": host, "aliases": []string{host}}},
	})
}
