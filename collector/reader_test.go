package collector_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry/collector"
	"github.com/quarry-dfir/quarry/fsaccess"
)

type entry struct {
	name   string
	data   []byte
	method uint16
	raw    *zip.FileHeader // written with CreateRaw: sizes and CRC as declared, data as given
}

func buildZip(tb testing.TB, entries []entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		if e.raw != nil {
			w, err := zw.CreateRaw(e.raw)
			if err != nil {
				tb.Fatal(err)
			}
			w.Write(e.data)
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			tb.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func manifestFor(files map[string][]byte) []byte {
	m := collector.Manifest{Format: collector.Format, Host: collector.HostInfo{OS: "linux"}}
	for p, data := range files {
		sum := sha256.Sum256(data)
		m.Files = append(m.Files, collector.FileEntry{Path: p, ArchivePath: "files" + p, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Mode: "-rw-r--r--"})
	}
	b, _ := json.Marshal(m)
	return b
}

func reasons(p *collector.Package) map[string]bool {
	out := map[string]bool{}
	for _, pr := range p.Problems {
		out[pr.Path+" "+pr.Reason] = true
	}
	return out
}

// deflated1MB is a raw deflate stream of 1 MiB of spaces.
var deflated1MB = func() []byte {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	fw.Write(bytes.Repeat([]byte(" "), 1<<20))
	fw.Close()
	return buf.Bytes()
}()

func TestOpenPackageHostile(t *testing.T) {
	good := []byte("hello")
	okManifest := manifestFor(map[string][]byte{"/etc/hosts": good})
	bomb := &zip.FileHeader{Name: "files/etc/bomb", Method: zip.Deflate, CompressedSize64: 10, UncompressedSize64: 1 << 40, CRC32: 0}
	lying := collector.Manifest{Format: collector.Format, Host: collector.HostInfo{OS: "linux"}, Files: []collector.FileEntry{
		{Path: "/etc/hosts", ArchivePath: "files/etc/hosts", Size: 5, SHA256: strings.Repeat("0", 64)},
		{Path: "/etc/shadow", ArchivePath: "files/etc/passwd", Size: 5},
		{Path: "/etc/missing", ArchivePath: "files/etc/missing", Size: 1},
		{Path: "/etc/size", ArchivePath: "files/etc/size", Size: 99},
		{Path: "/etc/bomb", ArchivePath: "files/etc/bomb", Size: 1 << 40},
		{Path: "/../../x", ArchivePath: "files/x", Size: 5},
	}}
	lyingJSON, _ := json.Marshal(lying)
	tests := []struct {
		name     string
		entries  []entry
		err      bool
		problems []string          // "path reason"
		verify   map[string]string // problems Verify must add
	}{
		{name: "OK", entries: []entry{{name: "files/etc/hosts", data: good}, {name: "manifest.json", data: okManifest}}},
		{name: "NoManifest", entries: []entry{{name: "files/etc/hosts", data: good}}, err: true},
		{name: "TwoManifests", entries: []entry{{name: "manifest.json", data: okManifest}, {name: "manifest.json", data: okManifest}}, err: true},
		{name: "NotJSON", entries: []entry{{name: "manifest.json", data: []byte("{")}}, err: true},
		{name: "WrongFormat", entries: []entry{{name: "manifest.json", data: []byte(`{"format":"other/1","host":{"os":"linux"}}`)}}, err: true},
		{name: "BadOS", entries: []entry{{name: "manifest.json", data: []byte(`{"format":"quarry-package/1","host":{"os":"../x"}}`)}}, err: true},
		{name: "HugeManifestDeclared", entries: []entry{{raw: &zip.FileHeader{Name: "manifest.json", Method: zip.Deflate, CompressedSize64: 2, UncompressedSize64: 1 << 33}, data: []byte{3, 0}}}, err: true},
		{name: "ManifestLongerThanDeclared", entries: []entry{{raw: &zip.FileHeader{Name: "manifest.json", Method: zip.Deflate, CompressedSize64: uint64(len(deflated1MB)), UncompressedSize64: 100}, data: deflated1MB}}, err: true},
		{
			name: "EscapingNames",
			entries: []entry{
				{name: "../../etc/passwd", data: good}, {name: "/etc/passwd", data: good}, {name: `files\..\x`, data: good},
				{name: "files/./x", data: good}, {name: "C:/x", data: good}, {name: "files/etc/hosts", data: good},
				{name: "manifest.json", data: okManifest},
			},
			problems: []string{`"../../etc/passwd" bad_name`, `"/etc/passwd" bad_name`, `"files\\..\\x" bad_name`, `"files/./x" bad_name`, `"C:/x" bad_name`},
		},
		{
			name:     "DuplicateEntry",
			entries:  []entry{{name: "files/etc/hosts", data: good}, {name: "files/etc/hosts", data: []byte("evil!")}, {name: "manifest.json", data: okManifest}},
			problems: []string{"files/etc/hosts duplicate", "files/etc/hosts missing"},
		},
		{
			name:     "ManifestNotLast",
			entries:  []entry{{name: "manifest.json", data: okManifest}, {name: "files/etc/hosts", data: good}},
			problems: []string{"manifest.json manifest_not_last"},
		},
		{
			name: "LyingManifest",
			entries: []entry{
				{name: "files/etc/hosts", data: good}, {name: "files/etc/passwd", data: good}, {name: "files/etc/size", data: good},
				{raw: bomb, data: bytes.Repeat([]byte{0}, 10)}, {name: "files/x", data: good}, {name: "files/unlisted", data: good},
				{name: "manifest.json", data: lyingJSON},
			},
			problems: []string{
				"files/etc/passwd path_mismatch", "files/etc/passwd unlisted", "files/etc/missing missing",
				"files/etc/size size_mismatch", "files/etc/bomb ratio", "files/x path_mismatch", "files/x unlisted",
				"files/unlisted unlisted",
			},
			verify: map[string]string{"files/etc/hosts": "hash_mismatch"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := buildZip(t, tt.entries)
			p, err := collector.OpenPackage(bytes.NewReader(b), int64(len(b)))
			if tt.err {
				if err == nil || !errors.Is(err, collector.ErrBadPackage) {
					t.Fatalf("OpenPackage = %v, want ErrBadPackage", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenPackage: %v", err)
			}
			got := reasons(p)
			for _, want := range tt.problems {
				if !got[want] {
					t.Errorf("no problem %q (all: %+v)", want, p.Problems)
				}
			}
			if len(got) != len(tt.problems) {
				t.Errorf("problems = %+v, want %d", p.Problems, len(tt.problems))
			}
			bad := p.Verify(context.Background())
			if len(bad) != len(tt.verify) {
				t.Errorf("Verify = %+v, want %v", bad, tt.verify)
			}
			for _, pr := range bad {
				if tt.verify[pr.Path] != pr.Reason {
					t.Errorf("Verify problem %+v not expected", pr)
				}
				if _, err := p.Open(strings.TrimPrefix(pr.Path, "files")); err == nil {
					t.Errorf("%s still readable after failing Verify", pr.Path)
				}
			}
			// Whatever passed the checks is readable; nothing else is.
			for _, path := range []string{"/etc/passwd", "/etc/shadow", "/etc/bomb", "/etc/size", "/x"} {
				if _, err := p.Open(path); !errors.Is(err, fsaccess.ErrNotExist) {
					t.Errorf("Open(%s) = %v, want ErrNotExist", path, err)
				}
			}
		})
	}
}

func TestPackageAccessor(t *testing.T) {
	root := t.TempDir()
	rnd := rand.New(rand.NewPCG(1, 2))
	var lines [][]byte
	for i := 0; i < 64; i++ {
		lines = append(lines, fmt.Appendf(nil, "line %d %x\n", i, rnd.Uint64()))
	}
	var text []byte // deflated, several copy chunks
	for len(text) < 1<<20 {
		text = append(text, lines[rnd.IntN(len(lines))]...)
	}
	gz := append([]byte{0x1f, 0x8b}, bytes.Repeat([]byte{7}, 5000)...) // stored by magic
	writeFiles(t, root, map[string]string{"var/log/big.log": string(text), "var/log/old.log.gz": string(gz), "etc/hosts": "h"})
	res, pkg := collect(t, collector.Options{Root: root, OS: "linux"})
	comp := map[string]string{}
	for _, f := range res.Manifest.Files {
		comp[f.Path] = f.Compression
	}
	if comp["/var/log/big.log"] != "deflate" || comp["/var/log/old.log.gz"] != "store" {
		t.Errorf("compression = %v", comp)
	}
	if pkg.OS() != "linux" || strings.Join(pkg.Roots(), ",") != "/" {
		t.Errorf("OS %q Roots %q", pkg.OS(), pkg.Roots())
	}
	ents, err := pkg.ReadDir("/var/log")
	if err != nil || len(ents) != 2 || ents[0].Name != "big.log" || ents[1].Name != "old.log.gz" {
		t.Fatalf("ReadDir = %+v, %v", ents, err)
	}
	if fi, err := pkg.Lstat("/var"); err != nil || !fi.IsDir() {
		t.Errorf("Lstat(/var) = %+v, %v", fi, err)
	}
	if _, err := pkg.Open("/var"); !errors.Is(err, fsaccess.ErrSpecialFile) {
		t.Errorf("Open(folder) = %v, want ErrSpecialFile", err)
	}
	for path, want := range map[string][]byte{"/var/log/big.log": text, "/var/log/old.log.gz": gz} {
		f, err := pkg.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		disk, _ := os.Stat(filepath.Join(root, filepath.FromSlash(path)))
		if fi.Size != int64(len(want)) || !fi.ModTime.Equal(disk.ModTime()) || fi.ReadVia != "package" || fi.Mode.Perm() != 0o644 {
			t.Errorf("Stat(%s) = %+v", path, fi)
		}
		// Random access forwards and backwards, as a registry or EVTX parser does.
		for i := 0; i < 12; i++ {
			off := rnd.Int64N(int64(len(want)))
			buf := make([]byte, 1+rnd.IntN(4096))
			n, err := f.ReadAt(buf, off)
			end := min(off+int64(len(buf)), int64(len(want)))
			if (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], want[off:end]) {
				t.Fatalf("ReadAt(%s, %d) = %d, %v: content differs", path, off, n, err)
			}
		}
		if _, err := f.Seek(-10, io.SeekEnd); err != nil {
			t.Fatal(err)
		}
		tail, _ := io.ReadAll(f)
		if !bytes.Equal(tail, want[len(want)-10:]) {
			t.Errorf("Seek(-10, end) then read = %q", tail)
		}
		f.Close()
	}
}

// FuzzOpenPackage feeds arbitrary bytes to the reader: it must never panic, and whatever it accepts must
// be readable through the accessor with bounded work.
func FuzzOpenPackage(f *testing.F) {
	f.Add(buildZip(f, []entry{{name: "files/etc/hosts", data: []byte("hello")}, {name: "manifest.json", data: manifestFor(map[string][]byte{"/etc/hosts": []byte("hello")})}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := collector.OpenPackage(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var walk func(string, int)
		walk = func(dir string, depth int) {
			ents, err := p.ReadDir(dir)
			if err != nil || depth > 50 {
				return
			}
			for _, e := range ents {
				if e.IsDir() {
					walk(e.Path, depth+1)
					continue
				}
				fh, err := p.Open(e.Path)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, io.LimitReader(fh, 1<<20))
				fh.Close()
			}
		}
		for _, r := range p.Roots() {
			walk(r, 0)
		}
		p.Verify(context.Background())
	})
}
