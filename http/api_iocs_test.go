package http

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestIOCAPI(t *testing.T) {
	t.Parallel()
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	retags := &retagRecorder{}
	env := newEventsEnv(t, db, nil, func(s *Server) { s.IOCs, s.Retagger = sqldb.NewIOCService(db), retags })
	pid := env.project.ID
	type listResp struct {
		List     quarry.IOCList `json:"list"`
		Problems []struct {
			Line          int
			Value, Reason string
		}
		MoreProblems int            `json:"more_problems"`
		Skipped      map[string]int `json:"skipped"`
	}

	// Text: good lines are kept, normalised; the bad one is reported with its line.
	content := "# C2 from the vendor report\n203.0.113[.]9\tstager\nhxxp://evil.example/x.sh\nsha256:" + strings.Repeat("AB", 32) + "\nnot an indicator at all!\n"
	res := env.do(t, "POST", fmt.Sprintf("/api/v1/projects/%d/iocs", pid), env.analyst, map[string]any{"name": "Report 42", "content": content})
	if res.status != http.StatusCreated {
		t.Fatalf("create = %d %s", res.status, res.body)
	}
	var created listResp
	res.json(t, &created)
	if created.List.Count != 3 || created.List.Level != "high" || len(created.Problems) != 1 || created.Problems[0].Line != 5 {
		t.Fatalf("created = %+v", created)
	}
	res = env.do(t, "GET", fmt.Sprintf("/api/v1/iocs/%d", created.List.ID), env.viewer, nil)
	var full quarry.IOCList
	res.json(t, &full)
	for _, want := range []string{"203.0.113.9", "http://evil.example/x.sh", strings.Repeat("ab", 32)} {
		if !strings.Contains(full.Indicators, want) {
			t.Errorf("stored list lacks %q:\n%s", want, full.Indicators)
		}
	}

	// MISP, as a file in a form.
	misp := `{"Event":{"info":"Phishing wave","Attribute":[
		{"type":"domain","value":"login-micros0ft.example","to_ids":true,"comment":"phishing"},
		{"type":"ip-dst","value":"198.51.100.23","to_ids":false},
		{"type":"filename|sha256","value":"invoice.exe|` + strings.Repeat("cd", 32) + `","to_ids":true}]}}`
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("name", "MISP 7")
	mw.WriteField("format", "misp")
	mw.WriteField("level", "critical")
	fw, _ := mw.CreateFormFile("file", "event.json")
	io.WriteString(fw, misp)
	mw.Close()
	req, _ := http.NewRequest("POST", env.url("/api/v1/projects/%d/iocs", pid), &body)
	req.Header.Set("Authorization", "Bearer "+env.analyst)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	hres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(hres.Body)
	hres.Body.Close()
	if hres.StatusCode != http.StatusCreated {
		t.Fatalf("MISP form = %d %s", hres.StatusCode, b)
	}
	var mispList listResp
	(apiResp{body: b}).json(t, &mispList)
	if mispList.List.Count != 2 || mispList.List.Level != "critical" {
		t.Errorf("MISP list = %+v (want the domain and the hash; the non-IDS address left out)", mispList)
	}

	// Refusals: a viewer, nothing readable, a duplicate name, an unknown level, another project's list id.
	for _, tc := range []struct {
		name, token string
		body        map[string]any
		status      int
	}{
		{"viewer", env.viewer, map[string]any{"name": "x", "content": "203.0.113.1"}, http.StatusForbidden},
		{"nothing readable", env.analyst, map[string]any{"name": "x", "content": "hello world!\n"}, http.StatusBadRequest},
		{"duplicate", env.analyst, map[string]any{"name": "report 42", "content": "203.0.113.1"}, http.StatusConflict},
		{"level", env.analyst, map[string]any{"name": "y", "level": "severe", "content": "203.0.113.1"}, http.StatusBadRequest},
		{"format", env.analyst, map[string]any{"name": "y", "format": "stix", "content": "203.0.113.1"}, http.StatusBadRequest},
	} {
		res := env.do(t, "POST", fmt.Sprintf("/api/v1/projects/%d/iocs", pid), tc.token, tc.body)
		if res.status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, res.status, tc.status, res.body)
		}
	}

	// Listing is brief; update replaces; delete removes; every change is audited.
	res = env.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/iocs", pid), env.viewer, nil)
	var lists struct{ Lists []quarry.IOCList }
	res.json(t, &lists)
	if len(lists.Lists) != 2 || lists.Lists[0].Indicators != "" {
		t.Fatalf("lists = %+v", lists)
	}
	res = env.do(t, "PUT", fmt.Sprintf("/api/v1/iocs/%d", created.List.ID), env.analyst, map[string]any{"name": "Report 42", "content": "evil.example"})
	if res.status != http.StatusOK {
		t.Fatalf("update = %d %s", res.status, res.body)
	}
	res = env.do(t, "DELETE", fmt.Sprintf("/api/v1/iocs/%d", mispList.List.ID), env.analyst, nil)
	if res.status != http.StatusNoContent {
		t.Fatalf("delete = %d %s", res.status, res.body)
	}
	if res := env.do(t, "GET", fmt.Sprintf("/api/v1/iocs/%d", mispList.List.ID), env.viewer, nil); res.status != http.StatusNotFound {
		t.Errorf("get deleted = %d", res.status)
	}
	// Two creations, an update and a delete, each of the project: its events are retagged.
	if got := retags.projects(); len(got) != 4 || slices.ContainsFunc(got, func(id int64) bool { return id != pid }) {
		t.Errorf("retags queued for projects %v, want 4 of %d", got, pid)
	}
	for _, action := range []string{"ioc_list.create", "ioc_list.update", "ioc_list.delete"} {
		entries, _, err := env.srv.Audit.FindAuditEntries(context.Background(), quarry.AuditFilter{Action: action})
		if err != nil || len(entries) == 0 {
			t.Errorf("audit %s: %d entries, %v", action, len(entries), err)
		}
	}
}

// retagRecorder records what the API asks to retag.
type retagRecorder struct {
	mu  sync.Mutex
	ids []int64
}

func (r *retagRecorder) QueueRetag(_ context.Context, projectID int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, projectID)
	return nil
}

func (r *retagRecorder) projects() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}
