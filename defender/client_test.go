package defender

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTokenIsCachedAndRolesRead(t *testing.T) {
	f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"value": []any{}})
	})
	f.roles = []string{"Machine.Read.All", "Library.Manage"}
	c, _ := f.client(t, nil)
	ctx := ctxT(t)
	for range 20 {
		if _, err := c.ListLibrary(ctx); err != nil {
			t.Fatal(err)
		}
	}
	roles, err := c.GrantedRoles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(roles, ",") != "Machine.Read.All,Library.Manage" {
		t.Errorf("GrantedRoles = %v", roles)
	}
	if n := f.tokenCalls.Load(); n != 1 {
		t.Errorf("token requests = %d for 21 calls, want 1", n)
	}
	var missing []string
	for _, p := range MissingPermissionsFor(roles) {
		missing = append(missing, p.Name)
	}
	if got, want := strings.Join(missing, ","), "Machine.ReadWrite.All,Machine.LiveResponse,Alert.Read.All,Alert.ReadWrite.All"; got != want {
		t.Errorf("MissingPermissionsFor = %s, want %s", got, want)
	}
}

func TestSignInErrors(t *testing.T) {
	tests := []struct {
		name, code, wantWords string
	}{
		{"WrongSecret", "", "client secret is wrong"},
		{"AppNotFound", "700016", "no application with this client ID"},
		{"TenantNotFound", "90002", "tenant was not found"},
		{"Unlisted", "999999", "AADSTS999999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var apiCalls atomic.Int32
			f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) { apiCalls.Add(1) })
			f.tokenError = tt.code
			c, _ := f.client(t, func(cfg *Config) { cfg.ClientSecret = "Zz9-not-the-secret" })
			_, err := c.ListMachines(ctxT(t), MachineQuery{})
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("ListMachines error = %v, want ErrUnauthorized", err)
			}
			msg := SignInErrorMessage(err)
			if !strings.Contains(msg, tt.wantWords) {
				t.Errorf("SignInErrorMessage = %q, want it to say %q", msg, tt.wantWords)
			}
			if strings.Contains(err.Error(), "Zz9-not-the-secret") {
				t.Errorf("error text contains the secret: %v", err)
			}
			if apiCalls.Load() != 0 {
				t.Errorf("API called %d times without a token", apiCalls.Load())
			}
			if f.tokenCalls.Load() != 1 {
				t.Errorf("token endpoint called %d times, want 1 (a refusal is not retried)", f.tokenCalls.Load())
			}
		})
	}
}

func TestSignInUntrustedCA(t *testing.T) {
	f := newFakeTenant(t, nil)
	c, _ := f.client(t, func(cfg *Config) { cfg.CACertPEM = nil })
	_, err := c.GrantedRoles(ctxT(t))
	if err == nil || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("GrantedRoles without the CA = %v, want a non-auth failure", err)
	}
	if msg := SignInErrorMessage(err); !strings.Contains(msg, "not trusted") {
		t.Errorf("SignInErrorMessage = %q, want it to name the certificate", msg)
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		header   map[string]string
		want     error
		code     string
		perms    []string
		retryAft time.Duration
	}{
		{"NotFound", 404, `{"error":{"code":"ResourceNotFound","message":"Machine x was not found","target":"t1"}}`, nil, ErrNotFound, "ResourceNotFound", nil, 0},
		{"Forbidden", 403, `{"error":{"code":"Forbidden","message":"The application does not have any of the required application permissions (Alert.Read.All, Alert.ReadWrite.All) to access the resource.","target":"t"}}`, nil, ErrForbidden, "Forbidden", []string{"Alert.Read.All", "Alert.ReadWrite.All"}, 0},
		{"ActiveRequest", 400, `{"error":{"code":"ActiveRequestAlreadyExists","message":"Action is already in progress","target":"t"}}`, nil, ErrActiveRequestAlreadyExists, "ActiveRequestAlreadyExists", nil, 0},
		{"InProgressWording", 400, `{"error":{"code":"BadRequest","message":"Action is already in progress","target":"t"}}`, nil, ErrActiveRequestAlreadyExists, "BadRequest", nil, 0},
		{"LRDisabled", 403, `{"error":{"code":"DisabledFeature","message":"Live response is disabled","target":"t"}}`, nil, ErrLiveResponseDisabled, "DisabledFeature", nil, 0},
		{"Unauthorized", 401, ``, nil, ErrUnauthorized, "Unauthorized", nil, 0},
		{"ThrottledLong", 429, `{"error":{"code":"TooManyRequests","message":"slow down","target":"t"}}`, map[string]string{"Retry-After": "3600"}, ErrThrottled, "TooManyRequests", nil, time.Hour},
		{"BadRequest", 400, `{"error":{"code":"InvalidRequestBody","message":"bad","target":"t"}}`, nil, ErrBadRequest, "InvalidRequestBody", nil, 0},
		{"HTMLFromProxy", 502, `<html>bad gateway</html>`, nil, ErrServer, "BadGateway", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			})
			if tt.status == 401 {
				// The fake authority would refuse; let the API answer 401 itself.
			}
			c, _ := f.client(t, func(cfg *Config) { cfg.Limits.MaxAttempts = 2 })
			_, err := c.RunLiveResponse(ctxT(t), "m1", LiveResponseRequest{Commands: []Command{RunScriptCommand("a.ps1", "")}})
			if tt.status >= 500 {
				if !errors.Is(err, ErrOutcomeUnknown) {
					t.Errorf("5xx on runliveresponse: %v, want ErrOutcomeUnknown", err)
				}
				_, err = c.GetMachine(ctxT(t), "m1")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *APIError", err)
			}
			if ae.Code != tt.code || ae.Status != tt.status {
				t.Errorf("APIError = %d %s, want %d %s", ae.Status, ae.Code, tt.status, tt.code)
			}
			if strings.Join(MissingPermissions(err), ",") != strings.Join(tt.perms, ",") {
				t.Errorf("MissingPermissions = %v, want %v", MissingPermissions(err), tt.perms)
			}
			if d, _ := RetryAfter(err); d != tt.retryAft {
				t.Errorf("RetryAfter = %v, want %v", d, tt.retryAft)
			}
		})
	}
}

// TestDocTokenResponses: both token response shapes of mde-api.md §1.3 (v2 with numbers, v1 with
// numbers as strings and extra fields) are accepted, and the token is reused, not fetched per call.
func TestDocTokenResponses(t *testing.T) {
	for _, name := range []string{"token-response-v1.json", "token-response-v2.json"} {
		t.Run(name, func(t *testing.T) {
			shape, err := os.ReadFile(filepath.Join("testdata/mde-api-token", name))
			if err != nil {
				t.Fatal(err)
			}
			f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, Machine{ID: "m1"}) })
			f.tokenShape = shape
			c, _ := f.client(t, nil)
			for range 3 {
				if _, err := c.GetMachine(ctxT(t), "m1"); err != nil {
					t.Fatal(err)
				}
			}
			if n := f.tokenCalls.Load(); n != 1 {
				t.Errorf("token requests = %d, want 1", n)
			}
		})
	}
}
