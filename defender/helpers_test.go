package defender

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTenant is an Entra-like authority and an MDE-like API on one TLS test server. The API side is
// the handler each test writes; the authority side issues unsigned JWTs carrying roles.
type fakeTenant struct {
	srv        *httptest.Server
	tenant     string
	secret     string
	roles      []string
	tokenCalls atomic.Int32
	// tokenError, when set, is the AADSTS number the token endpoint refuses with.
	tokenError string
	// tokenShape, when set, is a sample token response whose access_token is replaced by the real one.
	tokenShape []byte
	mu         sync.Mutex
	api        http.HandlerFunc
	issued     map[string]bool
}

func newFakeTenant(t *testing.T, api http.HandlerFunc) *fakeTenant {
	t.Helper()
	f := &fakeTenant{tenant: "11111111-2222-3333-4444-555555555555", secret: "s3cr3t-value", api: api, issued: map[string]bool{},
		roles: []string{"Machine.Read.All", "Machine.LiveResponse", "Library.Manage"}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	// Handshakes refused on purpose (untrusted CA tests) would otherwise be logged by the server.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTenant) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
		base := f.srv.URL + "/" + f.tenant
		writeJSON(w, 200, map[string]any{"issuer": base + "/v2.0", "token_endpoint": base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize"})
	case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
		f.tokenCalls.Add(1)
		_ = r.ParseForm()
		code := f.tokenError
		if code == "" && r.PostForm.Get("client_secret") != f.secret {
			code = "7000215"
		}
		if code != "" {
			writeJSON(w, 401, map[string]any{"error": "invalid_client", "error_codes": []int{atoi(code)},
				"error_description": "AADSTS" + code + ": refused. Trace ID: x"})
			return
		}
		claims, _ := json.Marshal(map[string]any{"aud": "https://api.securitycenter.microsoft.com", "tid": f.tenant, "roles": f.roles,
			"exp": time.Now().Add(time.Hour).Unix()})
		tok := "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
		f.mu.Lock()
		f.issued[tok] = true
		f.mu.Unlock()
		if f.tokenShape != nil {
			var body map[string]any
			_ = json.Unmarshal(f.tokenShape, &body)
			body["access_token"] = tok
			// The sample's absolute times are in 2024; keep their string form, move them to now.
			if _, ok := body["expires_on"]; ok {
				body["expires_on"] = strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
				body["not_before"] = strconv.FormatInt(time.Now().Unix(), 10)
			}
			writeJSON(w, 200, body)
			return
		}
		writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": 3599, "access_token": tok})
	case strings.HasPrefix(strings.ToLower(r.URL.Path), "/api/"):
		f.mu.Lock()
		ok := f.issued[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		f.mu.Unlock()
		if !ok {
			writeError(w, 401, "Unauthorized", "no valid token")
			return
		}
		f.api(w, r)
	default:
		http.NotFound(w, r)
	}
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

func (f *fakeTenant) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
}

// recorder replaces the client's sleep: it records each wait and returns at once, so tests check
// which waits were asked for without spending them.
type recorder struct {
	mu     sync.Mutex
	sleeps []time.Duration
}

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.sleeps = append(r.sleeps, d)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *recorder) all() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.sleeps...)
}

// client builds a client for the fake tenant with generous limits, no real waiting, and cfg tweaks.
func (f *fakeTenant) client(t *testing.T, tweak func(*Config)) (*Client, *recorder) {
	t.Helper()
	cfg := Config{TenantID: f.tenant, ClientID: "app-1", ClientSecret: f.secret, APIURL: f.srv.URL,
		AuthorityURL: f.srv.URL + "/", CACertPEM: f.caPEM(),
		Limits: Limits{PerMinute: 100000, PerHour: 1000000, LiveResponsePerMinute: 100000}}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	c.sleep = rec.sleep
	return c, rec
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg, "target": "5d2e7c1a-9b34-4f0e-8a61-3c7d2e9f0b14"}})
}

// dropConnection ends the exchange without an answer, as a connection lost after sending would.
func dropConnection(t *testing.T, w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		t.Error("response writer cannot hijack")
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	conn.Close()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
