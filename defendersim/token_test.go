package defendersim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// TestAzidentity obtains a token with a real azidentity ClientSecretCredential and uses it on the API.
func TestAzidentity(t *testing.T) {
	s := MustStart(t, Options{Machines: 3})
	app := s.DefaultApp()
	cred, err := azidentity.NewClientSecretCredential(s.TenantID(), app.ClientID, app.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.AuthorityURL()},
			Transport: s.HTTPClient(),
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{mdeResource + "/.default"}})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	cl := decodeClaims(t, tok.Token)
	if cl.Aud != mdeResource || cl.TID != s.TenantID() || cl.AppID != app.ClientID || !slices.Contains(cl.Roles, "Machine.LiveResponse") || cl.Exp == 0 {
		t.Errorf("claims = %+v", cl)
	}
	if s.Stats().CallsByEndpoint["OpenIDConfiguration"] == 0 {
		t.Error("azidentity got a token without reading the OpenID metadata")
	}
	c := &client{tb: t, sim: s, token: tok.Token}
	if r := c.do("GET", "/api/machines", nil); r.status != 200 {
		t.Errorf("API with the azidentity token = %d %s", r.status, r.body)
	}

	bad, _ := azidentity.NewClientSecretCredential(s.TenantID(), app.ClientID, "wrong", &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: s.AuthorityURL()}, Transport: s.HTTPClient()},
		DisableInstanceDiscovery: true,
	})
	if _, err := bad.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{mdeResource + "/.default"}}); err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("GetToken with a wrong secret: %v, want AADSTS7000215", err)
	}
}

func decodeClaims(tb testing.TB, tok string) claims {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("token %q is not a JWT", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c claims
	if err != nil || json.Unmarshal(b, &c) != nil {
		tb.Fatalf("token payload: %v", err)
	}
	return c
}

func TestTokenEndpoint(t *testing.T) {
	s := MustStart(t, Options{Machines: 3})
	app := s.DefaultApp()
	s.AddApp(App{ClientID: "aaaaaaaa-0000-4000-8000-000000000001", ClientSecret: "reader", Roles: []string{"Machine.Read.All"}})
	post := func(path string, form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := s.HTTPClient().PostForm(s.AuthorityURL()+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	base := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {app.ClientID}, "client_secret": {app.ClientSecret}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	v1 := s.TenantID() + "/oauth2/token"
	v2 := s.TenantID() + "/oauth2/v2.0/token"
	for _, tc := range []struct {
		name   string
		path   string
		form   url.Values
		status int
		aadsts string // expected AADSTS code, or "" for success
	}{
		{"V2", v2, base("scope", mdeResource+"/.default"), 200, ""},
		{"V2AltScope", v2, base("scope", "https://securitycenter.onmicrosoft.com/windowsatpservice/.default"), 200, ""},
		{"V1", v1, base("resource", mdeResource), 200, ""},
		{"V1WithScope", v1, base("scope", mdeResource+"/.default"), 400, "AADSTS900144"},
		{"V2WithResource", v2, base("resource", mdeResource), 400, "AADSTS900144"},
		{"V2NoDefault", v2, base("scope", mdeResource+"/Machine.Read.All"), 400, "AADSTS1002012"},
		{"BadSecret", v2, base("scope", mdeResource+"/.default", "client_secret", "nope"), 401, "AADSTS7000215"},
		{"NoSecret", v2, base("scope", mdeResource+"/.default", "client_secret", ""), 401, "AADSTS7000216"},
		{"UnknownClient", v2, base("scope", mdeResource+"/.default", "client_id", "00000000-0000-4000-8000-000000000000"), 400, "AADSTS700016"},
		{"UnknownTenant", "00000000-0000-4000-8000-00000000beef/oauth2/v2.0/token", base("scope", mdeResource+"/.default"), 400, "AADSTS90002"},
		{"UnknownResource", v2, base("scope", "https://example.com/.default"), 400, "AADSTS500011"},
		{"BadGrant", v2, base("scope", mdeResource+"/.default", "grant_type", "password"), 400, "AADSTS70003"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := post(tc.path, tc.form)
			if status != tc.status {
				t.Fatalf("status = %d %v, want %d", status, m, tc.status)
			}
			if tc.aadsts == "" {
				if m["access_token"] == "" || m["token_type"] != "Bearer" {
					t.Errorf("body = %v", m)
				}
				return
			}
			desc, _ := m["error_description"].(string)
			codes, _ := m["error_codes"].([]any)
			if m["error"] == "" || !strings.HasPrefix(desc, tc.aadsts+":") || len(codes) != 1 || m["correlation_id"] == nil {
				t.Errorf("error body = %v, want %s", m, tc.aadsts)
			}
		})
	}

	t.Run("V1Shape", func(t *testing.T) {
		_, m := post(v1, base("resource", mdeResource))
		for _, k := range []string{"expires_in", "ext_expires_in", "expires_on", "not_before"} {
			if _, ok := m[k].(string); !ok {
				t.Errorf("v1 %s = %#v, want a string", k, m[k])
			}
		}
		if m["resource"] != mdeResource {
			t.Errorf("v1 resource = %v", m["resource"])
		}
		_, m2 := post(v2, base("scope", mdeResource+"/.default"))
		if _, ok := m2["expires_in"].(float64); !ok {
			t.Errorf("v2 expires_in = %#v, want a number", m2["expires_in"])
		}
	})

	t.Run("Roles", func(t *testing.T) {
		_, m := post(v2, base("scope", mdeResource+"/.default", "client_id", "aaaaaaaa-0000-4000-8000-000000000001", "client_secret", "reader"))
		cl := decodeClaims(t, m["access_token"].(string))
		if !slices.Equal(cl.Roles, []string{"Machine.Read.All"}) || cl.Iss != "https://sts.windows.net/"+s.TenantID()+"/" || cl.Ver != "1.0" {
			t.Errorf("claims = %+v", cl)
		}
		c := &client{tb: t, sim: s, token: m["access_token"].(string)}
		if r := c.do("GET", "/api/machines", nil); r.status != 200 {
			t.Errorf("reader lists machines = %d", r.status)
		}
		if r := c.do("GET", "/api/libraryfiles", nil); r.status != 403 || !strings.Contains(string(r.body), "(Library.Manage)") {
			t.Errorf("reader lists library = %d %s, want 403 naming Library.Manage", r.status, r.body)
		}
	})
}
