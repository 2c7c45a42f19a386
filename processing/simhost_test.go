package processing_test

import (
	"archive/zip"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/collector"
	"github.com/quarry-dfir/quarry/processing"
	"github.com/quarry-dfir/quarry/simhost"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

var simAnchor = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// simPackage generates a simulated host, collects it with the real collector and returns the
// package, its manifest and the attack story planted in it.
func simPackage(tb testing.TB, h simhost.Host) ([]byte, *collector.Manifest, simhost.Story) {
	tb.Helper()
	root := tb.TempDir()
	story, err := simhost.Generate(root, h)
	if err != nil {
		tb.Fatal(err)
	}
	goos := h.OS
	if goos == "macos" {
		goos = "darwin"
	}
	pkg, m := collectOS(tb, root, goos)
	return pkg, m, story
}

func TestSimhost(t *testing.T) {
	for _, h := range []simhost.Host{
		{Name: "web-03", OS: "linux", OSVersion: "Ubuntu 22.04", Seed: 7, Compromised: true, Anchor: simAnchor},
		{Name: "ws-fin-012", OS: "windows", OSVersion: "Windows 11 23H2", Seed: 3, Compromised: true, Anchor: simAnchor},
	} {
		t.Run(h.OS, func(t *testing.T) {
			pkg, m, story := simPackage(t, h)
			db := sqldbtest.Open(t, sqldb.DialectSQLite)
			e := newEnv(t, db, processing.Config{})
			ev := e.receive(pkg)
			if err := e.proc.Process(context.Background(), ev.ID); err != nil {
				t.Fatal(err)
			}
			got := e.evidence(ev.ID)
			r := got.Processing
			t.Logf("%s: %d files, %d bytes, %d events", h.OS, len(m.Files), m.Stats.Bytes, r.Events)
			if got.State != quarry.EvidenceProcessed || r.ProblemsTotal != 0 {
				t.Fatalf("state %s: %s; problems %+v", got.State, r.Error, r.Problems)
			}
			// The planted story is on the timeline.
			switch h.OS {
			case "linux":
				if n := len(e.find(ev.ID, "auth.log", "Failed password", story.AttackerIP)); n != story.Failures {
					t.Errorf("%d failed passwords from %s on the timeline, the story planted %d", n, story.AttackerIP, story.Failures)
				}
				if u := e.find(ev.ID, "systemd_unit", path.Base(story.PersistencePath)); len(u) != 1 || u[0].Path != "files"+story.PersistencePath {
					t.Errorf("events for the persistence unit %s: %+v", story.PersistencePath, u)
				}
				// The payload sits in /dev/shm, which is listed, not collected.
				if d := e.find(ev.ID, processing.SourceFile, story.PayloadPath+": "); len(d) == 0 || d[0].Fields["listed"] != true {
					t.Errorf("no listing event for the payload %s: %+v", story.PayloadPath, d)
				}
				if n := len(e.find(ev.ID, processing.SourceFile, story.PersistencePath+": M")); n != 1 {
					t.Errorf("%d modification events for %s", n, story.PersistencePath)
				}
			case "windows":
				if n := len(e.find(ev.ID, "scheduled_task", "GoogleUpdateTaskUserS")); n != 1 {
					t.Errorf("%d events for the planted task", n)
				}
				if n := len(e.find(ev.ID, "powershell_history", "Set-MpPreference -DisableRealtimeMonitoring")); n != 1 {
					t.Errorf("%d PowerShell history events disabling Defender", n)
				}
			}
			for _, src := range []string{processing.SourceFile, "livestate"} {
				if r.Parsers[src] == nil || r.Parsers[src].Events == 0 {
					t.Errorf("no %s events", src)
				}
			}
			if n := e.count(ev.ID); n != r.Events {
				t.Errorf("%d events stored, report says %d", n, r.Events)
			}
		})
	}
}

// BenchmarkProcess measures one processing of the simulated Linux host's package on SQLite
// (go test -run XXX -bench Process ./processing/).
func BenchmarkProcess(b *testing.B) {
	pkg, _, _ := simPackage(b, simhost.Host{Name: "web-03", OS: "linux", OSVersion: "Ubuntu 22.04", Seed: 7, Compromised: true, Anchor: simAnchor})
	db := sqldbtest.Open(b, sqldb.DialectSQLite)
	e := newEnv(b, db, processing.Config{})
	var events int64
	for b.Loop() {
		ev := e.receive(pkg)
		if err := e.proc.Process(context.Background(), ev.ID); err != nil {
			b.Fatal(err)
		}
		events = e.evidence(ev.ID).Processing.Events
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// zipTree zips the files under root with each slash path mapped by name (KAPE and Velociraptor
// layouts of the same tree).
func zipTree(tb testing.TB, root string, name func(rel string) string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := zip.FileInfoHeader(fi)
		if err != nil {
			return err
		}
		h.Name, h.Method = name(filepath.ToSlash(rel)), zip.Deflate
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// TestForeignWindowsArchives processes the same simulated Windows host collected three ways — by
// quarry-host, as a KAPE zip and as a Velociraptor zip — and expects the same events from each
// parser.
func TestForeignWindowsArchives(t *testing.T) {
	h := simhost.Host{Name: "ws-fin-012", OS: "windows", OSVersion: "Windows 11 23H2", Seed: 3, Compromised: true, Anchor: simAnchor}
	root := t.TempDir()
	if _, err := simhost.Generate(root, h); err != nil {
		t.Fatal(err)
	}
	pkg, _ := collectOS(t, root, "windows")
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	process := func(b []byte) *quarry.ProcessingReport {
		ev := e.receive(b)
		if err := e.proc.Process(context.Background(), ev.ID); err != nil {
			t.Fatal(err)
		}
		got := e.evidence(ev.ID)
		if got.State != quarry.EvidenceProcessed {
			t.Fatalf("state %s: %s", got.State, got.Processing.Error)
		}
		return got.Processing
	}
	want := process(pkg)
	for _, tc := range []struct {
		format string
		name   func(string) string
	}{
		{"kape", func(rel string) string { return "2026-11-20T120000_ws-fin-012/" + rel }},
		{"velociraptor", func(rel string) string { return "uploads/auto/C%3A/" + strings.TrimPrefix(rel, "C/") }},
	} {
		t.Run(tc.format, func(t *testing.T) {
			r := process(zipTree(t, root, tc.name))
			if r.Format != tc.format || r.ProblemsTotal != 0 {
				t.Fatalf("format %q, problems %+v", r.Format, r.Problems)
			}
			for _, src := range []string{"scheduled_task", "powershell_history", "setupapi"} {
				if w, g := want.Parsers[src], r.Parsers[src]; w == nil || g == nil || w.Events != g.Events || w.Files != g.Files {
					t.Errorf("%s: package %+v, %s zip %+v", src, w, tc.format, g)
				}
			}
		})
	}
}
