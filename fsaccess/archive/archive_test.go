package archive_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/fsaccess"
	"github.com/quarry-dfir/quarry/fsaccess/archive"
)

type zentry struct {
	name   string
	data   string
	method uint16
	mode   os.FileMode     // 0: regular 0644
	raw    *zip.FileHeader // written with CreateRaw: sizes as declared, data as given
}

func buildZip(tb testing.TB, entries []zentry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		if e.raw != nil {
			w, err := zw.CreateRaw(e.raw)
			if err != nil {
				tb.Fatal(err)
			}
			w.Write([]byte(e.data))
			continue
		}
		h := &zip.FileHeader{Name: e.name, Method: e.method, Modified: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)}
		h.SetMode(0o644)
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			tb.Fatal(err)
		}
		w.Write([]byte(e.data))
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

type tentry struct {
	name     string
	data     string
	typeflag byte
	link     string
}

func buildTarGz(tb testing.TB, entries []tentry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: e.typeflag, Linkname: e.link,
			ModTime: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	gz.Close()
	return buf.Bytes()
}

func open(tb testing.TB, b []byte, lim archive.Limits) *archive.Archive {
	tb.Helper()
	if lim.TempDir == "" {
		lim.TempDir = tb.TempDir()
	}
	a, err := archive.Open(bytes.NewReader(b), int64(len(b)), lim)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

func read(tb testing.TB, acc fsaccess.Accessor, p string) string {
	tb.Helper()
	f, err := acc.Open(p)
	if err != nil {
		tb.Fatalf("Open(%q): %v", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		tb.Fatalf("read %q: %v", p, err)
	}
	return string(b)
}

func problems(a *archive.Archive) []string {
	var out []string
	for _, p := range a.Problems {
		out = append(out, p.Path+" "+p.Reason)
	}
	return out
}

func TestLayouts(t *testing.T) {
	tests := []struct {
		name       string
		archive    []byte
		wantFormat string
		want       archive.Layout
		hostPath   string // readable by host path
		content    string
	}{
		{"KAPE", buildZip(t, []zentry{
			{name: "C/Windows/System32/winevt/Logs/Security.evtx", data: "evtx", method: zip.Deflate},
			{name: "C/Users/alice/NTUSER.DAT", data: "regf"},
		}), archive.FormatZip, archive.Layout{Name: archive.LayoutKAPE, OS: "windows"}, `C:\Windows\System32\winevt\Logs\Security.evtx`, "evtx"},
		{"KAPEUnderFolder", buildZip(t, []zentry{
			{name: "2024-03-01T101010_triage/D/Users/bob/x.txt", data: "x"},
		}), archive.FormatZip, archive.Layout{Name: archive.LayoutKAPE, OS: "windows", Prefix: "2024-03-01T101010_triage"}, `D:\Users\bob\x.txt`, "x"},
		{"Velociraptor", buildZip(t, []zentry{
			{name: "uploads/auto/C%3A/Windows/System32/Tasks/Evil%20Task", data: "<Task/>", method: zip.Deflate},
			{name: "results/Windows.KapeFiles.Targets%2FAll File Metadata.json", data: "{}"},
		}), archive.FormatZip, archive.Layout{Name: archive.LayoutVelociraptor, OS: "windows", Prefix: "uploads/auto"}, `C:\Windows\System32\Tasks\Evil Task`, "<Task/>"},
		{"UAC", buildTarGz(t, []tentry{
			{name: "uac-web-linux-20240301/[root]/var/log/auth.log", data: "auth"},
			{name: "uac-web-linux-20240301/live_response/process/ps.txt", data: "ps"},
		}), archive.FormatTarGz, archive.Layout{Name: archive.LayoutUAC, OS: "linux", Prefix: "uac-web-linux-20240301/[root]"}, "/var/log/auth.log", "auth"},
		{"GenericUnix", buildTarGz(t, []tentry{
			{name: "./host1/etc/passwd", data: "root:x:0:0::/root:/bin/sh\n"},
			{name: "./host1/var/log/syslog", data: "log"},
		}), archive.FormatTarGz, archive.Layout{Name: archive.LayoutGeneric, OS: "linux", Prefix: "host1"}, "/var/log/syslog", "log"},
		{"GenericMac", buildZip(t, []zentry{
			{name: "private/var/log/system.log", data: "m"},
			{name: "etc/hosts", data: "h"},
		}), archive.FormatZip, archive.Layout{Name: archive.LayoutGeneric, OS: "darwin"}, "/private/var/log/system.log", "m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := open(t, tc.archive, archive.Limits{})
			if a.Format != tc.wantFormat || a.Layout != tc.want {
				t.Fatalf("Open = %s %+v, want %s %+v", a.Format, a.Layout, tc.wantFormat, tc.want)
			}
			if got := read(t, a, tc.hostPath); got != tc.content {
				t.Errorf("content of %s = %q, want %q", tc.hostPath, got, tc.content)
			}
			fi, err := a.Lstat(tc.hostPath)
			if err != nil || !fi.IsRegular() || fi.ModTime.IsZero() {
				t.Errorf("Lstat(%s) = %+v, %v; want a regular file with its time", tc.hostPath, fi, err)
			}
			if len(a.Problems) > 0 {
				t.Errorf("problems on a clean archive: %v", problems(a))
			}
		})
	}
}

func TestReadDirAndRoots(t *testing.T) {
	a := open(t, buildZip(t, []zentry{
		{name: "C/Windows/a.txt", data: "a"},
		{name: "C/Windows/b.txt", data: "b"},
		{name: "C/Users/x/c.txt", data: "c"},
	}), archive.Limits{})
	if got := a.Roots(); !slices.Equal(got, []string{`C:\`}) {
		t.Errorf("Roots() = %v", got)
	}
	list, err := a.ReadDir(`c:\windows`)
	if err != nil || len(list) != 2 || list[0].Name != "a.txt" || list[1].Name != "b.txt" {
		t.Errorf(`ReadDir(c:\windows) = %+v, %v`, list, err)
	}
	if _, err := a.Open(`C:\Windows`); !errors.Is(err, fsaccess.ErrSpecialFile) {
		t.Errorf("Open(folder) = %v, want ErrSpecialFile", err)
	}
	if _, err := a.Open(`C:\nope`); !errors.Is(err, fsaccess.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
}

// deflated returns a raw deflate stream of n spaces.
func deflated(n int) []byte {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	fw.Write(bytes.Repeat([]byte(" "), n))
	fw.Close()
	return buf.Bytes()
}

func TestHostileZip(t *testing.T) {
	oneMB := deflated(1 << 20)
	bomb := &zip.FileHeader{Name: "C/Windows/bomb.txt", Method: zip.Deflate, CompressedSize64: uint64(len(oneMB)),
		UncompressedSize64: 1 << 40, CRC32: 0}
	honest := &zip.FileHeader{Name: "C/Windows/spaces.txt", Method: zip.Deflate, CompressedSize64: uint64(len(oneMB)),
		UncompressedSize64: 1 << 20}
	// The real CRC does not matter: reads stop at the declared size.
	b := buildZip(t, []zentry{
		{name: "C/Windows/ok.txt", data: "fine"},
		{name: "../../etc/passwd", data: "escape"},
		{name: "/etc/shadow", data: "abs"},
		{name: `C:\Windows\evil.txt`, data: "drive"},
		{name: `C/Windows/..\..\..\x`, data: "dotdot"},
		{name: "C/Windows/link", data: "/etc/passwd", mode: os.ModeSymlink | 0o777},
		{name: "C/Windows/dup.txt", data: "one"},
		{name: "C/Windows/dup.txt", data: "two"},
		{name: `C/Windows\back.txt`, data: "backslash"},
		{raw: bomb, data: string(oneMB)},
		{raw: honest, data: string(oneMB)},
	})
	a := open(t, b, archive.Limits{MaxFileSize: 2 << 20})
	want := []string{
		`"../../etc/passwd" bad_name`,
		`"/etc/shadow" bad_name`,
		`"C:\\Windows\\evil.txt" bad_name`,
		`"C/Windows/..\\..\\..\\x" bad_name`,
		"C/Windows/link link",
		"C/Windows/dup.txt duplicate",
		"C/Windows/bomb.txt too_large",
	}
	got := problems(a)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("problem %q missing; got %v", w, got)
		}
	}
	if got := read(t, a, `C:\Windows\ok.txt`); got != "fine" {
		t.Errorf("ok.txt = %q", got)
	}
	if got := read(t, a, `C:\Windows\back.txt`); got != "backslash" {
		t.Errorf("back.txt = %q", got)
	}
	if got := read(t, a, `C:\Windows\spaces.txt`); len(got) != 1<<20 {
		t.Errorf("spaces.txt: %d bytes", len(got))
	}
	for _, p := range []string{`C:\Windows\dup.txt`, `C:\Windows\link`, `C:\Windows\bomb.txt`, `C:\etc\passwd`} {
		if _, err := a.Open(p); err == nil {
			t.Errorf("Open(%s) succeeded; the entry should be invisible", p)
		}
	}

	// The same bomb under a per-file cap it fits: the ratio check catches it.
	a = open(t, buildZip(t, []zentry{{raw: &zip.FileHeader{Name: "C/Windows/bomb.txt", Method: zip.Deflate,
		CompressedSize64: uint64(len(oneMB)), UncompressedSize64: 1 << 31}, data: string(oneMB)}}), archive.Limits{})
	if got := problems(a); !slices.Equal(got, []string{"C/Windows/bomb.txt ratio"}) {
		t.Errorf("bomb: problems %v, want ratio", got)
	}
	// Total cap: the second file pushes the archive past it.
	a = open(t, buildZip(t, []zentry{{name: "C/Windows/a", data: strings.Repeat("a", 600)}, {name: "C/Windows/b", data: strings.Repeat("b", 600)}}),
		archive.Limits{MaxTotalSize: 1000})
	if got := problems(a); !slices.Equal(got, []string{"C/Windows/b total_cap"}) {
		t.Errorf("total cap: problems %v", got)
	}
	// Entry count cap: a zip with more entries than allowed is refused whole.
	_, err := archive.Open(bytes.NewReader(b), int64(len(b)), archive.Limits{MaxEntries: 3})
	if !errors.Is(err, archive.ErrBadArchive) {
		t.Errorf("entry cap: Open = %v, want ErrBadArchive", err)
	}
}

// A zip whose data lies about its size (declares more than the stream holds) reads as an error, not
// as silently short content.
func TestZipShortEntry(t *testing.T) {
	data := deflated(100)
	a := open(t, buildZip(t, []zentry{{raw: &zip.FileHeader{Name: "C/Windows/short.txt", Method: zip.Deflate,
		CompressedSize64: uint64(len(data)), UncompressedSize64: 200}, data: string(data)}}), archive.Limits{})
	f, err := a.Open(`C:\Windows\short.txt`)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadAll(f); err == nil {
		t.Error("reading a short entry succeeded")
	}
}

func TestHostileTar(t *testing.T) {
	b := buildTarGz(t, []tentry{
		{name: "[root]/var/log/auth.log", data: "auth"},
		{name: "[root]/var/log/evil", typeflag: tar.TypeSymlink, link: "/etc/shadow"},
		{name: "[root]/var/log/hard", typeflag: tar.TypeLink, link: "[root]/var/log/auth.log"},
		{name: "[root]/dev/null", typeflag: tar.TypeChar},
		{name: "../../../tmp/x", data: "escape"},
		{name: "/etc/passwd", data: "abs"},
		{name: "[root]/etc/dup", data: "1"},
		{name: "[root]/etc/dup", data: "2"},
		{name: "[root]/etc/big", data: strings.Repeat("x", 100)},
	})
	a := open(t, b, archive.Limits{MaxFileSize: 50})
	got := problems(a)
	for _, w := range []string{"[root]/var/log/evil link", "[root]/var/log/hard link", "[root]/dev/null special",
		`"../../../tmp/x" bad_name`, `"/etc/passwd" bad_name`, "[root]/etc/dup duplicate", "[root]/etc/big too_large"} {
		if !slices.Contains(got, w) {
			t.Errorf("problem %q missing; got %v", w, got)
		}
	}
	if got := read(t, a, "/var/log/auth.log"); got != "auth" {
		t.Errorf("auth.log = %q", got)
	}
	for _, p := range []string{"/var/log/evil", "/var/log/hard", "/etc/dup", "/tmp/x", "/etc/big"} {
		if _, err := a.Open(p); err == nil {
			t.Errorf("Open(%s) succeeded", p)
		}
	}
	// Spooled copies are named by number inside the temp folder, and Close removes them.
	dir := t.TempDir()
	a2, err := archive.Open(bytes.NewReader(b), int64(len(b)), archive.Limits{TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := a2.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("Close left %d entries in the temp folder", len(left))
	}
}

func TestTruncated(t *testing.T) {
	var entries []tentry
	for i := range 20 {
		entries = append(entries, tentry{name: fmt.Sprintf("[root]/var/log/f%02d", i), data: strings.Repeat(fmt.Sprint(i), 5000)})
	}
	full := buildTarGz(t, entries)
	cut := full[:len(full)/2]
	a := open(t, cut, archive.Limits{})
	if n := len(a.Entries()); n == 0 || n >= 20 {
		t.Fatalf("truncated tar.gz: %d entries readable, want some but not all", n)
	}
	last := a.Problems[len(a.Problems)-1]
	if last.Reason != "truncated" {
		t.Errorf("truncated tar.gz: problems %v, want truncated", problems(a))
	}
	if got := read(t, a, "/var/log/f00"); got != strings.Repeat("0", 5000) {
		t.Errorf("f00 read back wrong (%d bytes)", len(got))
	}

	// A zip cut before its central directory cannot be indexed at all.
	z := buildZip(t, []zentry{{name: "C/Windows/a", data: "a"}})
	if _, err := archive.Open(bytes.NewReader(z[:len(z)-30]), int64(len(z)-30), archive.Limits{}); !errors.Is(err, archive.ErrBadArchive) {
		t.Errorf("truncated zip: Open = %v, want ErrBadArchive", err)
	}
	// Not an archive.
	if _, err := archive.Open(strings.NewReader("hello"), 5, archive.Limits{}); !errors.Is(err, archive.ErrBadArchive) {
		t.Errorf("text: Open = %v, want ErrBadArchive", err)
	}
}

func TestTarEntryCap(t *testing.T) {
	var entries []tentry
	for i := range 10 {
		entries = append(entries, tentry{name: fmt.Sprintf("etc/f%d", i), data: "x"})
	}
	a := open(t, buildTarGz(t, entries), archive.Limits{MaxEntries: 4})
	if n := len(a.Entries()); n != 4 {
		t.Errorf("entry cap 4: %d entries kept", n)
	}
	if p := problems(a); !slices.Contains(p, " entry_cap") {
		t.Errorf("entry cap: problems %v", p)
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a/b", "a/b"}, {"./a//b/", "a/b"}, {`a\b`, "a/b"},
		{"../a", ""}, {"a/../b", ""}, {"/a", ""}, {`\a`, ""}, {"C:/a", ""}, {"c:", ""}, {"a\x00b", ""}, {"\xff", ""}, {"", ""}, {".", ""},
	}
	for _, tc := range tests {
		if got, _ := archive.CleanName(tc.in); got != tc.want {
			t.Errorf("CleanName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzOpen: no input may panic, and every visible file must be readable within its declared size
// under a host path that does not climb out of its root.
func FuzzOpen(f *testing.F) {
	f.Add(buildZip(f, []zentry{{name: "C/Windows/a.txt", data: "a", method: zip.Deflate}, {name: "../x", data: "x"}}))
	f.Add(buildTarGz(f, []tentry{{name: "[root]/etc/passwd", data: "p"}, {name: "[root]/l", typeflag: tar.TypeSymlink, link: "/"}}))
	seeds, _ := filepath.Glob("testdata/seed/*")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := archive.Open(bytes.NewReader(b), int64(len(b)), archive.Limits{MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, TempDir: t.TempDir()})
		if err != nil {
			return
		}
		defer a.Close()
		for _, e := range a.Entries() {
			if strings.Contains("/"+e.Name+"/", "/../") {
				t.Fatalf("entry %q climbs", e.Name)
			}
			if e.HostPath != "" && strings.Contains(e.HostPath, "..") && strings.Contains(strings.ReplaceAll(e.HostPath, `\`, "/"), "/../") {
				t.Fatalf("host path %q climbs", e.HostPath)
			}
			fh, err := a.OpenEntry(e.Name)
			if err != nil {
				continue
			}
			n, _ := io.Copy(io.Discard, fh)
			fh.Close()
			if n > e.Size {
				t.Fatalf("%s: read %d bytes, declared %d", e.Name, n, e.Size)
			}
		}
	})
}

var writeSeeds = flag.Bool("seeds", false, "rewrite testdata/seed/* (the fuzz seeds) from the hostile archives built here")

// TestSeeds keeps the fuzz seeds in testdata/seed: real small archives of each layout and each
// kind of hostility, so FuzzOpen starts from them.
func TestSeeds(t *testing.T) {
	oneMB := deflated(1 << 20)
	var entries []tentry
	for i := range 8 {
		entries = append(entries, tentry{name: fmt.Sprintf("[root]/var/log/f%d", i), data: strings.Repeat("x", 2000)})
	}
	full := buildTarGz(t, entries)
	seeds := map[string][]byte{
		"kape.zip":         buildZip(t, []zentry{{name: "C/Windows/System32/winevt/Logs/System.evtx", data: "ElfFile\x00", method: zip.Deflate}}),
		"velociraptor.zip": buildZip(t, []zentry{{name: "uploads/auto/C%3A/Users/a/x%2Ftxt", data: "x"}, {name: "uploads/auto/C%3A/..%2F..%2Fy", data: "y"}}),
		"uac.tar.gz": buildTarGz(t, []tentry{{name: "[root]/etc/passwd", data: "root:x:0:0"}, {name: "[root]/ln", typeflag: tar.TypeLink, link: "../../x"},
			{name: "../escape", data: "e"}, {name: "[root]/etc/passwd", data: "dup"}}),
		"bomb.zip":         buildZip(t, []zentry{{raw: &zip.FileHeader{Name: "C/Windows/b", Method: zip.Deflate, CompressedSize64: uint64(len(oneMB)), UncompressedSize64: 1 << 31}, data: string(oneMB)}}),
		"truncated.tar.gz": full[:len(full)/2],
	}
	for name, b := range seeds {
		p := filepath.Join("testdata", "seed", name)
		if *writeSeeds {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("fuzz seed %s missing (run with -seeds): %v", p, err)
		}
	}
}
