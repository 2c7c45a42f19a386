package intake_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/blobstore"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// clock is the injectable time of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a running intake on a real database, upload folder and blob store.
type env struct {
	t       *testing.T
	db      *sqldb.DB
	cfg     intake.Config
	svc     *intake.Service
	srv     *httptest.Server
	bucket  *blob.Bucket
	project *quarry.Project
	clock   *clock
	cut     chan struct{} // a cut PATCH was handled to its end
}

func fileBlobURL(t *testing.T) string {
	u, err := blobstore.DefaultURL(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newEnv(t *testing.T, db *sqldb.DB, blobURL string) *env {
	t.Helper()
	ctx := context.Background()
	bucket, err := blobstore.Open(ctx, blobURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	p := &quarry.Project{Name: "case"}
	if err := sqldb.NewProjectService(db).CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, bucket: bucket, project: p, clock: &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}, cut: make(chan struct{}, 1)}
	e.cfg = intake.Config{
		Acquisitions: sqldb.NewAcquisitionService(db),
		Evidence:     sqldb.NewEvidenceService(db),
		Tokens:       sqldb.NewUploadTokenService(db),
		Enrol:        sqldb.NewEnrolTokenService(db),
		Audit:        sqldb.NewAuditService(db),
		Bucket:       bucket,
		BlobURL:      blobURL,
		UploadDir:    t.TempDir(),
		Now:          e.clock.Now,
	}
	e.start()
	return e
}

func (e *env) start() {
	e.t.Helper()
	svc, err := intake.New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := svc.Recover(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.svc = svc
	h := svc.Handler()
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.Header.Get("X-Test-Cut") != "" {
			e.cut <- struct{}{}
		}
	}))
	e.t.Cleanup(e.srv.Close)
}

// restart stops the server mid-whatever and starts a new one on the same folder and database.
func (e *env) restart() {
	e.t.Helper()
	e.srv.CloseClientConnections()
	e.srv.Close()
	e.start()
}

func (e *env) manual(host string) (int64, string) {
	e.t.Helper()
	a, secret, _, err := e.svc.CreateManualUpload(context.Background(), e.project.ID, host, 0)
	if err != nil {
		e.t.Fatalf("CreateManualUpload: %v", err)
	}
	return a.ID, secret
}

