package http

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
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

func TestIOCPage(t *testing.T) {
	t.Parallel()
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	retags := &retagRecorder{}
	env := newEventsEnv(t, db, nil, func(s *Server) { s.IOCs, s.Retagger = sqldb.NewIOCService(db), retags })
	c, csrf := env.loginCSRF(t)
	page := env.url("/projects/%d/iocs", env.project.ID)
	read := func(res *http.Response, err error) (int, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if st, body := read(c.Get(page)); st != http.StatusOK || !strings.Contains(body, "No IOC lists in this project yet.") || !strings.Contains(body, `name="content"`) {
		t.Fatalf("empty page = %d\n%s", st, body)
	}
	form := url.Values{"csrf": {csrf}, "name": {"Report <42>"}, "level": {"medium"}, "format": {"text"},
		"content": {"203.0.113.9\tstager\nbogus value here!\n"}}
	st, body := read(c.PostForm(page, form))
	if st != http.StatusCreated || !strings.Contains(body, "saved with 1 indicators") || !strings.Contains(body, "<td>2</td>") ||
		!strings.Contains(body, "Report &lt;42&gt;") || !strings.Contains(body, "being retagged") {
		t.Fatalf("create = %d\n%s", st, body)
	}
	// The same name again: the form comes back with the error and what was typed.
	st, body = read(c.PostForm(page, form))
	if st != http.StatusBadRequest || !strings.Contains(body, "already has a list named") || !strings.Contains(body, "bogus value here!") {
		t.Fatalf("duplicate = %d\n%s", st, body)
	}
	// Without the CSRF field nothing is saved.
	form.Set("csrf", "")
	form.Set("name", "other")
	if st, _ := read(c.PostForm(page, form)); st != http.StatusForbidden {
		t.Errorf("without CSRF = %d, want 403", st)
	}
	lists, err := env.srv.IOCs.FindIOCLists(context.Background(), env.project.ID, true)
	if err != nil || len(lists) != 1 {
		t.Fatalf("lists = %+v, %v", lists, err)
	}
	// Delete through the form, but not from another project's URL.
	del := url.Values{"csrf": {csrf}}
	if st, _ := read(c.PostForm(env.url("/projects/%d/iocs/%d/delete", env.other.ID, lists[0].ID), del)); st != http.StatusNotFound {
		t.Errorf("delete through another project = %d, want 404", st)
	}
	if st, _ := read(c.PostForm(env.url("/projects/%d/iocs/%d/delete", env.project.ID, lists[0].ID), del)); st != http.StatusSeeOther {
		t.Errorf("delete = %d, want 303", st)
	}
	if lists, _ := env.srv.IOCs.FindIOCLists(context.Background(), env.project.ID, true); len(lists) != 0 {
		t.Errorf("after delete: %+v", lists)
	}
	if got := retags.projects(); len(got) != 2 {
		t.Errorf("retags queued: %v, want create and delete", got)
	}
}
