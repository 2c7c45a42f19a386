package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry/sqldb"
)

// TestManualUpload runs the manual collection path through the real program: an analyst
// opens an upload, a collector sends a package with its token over tus, and the acquisition
// and evidence API show the result.
func TestManualUpload(t *testing.T) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		t.Run(dialect, func(t *testing.T) { testManualUpload(t, dialect) })
	}
}

func testManualUpload(t *testing.T, dialect string) {
	ts := startServer(t, dialect)
	p := ts.do(t, "POST", "/api/v1/projects", ts.analyst, map[string]any{"name": "ir-42"})
	if p.status != http.StatusCreated {
		t.Fatalf("create project = %d %s", p.status, p.raw)
	}
	pid := int64(p.body["id"].(float64))
	path := fmt.Sprintf("/api/v1/projects/%d/uploads", pid)

	wantError(t, ts.do(t, "POST", path, ts.viewer, map[string]any{"host_name": "web01"}), http.StatusForbidden, "forbidden")
	wantError(t, ts.do(t, "POST", "/api/v1/projects/999/uploads", ts.analyst, map[string]any{"host_name": "web01"}), http.StatusNotFound, "not_found")
	wantError(t, ts.do(t, "POST", path, ts.analyst, map[string]any{"host_name": "web01", "expires_in": "soon"}), http.StatusBadRequest, "invalid")
	r := ts.do(t, "POST", path, ts.analyst, map[string]any{"host_name": "web01", "expires_in": "2h"})
	if r.status != http.StatusCreated {
		t.Fatalf("create upload = %d %s", r.status, r.raw)
	}
	token, _ := r.body["upload_token"].(string)
	acq := int64(r.body["acquisition_id"].(float64))
	if !strings.HasPrefix(token, "qu_") || r.body["server_url"] != ts.m.URL() || r.body["command"] != "quarry-host collect --server "+ts.m.URL()+" --token "+token {
		t.Fatalf("create upload = %s", r.raw)
	}

	// The upload token is no user credential, and user tokens do not open uploads.
	wantError(t, ts.do(t, "GET", "/api/v1/projects", token, nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, ts.do(t, "GET", "/api/v1/collector/status", ts.admin, nil), http.StatusUnauthorized, "unauthorized")

	pkg := testPackage(t)
	sum := sha256.Sum256(pkg)
	req, _ := http.NewRequest("POST", ts.m.URL()+"/api/v1/uploads/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(len(pkg)))
	req.Header.Set("Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte("p.zip"))+",sha256 "+base64.StdEncoding.EncodeToString([]byte(hex.EncodeToString(sum[:]))))
	res := mustDo(t, req, http.StatusCreated)
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, ts.m.URL()+"/api/v1/uploads/") {
		t.Fatalf("Location = %q, want it under the public URL", loc)
	}
	req, _ = http.NewRequest("PATCH", loc, bytes.NewReader(pkg))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	mustDo(t, req, http.StatusNoContent)

	st := ts.do(t, "GET", "/api/v1/collector/status", token, nil)
	if st.status != http.StatusOK || !received(st.body["state"]) || st.body["sha256"] != hex.EncodeToString(sum[:]) {
		t.Fatalf("status = %d %s", st.status, st.raw)
	}
	a := ts.do(t, "GET", fmt.Sprintf("/api/v1/acquisitions/%d", acq), ts.viewer, nil)
	hist, _ := a.body["history"].([]any)
	if a.status != http.StatusOK || !received(a.body["state"]) || a.body["host_name"] != "web01" || a.body["evidence_id"] == nil || len(hist) < 3 {
		t.Fatalf("acquisition = %d %s", a.status, a.raw)
	}
	if l := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/acquisitions", pid), ts.viewer, nil); l.status != http.StatusOK || l.body["total"] != float64(1) {
		t.Fatalf("list acquisitions = %d %s", l.status, l.raw)
	}
	evID := int64(a.body["evidence_id"].(float64))
	ev := ts.do(t, "GET", fmt.Sprintf("/api/v1/evidence/%d", evID), ts.viewer, nil)
	manifest, _ := ev.body["manifest"].(map[string]any)
	if ev.status != http.StatusOK || ev.body["sha256"] != hex.EncodeToString(sum[:]) || ev.body["size"] != float64(len(pkg)) || manifest["files"] != float64(1) {
		t.Fatalf("evidence = %d %s", ev.status, ev.raw)
	}
	if l := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/evidence", pid), ts.viewer, nil); l.status != http.StatusOK || l.body["total"] != float64(1) {
		t.Fatalf("list evidence = %d %s", l.status, l.raw)
	}
	audit := ts.do(t, "GET", "/api/v1/audit", ts.admin, nil)
	if !strings.Contains(audit.raw, `"acquisition.create"`) || !strings.Contains(audit.raw, `"evidence.receive"`) || strings.Contains(audit.raw, token) {
		t.Fatalf("audit log = %s; want acquisition.create and evidence.receive, and never the token", audit.raw)
	}
}

// received reports whether an acquisition state says its package arrived: processing may
// have taken it further already.
func received(state any) bool {
	return state == "received" || state == "processing" || state == "completed"
}

func mustDo(t *testing.T, req *http.Request, status int) *http.Response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		t.Fatalf("%s %s = %s %s, want %d", req.Method, req.URL, res.Status, body, status)
	}
	return res
}

func testPackage(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("files/var/log/syslog")
	io.WriteString(w, strings.Repeat("Nov 25 12:00:00 web01 sshd[1]: Accepted publickey\n", 50))
	w, _ = zw.Create("manifest.json")
	io.WriteString(w, `{"format":"quarry-package/1","collector":{"version":"dev"},"profile":"triage","host":{"hostname":"web01","os":"linux"},"files":[{"path":"/var/log/syslog"}],"skipped":[],"stats":{"bytes":2550}}`)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
