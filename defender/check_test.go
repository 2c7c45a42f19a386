package defender

import (
	"net/http"
	"strings"
	"testing"
)

func TestCheckConnection(t *testing.T) {
	all := []string{"Machine.ReadWrite.All", "Machine.LiveResponse", "Library.Manage", "Alert.ReadWrite.All"}
	tests := []struct {
		name      string
		roles     []string
		secret    string
		apiStatus int
		wantOK    bool
		words     string
	}{
		{"OK", all, "", 200, true, "every permission"},
		{"MissingAlertRoles", all[:3], "", 200, false, "lacks Alert.Read.All, Alert.ReadWrite.All"},
		{"WrongSecret", all, "Zz9-bad", 200, false, "client secret is wrong"},
		{"APIRefusesToken", all, "", 403, false, "refused the token"},
		{"APIDown", all, "", 500, false, "could not be reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.apiStatus != 200 {
					writeError(w, tt.apiStatus, "X", "no")
					return
				}
				writeJSON(w, 200, map[string]any{"value": []Machine{}})
			})
			f.roles = tt.roles
			c, _ := f.client(t, func(cfg *Config) {
				cfg.Limits.MaxAttempts = 1
				if tt.secret != "" {
					cfg.ClientSecret = tt.secret
				}
			})
			res, err := c.CheckConnection(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tt.wantOK || !strings.Contains(res.Message, tt.words) {
				t.Errorf("CheckConnection = %+v, want ok=%v and %q", res, tt.wantOK, tt.words)
			}
			if strings.Contains(res.Message, "Zz9-bad") {
				t.Error("message shows the secret")
			}
		})
	}
}
