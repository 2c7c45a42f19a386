package defendersim

import (
	"strings"
	"testing"
)

// TestHostileRequests sends malformed paths, queries and bodies; none may get a 5xx.
func TestHostileRequests(t *testing.T) {
	s := MustStart(t, Options{Machines: 5, Limits: Limits{MaxLibraryFileBytes: 1024}})
	c := newClient(t, s, App{})
	id := s.devices[0].m.ID
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/machines?$filter=" + strings.Repeat("(", 5000), ""},
		{"GET", "/api/machines?$filter=%ZZ", ""},
		{"GET", "/api/machines?$top=-1", ""},
		{"GET", "/api/machines?$skip=99999999999999999999", ""},
		{"GET", "/api/machines?$expand=evidence", ""},
		{"GET", "/api/machines?$apply=groupby", ""},
		{"GET", "/api/machines/%2e%2e%2f%2e%2e", ""},
		{"GET", "/api/machineactions/x/GetLiveResponseResultDownloadLink(index=-1)", ""},
		{"GET", "/api/machineactions/x/GetLiveResponseResultDownloadLink(", ""},
		{"GET", "/api/machineactions/x/GetLiveResponseResultDownloadLink(index=99999999999999999999)", ""},
		{"POST", "/api/machines/" + id + "/runliveresponse", `[]`},
		{"POST", "/api/machines/" + id + "/runliveresponse", `{"Commands":{}}`},
		{"POST", "/api/machines/" + id + "/runliveresponse", `{"Commands":[null]}`},
		{"POST", "/api/machines/" + id + "/runliveresponse", `{"Commands":[{"type":7}]}`},
		{"POST", "/api/machines/" + id + "/runliveresponse", `{"Commands":[{"type":"GetFile","params":[{"key":"Path","value":null}]}]}`},
		{"POST", "/api/machines/" + id + "/runliveresponse", `{"Commands":[{"type":"GetFile","params":"x"}],"Comment":5}`},
		{"POST", "/api/machines/" + id + "/runliveresponse", `{"Commands":[]}{}`},
		{"POST", "/api/machines/" + id + "/isolate", `{"Comment":"x","IsolationType":"Total"}`},
		{"PATCH", "/api/alerts/x", `{"status":null,"comment":["x"]}`},
		{"POST", "/api/libraryfiles", `not multipart`},
		{"DELETE", "/api/libraryfiles/%00", ""},
		{"PUT", "/api/machines", ""},
		{"GET", "/_blob/investigation-actions-data/../../ca-key.pem?se=2099-01-01T00:00:00Z&sig=x", ""},
		{"GET", "/_blob/", ""},
		{"POST", "/x/oauth2/v2.0/token", "%%%"},
		{"GET", "/", ""},
	} {
		r := c.raw(tc.method, tc.path, strings.NewReader(tc.body), "application/json")
		if r.status >= 500 {
			t.Errorf("%s %s %q = %d %s", tc.method, tc.path, tc.body, r.status, r.body)
		}
	}
	big := make([]byte, 1025)
	if r := c.upload("big.bin", big, nil); r.status != 400 {
		t.Errorf("upload over the limit = %d %s, want 400", r.status, r.body)
	}
	if r := c.upload("fits.bin", big[:1024], nil); r.status != 200 {
		t.Errorf("upload at the limit = %d %s, want 200", r.status, r.body)
	}
}
