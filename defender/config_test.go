package defender

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestNewResolvesCloud(t *testing.T) {
	base := Config{TenantID: "t", ClientID: "c", ClientSecret: "s"}
	tests := []struct {
		name                  string
		tweak                 func(*Config)
		api, authority, scope string
		wantErr               string
	}{
		{"DefaultCommercial", func(*Config) {}, "https://api.security.microsoft.com", "https://login.microsoftonline.com/", "https://api.securitycenter.microsoft.com/.default", ""},
		{"GCC", func(c *Config) { c.Cloud = "gcc" }, "https://api-gcc.securitycenter.microsoft.us", "https://login.microsoftonline.com/", "https://api-gcc.securitycenter.microsoft.us/.default", ""},
		{"GCCHigh", func(c *Config) { c.Cloud = "GCC-High" }, "https://api-gov.securitycenter.microsoft.us", "https://login.microsoftonline.us/", "https://api-gov.securitycenter.microsoft.us/.default", ""},
		{"DoD", func(c *Config) { c.Cloud = "dod" }, "https://api-gov.securitycenter.microsoft.us", "https://login.microsoftonline.us/", "https://api-gov.securitycenter.microsoft.us/.default", ""},
		{"Regional", func(c *Config) { c.Cloud = "eu" }, "https://eu.api.security.microsoft.com", "https://login.microsoftonline.com/", "https://api.securitycenter.microsoft.com/.default", ""},
		{"Custom", func(c *Config) { c.APIURL = "https://127.0.0.1:8443/"; c.AuthorityURL = "https://127.0.0.1:8443" },
			"https://127.0.0.1:8443", "https://127.0.0.1:8443/", "https://api.securitycenter.microsoft.com/.default", ""},
		{"UnknownCloud", func(c *Config) { c.Cloud = "mars" }, "", "", "", "unknown cloud"},
		{"PlainHTTP", func(c *Config) { c.APIURL = "http://127.0.0.1:8080" }, "", "", "", "must be an https URL"},
		{"CustomWithoutURL", func(c *Config) { c.Cloud = CloudCustom }, "", "", "", "needs an api url"},
		{"NoSecret", func(c *Config) { c.ClientSecret = "" }, "", "", "", "required"},
		{"BadCA", func(c *Config) { c.CACertPEM = []byte("not pem") }, "", "", "", "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.tweak(&cfg)
			c, err := New(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := c.Cloud()
			if got.APIURL != tt.api || got.AuthorityURL != tt.authority || got.Scope != tt.scope {
				t.Errorf("Cloud() = %+v, want %s %s %s", got, tt.api, tt.authority, tt.scope)
			}
		})
	}
	ids := map[string]bool{}
	for _, c := range Clouds {
		if ids[c.ID] || !strings.HasPrefix(c.APIURL, "https://") || !strings.HasPrefix(c.AuthorityURL, "https://") || !strings.HasSuffix(c.Scope, "/.default") {
			t.Errorf("cloud preset %+v is duplicated or malformed", c)
		}
		ids[c.ID] = true
	}
}

func TestTransientTokenFailureRetried(t *testing.T) {
	var fails atomic.Int32
	f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, Machine{ID: "m1"}) })
	inner := f.srv.Config.Handler
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/token") && fails.Add(1) == 1 {
			writeJSON(w, 503, map[string]any{"error": "temporarily_unavailable", "error_description": "AADSTS50196: try again", "error_codes": []int{50196}})
			return
		}
		inner.ServeHTTP(w, r)
	})
	c, rec := f.client(t, nil)
	if _, err := c.GetMachine(ctxT(t), "m1"); err != nil {
		t.Fatalf("GetMachine after a 503 from the authority: %v", err)
	}
	if len(rec.all()) != 1 {
		t.Errorf("waits = %v, want one backoff", rec.all())
	}
}