func (e *env) acquisition(id int64) *quarry.Acquisition {
	e.t.Helper()
	a, err := e.cfg.Acquisitions.FindAcquisitionByID(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) do(method, path, token string, hdr map[string]string, body []byte) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func metadata(sum string, acq int64) string {
	return "filename " + b64("pkg.zip") + ",sha256 " + b64(sum) + ",acquisition_id " + b64(strconv.FormatInt(acq, 10))
}

// create starts an upload and returns the path of its location.
func (e *env) create(token string, size int, meta string) string {
	e.t.Helper()
	resp, body := e.do("POST", intake.BasePath, token, map[string]string{"Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta}, nil)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("create upload: %s %s", resp.Status, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(u.Path, intake.BasePath) {
		e.t.Fatalf("Location %q", resp.Header.Get("Location"))
	}
	return u.Path
}

func (e *env) patch(token, loc string, off int64, data []byte) *http.Response {
	e.t.Helper()
	resp, body := e.do("PATCH", loc, token, map[string]string{"Upload-Offset": strconv.FormatInt(off, 10), "Content-Type": "application/offset+octet-stream"}, data)
	if resp.StatusCode != http.StatusNoContent {
		e.t.Fatalf("PATCH %s at %d: %s %s", loc, off, resp.Status, body)
	}
	return resp
}

func (e *env) head(token, loc string) int64 {
	e.t.Helper()
	resp, body := e.do("HEAD", loc, token, nil, nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("HEAD %s: %s %s", loc, resp.Status, body)
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		e.t.Fatalf("HEAD %s: Upload-Offset %q", loc, resp.Header.Get("Upload-Offset"))
	}
	return off
}

// cutPatch sends a PATCH declaring all of data but hangs up after n bytes, as a dropped
// connection does, and waits until the server has handled what it got.
func (e *env) cutPatch(token, loc string, off int64, data []byte, n int) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: %d\r\nContent-Type: application/offset+octet-stream\r\nX-Test-Cut: 1\r\nContent-Length: %d\r\n\r\n",
		loc, e.srv.Listener.Addr(), token, off, len(data))
	if _, err := conn.Write(data[:n]); err != nil {
		e.t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	<-e.cut
	conn.Close()
}

// upload sends pkg in chunks and returns the location.
func (e *env) upload(token string, acq int64, pkg []byte, sum string, chunk int) string {
	e.t.Helper()
	loc := e.create(token, len(pkg), metadata(sum, acq))
	for off := 0; off < len(pkg); off += chunk {
		e.patch(token, loc, int64(off), pkg[off:min(off+chunk, len(pkg))])
	}
	return loc
}

func (e *env) status(token string) intake.Status {
	e.t.Helper()
	resp, body := e.do("GET", intake.CollectorPath+"status", token, nil, nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("status: %s %s", resp.Status, body)
	}
	var st intake.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) custody(acq int64) string {
	e.t.Helper()
	chain, err := e.cfg.Evidence.FindCustody(context.Background(), acq)
	if err != nil {
		e.t.Fatal(err)
	}
	var actions []string
	for _, c := range chain {
		actions = append(actions, c.Action)
	}
	return strings.Join(actions, ",")
}

// makePackage builds a small quarry-package/1 zip: incompressible file data (so sizes are
// predictable), manifest.json last.
func makePackage(t *testing.T, host string, dataBytes int, seed uint64) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	data := make([]byte, dataBytes)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "files/var/log/auth.log", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	manifest := map[string]any{
		"format":    "quarry-package/1",
		"collector": map[string]any{"name": "quarry-host", "version": "0.5.0"},
		"profile":   "triage",
		"host":      map[string]any{"hostname": host, "os": "linux"},
		"files":     []map[string]any{{"path": "/var/log/auth.log", "size": dataBytes}},
		"skipped":   []map[string]any{{"path": "/etc/shadow", "reason": "permission"}, {"path": "/dev/x", "reason": "special_file"}},
		"stats":     map[string]any{"files": 1, "bytes": dataBytes, "skipped": 2},
	}
	w, err = zw.Create("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(w).Encode(manifest)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:])
}

// checkReceived asserts that the acquisition got its evidence, stored immutably with the
// manifest summary and a full chain of custody.
func (e *env) checkReceived(acq int64, token string, pkg []byte, sum string) *quarry.Evidence {
	e.t.Helper()
	st := e.status(token)
	if st.State != quarry.AcquisitionReceived || st.SHA256 != sum || st.EvidenceID == nil || st.Error != "" {
		e.t.Fatalf("status = %+v, want received with sha256 %s", st, sum)
	}
	ev, err := e.cfg.Evidence.FindEvidenceByID(context.Background(), *st.EvidenceID)
	if err != nil {
		e.t.Fatal(err)
	}
	want := quarry.ManifestSummary{Format: "quarry-package/1", Files: 1, Skipped: 2, Bytes: ev.Manifest.Bytes, OS: "linux", Profile: "triage"}
	if ev.Size != int64(len(pkg)) || ev.BlobKey != fmt.Sprintf("evidence/%d/package.zip", ev.ID) || ev.Manifest != want ||
		ev.CollectorVersion != "0.5.0" || ev.Hostname == "" || ev.ReceivedFromIP != "127.0.0.1" || !strings.HasPrefix(ev.TokenPrefix, "qu_") {
		e.t.Fatalf("evidence = %+v", ev)
	}
	got, err := e.bucket.ReadAll(context.Background(), ev.BlobKey)
	if err != nil || !bytes.Equal(got, pkg) {
		e.t.Fatalf("stored package: %d bytes, %v; want the %d bytes sent", len(got), err, len(pkg))
	}
	if c := e.custody(acq); c != "uploaded,verified,stored" {
		e.t.Fatalf("custody = %s", c)
	}
	a := e.acquisition(acq)
	if a.EvidenceID == nil || *a.EvidenceID != ev.ID || a.History[len(a.History)-1].State != quarry.AcquisitionReceived {
		e.t.Fatalf("acquisition = %+v", a)
	}
	entries, _, err := e.cfg.Audit.FindAuditEntries(context.Background(), quarry.AuditFilter{Action: "evidence.receive", TargetID: strconv.FormatInt(ev.ID, 10)})
	if err != nil || len(entries) != 1 || entries[0].Actor != "upload-token:"+ev.TokenPrefix {
		e.t.Fatalf("audit = %v, %v", entries, err)
	}
	return ev
}

func TestUpload(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		blobURL := fileBlobURL(t)
		e := newEnv(t, db, blobURL)

		t.Run("OK", func(t *testing.T) {
			acq, tok := e.manual("web01")
			pkg, sum := makePackage(t, "web01", 100_000, 1)
			e.upload(tok, acq, pkg, sum, 32<<10)
			ev := e.checkReceived(acq, tok, pkg, sum)
			u, _ := url.Parse(blobURL)
			fi, err := os.Stat(filepath.Join(u.Path, ev.BlobKey))
			if err != nil || fi.Mode().Perm()&0o222 != 0 {
				t.Fatalf("stored file mode = %v, %v; want read-only", fi.Mode(), err)
			}
			if left, _ := filepath.Glob(filepath.Join(e.cfg.UploadDir, "*.bin")); len(left) != 0 {
				t.Fatalf("partial uploads left after the verdict: %v", left)
			}
		})
		t.Run("CreateAnswerLost", func(t *testing.T) {
			// A collector whose creation's answer never came (a cut connection, a restarted
			// server) creates again: it is told where its upload is, and finishes it there.
			acq, tok := e.manual("web01")
			pkg, sum := makePackage(t, "web01", 50_000, 7)
			loc := e.create(tok, len(pkg), metadata(sum, acq))
			resp, body := e.do("POST", intake.BasePath, tok, map[string]string{"Upload-Length": strconv.Itoa(len(pkg)), "Upload-Metadata": metadata(sum, acq)}, nil)
			if got, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusConflict || got == nil || got.Path != loc {
				t.Fatalf("second creation = %s Location %q, want 409 naming %s\n%s", resp.Status, resp.Header.Get("Location"), loc, body)
			}
			if r := e.patch(tok, loc, 0, pkg); r.StatusCode != http.StatusNoContent {
				t.Fatalf("PATCH at the named upload = %s", r.Status)
			}
			e.checkReceived(acq, tok, pkg, sum)

			// Creations racing each other (a retry while the first is still answered): every
			// one that does not win is pointed at an upload that one of them created. (More than
			// one can win: a creation that finds the token's upload not yet written takes it
			// over, and the collector that lost it is pointed at the new one when it asks again.)
			acq, tok = e.manual("web02")
			var wg sync.WaitGroup
			codes, locs := make([]int, 6), make([]string, 6)
			for i := range codes {
				wg.Go(func() {
					req, _ := http.NewRequest("POST", e.srv.URL+intake.BasePath, nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					req.Header.Set("Tus-Resumable", "1.0.0")
					req.Header.Set("Upload-Length", strconv.Itoa(len(pkg)))
					req.Header.Set("Upload-Metadata", metadata(sum, acq))
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
						codes[i] = resp.StatusCode
						if u, err := url.Parse(resp.Header.Get("Location")); err == nil {
							locs[i] = u.Path
						}
					}
				})
			}
			wg.Wait()
			won := map[string]bool{}
			for i, c := range codes {
				if c == http.StatusCreated {
					won[locs[i]] = true
				}
			}
			if len(won) == 0 {
				t.Fatalf("no racing creation won: %v", codes)
			}
			for i, c := range codes {
				if c != http.StatusCreated && (c != http.StatusConflict || !won[locs[i]]) {
					t.Errorf("racing creation %d = %d at %q, want 409 at a created upload (all: %v %v)", i, c, locs[i], codes, locs)
				}
			}
		})

		t.Run("CutMidway", func(t *testing.T) {
			acq, tok := e.manual("web02")
			pkg, sum := makePackage(t, "web02", 300_000, 2)
			loc := e.create(tok, len(pkg), metadata(sum, acq))
			var off int64
			for _, cut := range []int{1, 50_000, 70_001, 4096} {
				e.cutPatch(tok, loc, off, pkg[off:], cut)
				got := e.head(tok, loc)
				if got != off+int64(cut) {
					t.Fatalf("after cutting %d bytes at %d: offset %d, want %d", cut, off, got, off+int64(cut))
				}
				off = got
			}
			e.patch(tok, loc, off, pkg[off:])
			e.checkReceived(acq, tok, pkg, sum)
		})
		t.Run("ServerRestart", func(t *testing.T) {
			acq, tok := e.manual("web03")
			pkg, sum := makePackage(t, "web03", 200_000, 3)
			loc := e.create(tok, len(pkg), metadata(sum, acq))
			e.patch(tok, loc, 0, pkg[:80_000])
			e.cutPatch(tok, loc, 80_000, pkg[80_000:], 10_000)
			e.restart()
			off := e.head(tok, loc)
			if off != 90_000 {
				t.Fatalf("offset after restart = %d, want 90000", off)
			}
			e.patch(tok, loc, off, pkg[off:])
			e.checkReceived(acq, tok, pkg, sum)
		})
		t.Run("HashMismatch", func(t *testing.T) {
			acq, tok := e.manual("web04")
			pkg, sum := makePackage(t, "web04", 50_000, 4)
			tampered := bytes.Clone(pkg)
			tampered[100] ^= 0xff
			loc := e.upload(tok, acq, tampered, sum, 1<<20)
			got := sha256.Sum256(tampered)
			wantErr := fmt.Sprintf("hash mismatch: declared %s, received %s", sum, hex.EncodeToString(got[:]))
			st := e.status(tok)
			if st.State != quarry.AcquisitionFailed || st.Error != wantErr || st.EvidenceID != nil {
				t.Fatalf("status = %+v, want failed with %q", st, wantErr)
			}
			id := loc[strings.LastIndex(loc, "/")+1:]
			kept, err := e.bucket.ReadAll(context.Background(), fmt.Sprintf("rejected/%d/%s.zip", acq, id))
			if err != nil || !bytes.Equal(kept, tampered) {
				t.Fatalf("rejected bytes kept: %d, %v", len(kept), err)
			}
			if c := e.custody(acq); c != "uploaded,rejected" {
				t.Fatalf("custody = %s", c)
			}
			if list, total, _ := e.cfg.Evidence.FindEvidence(context.Background(), quarry.EvidenceFilter{AcquisitionID: &acq}); total != 0 {
				t.Fatalf("evidence recorded for a rejected package: %v", list)
			}
			// Failed is final: the token can neither start again nor report progress.
			resp, _ := e.do("POST", intake.BasePath, tok, map[string]string{"Upload-Length": "10", "Upload-Metadata": metadata(sum, acq)}, nil)
			if resp.StatusCode != http.StatusConflict {
				t.Fatalf("create after failure: %s, want 409", resp.Status)
			}
		})
		t.Run("NeverOverwrite", func(t *testing.T) {
			// A blob already at the key with other bytes (a bug, or tampering) stops storage
			// instead of being replaced.
			acq, tok := e.manual("web05")
			pkg, sum := makePackage(t, "web05", 10_000, 5)
			next := nextEvidenceID(t, e)
			if err := e.bucket.WriteAll(context.Background(), fmt.Sprintf("evidence/%d/package.zip", next), []byte("other"), nil); err != nil {
				t.Fatal(err)
			}
			loc := e.create(tok, len(pkg), metadata(sum, acq))
			resp, body := e.do("PATCH", loc, tok, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, pkg)
			if resp.StatusCode != http.StatusInternalServerError {
				t.Fatalf("final PATCH over an occupied key: %s %s, want 500", resp.Status, body)
			}
			if got, _ := e.bucket.ReadAll(context.Background(), fmt.Sprintf("evidence/%d/package.zip", next)); string(got) != "other" {
				t.Fatalf("existing blob was overwritten")
			}
			if a := e.acquisition(acq); a.State != quarry.AcquisitionUploading {
				t.Fatalf("state = %s, want uploading until the package is stored", a.State)
			}
			// Once the key is free, asking for the status retries the verdict.
			e.bucket.Delete(context.Background(), fmt.Sprintf("evidence/%d/package.zip", next))
			e.checkReceived(acq, tok, pkg, sum)
		})
		t.Run("NotAPackage", func(t *testing.T) {
			// The hash matched, so the bytes are what the collector sent: they are kept as
			// evidence, and the unreadable manifest is said in the chain of custody.
			acq, tok := e.manual("web07")
			junk := bytes.Repeat([]byte("not a zip "), 500)
			s := sha256.Sum256(junk)
			sum := hex.EncodeToString(s[:])
			e.upload(tok, acq, junk, sum, 1<<20)
			if st := e.status(tok); st.State != quarry.AcquisitionReceived || st.SHA256 != sum {
				t.Fatalf("status = %+v", st)
			}
			chain, err := e.cfg.Evidence.FindCustody(context.Background(), acq)
			if err != nil || len(chain) != 3 || chain[1].Action != quarry.CustodyVerified || chain[1].Details["manifest_error"] == nil {
				t.Fatalf("custody = %+v, %v; want the manifest error on the verified entry", chain, err)
			}
		})
		t.Run("RecoverAfterCrash", func(t *testing.T) {
			// All bytes arrived but the verdict could not be stored; a restarted server gives
			// it at start-up, before the collector asks.
			acq, tok := e.manual("web06")
			pkg, sum := makePackage(t, "web06", 10_000, 6)
			key := fmt.Sprintf("evidence/%d/package.zip", nextEvidenceID(t, e))
			if err := e.bucket.WriteAll(context.Background(), key, []byte("other"), nil); err != nil {
				t.Fatal(err)
			}
			loc := e.create(tok, len(pkg), metadata(sum, acq))
			if resp, _ := e.do("PATCH", loc, tok, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, pkg); resp.StatusCode != http.StatusInternalServerError {
				t.Fatalf("final PATCH = %s, want 500", resp.Status)
			}
			e.bucket.Delete(context.Background(), key)
			e.restart()
			if a := e.acquisition(acq); a.State != quarry.AcquisitionReceived {
				t.Fatalf("state after restart = %s, want received", a.State)
			}
			e.checkReceived(acq, tok, pkg, sum)
		})
	})
}

// nextEvidenceID predicts the id of the next evidence row: one more than the newest, as both
// dialects hand out increasing ids and no insert failed in this environment.
func nextEvidenceID(t *testing.T, e *env) int64 {
	t.Helper()
	list, _, err := e.cfg.Evidence.FindEvidence(context.Background(), quarry.EvidenceFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		return 1
	}
	return list[0].ID + 1
}
