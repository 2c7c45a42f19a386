package collector

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry/fsaccess"
)

// Limits of the package reader: a package is hostile input until its manifest checks out.
const (
	MaxManifestSize = 64 << 20
	MaxEntries      = 1 << 20
	maxDeflateRatio = 1100 // deflate cannot do better than about 1032:1
)

// ErrBadPackage is returned (wrapped) when a package cannot be used at all.
var ErrBadPackage = errors.New("collector: bad package")

// Problem is something wrong inside a package that does not prevent using the rest of it.
type Problem struct {
	Path   string `json:"path"`
	Reason string `json:"reason"` // "bad_name", "duplicate", "unlisted", "missing", "path_mismatch", "size_mismatch", "ratio", "hash_mismatch", "read_error", "manifest_not_last"
	Detail string `json:"detail,omitempty"`
}

// Package is an opened quarry-package/1. It is an fsaccess.Accessor over the collected files, so the
// parsers read a package exactly as they read a live host. Files that fail the checks are reported in
// Problems and invisible through the accessor.
type Package struct {
	Manifest *Manifest
	Problems []Problem

	goos    string
	entries map[string]*zip.File       // archive name → entry, valid names only
	files   map[string]*FileEntry      // key(OS path) → manifest entry that checked out
	dirs    map[string]map[string]bool // key(dir) → child display paths
	r       io.ReaderAt
}

var _ fsaccess.Accessor = (*Package)(nil)

// OpenPackage reads and validates a package's structure and manifest. Content hashes are checked by
// Verify, which reads everything.
func OpenPackage(r io.ReaderAt, size int64) (*Package, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		return nil, fmt.Errorf("%w: zip: %w", ErrBadPackage, err)
	}
	if len(zr.File) > MaxEntries {
		return nil, fmt.Errorf("%w: %d entries, limit %d", ErrBadPackage, len(zr.File), MaxEntries)
	}
	p := &Package{entries: map[string]*zip.File{}, files: map[string]*FileEntry{}, dirs: map[string]map[string]bool{}, r: r}
	var manifest *zip.File
	for i, zf := range zr.File {
		if reason := badEntryName(zf.Name); reason != "" {
			p.problem(fmt.Sprintf("%q", zf.Name), "bad_name", reason)
			continue
		}
		if p.entries[zf.Name] != nil {
			p.problem(zf.Name, "duplicate", "entry name appears more than once; all copies ignored")
			p.entries[zf.Name] = nil
			continue
		}
		if _, dup := p.entries[zf.Name]; dup {
			continue
		}
		if zf.Name == "manifest.json" {
			manifest = zf
			if i != len(zr.File)-1 {
				p.problem(zf.Name, "manifest_not_last", "")
			}
		}
		p.entries[zf.Name] = zf
	}
	if manifest == nil || p.entries["manifest.json"] == nil {
		return nil, fmt.Errorf("%w: no single manifest.json", ErrBadPackage)
	}
	m, err := readManifest(manifest)
	if err != nil {
		return nil, err
	}
	p.Manifest, p.goos = m, m.Host.OS
	p.index()
	return p, nil
}

func (p *Package) problem(path, reason, detail string) {
	p.Problems = append(p.Problems, Problem{Path: path, Reason: reason, Detail: detail})
}

// badEntryName refuses names that could escape an extraction folder or mean different things to
// different tools.
func badEntryName(name string) string {
	switch {
	case name == "" || len(name) > maxPathBytes:
		return "empty or too long"
	case !utf8.ValidString(name):
		return "invalid UTF-8"
	case strings.ContainsAny(name, "\\\x00"):
		return "backslash or NUL"
	case strings.HasPrefix(name, "/") || (len(name) > 1 && name[1] == ':'):
		return "absolute"
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." || c == ".." {
			return "empty, . or .. component"
		}
	}
	return ""
}

func readManifest(zf *zip.File) (*Manifest, error) {
	if zf.UncompressedSize64 > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest declares %d bytes, limit %d", ErrBadPackage, zf.UncompressedSize64, MaxManifestSize)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrBadPackage, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrBadPackage, err)
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest larger than %d bytes", ErrBadPackage, MaxManifestSize)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrBadPackage, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrBadPackage, m.Format, Format)
	}
	switch m.Host.OS {
	case "windows", "linux", "darwin":
	default:
		return nil, fmt.Errorf("%w: host os %q", ErrBadPackage, m.Host.OS)
	}
	return &m, nil
}

// index checks every manifest file against the zip and builds the lookup tables.
func (p *Package) index() {
	listed := map[string]bool{}
	for i := range p.Manifest.Files {
		fe := &p.Manifest.Files[i]
		rel, ok := fsaccess.ArchivePath(p.goos, fe.Path)
		switch {
		case !ok || fe.ArchivePath != "files/"+rel || badName(fe.Path) != "" || fe.Path != fsaccess.Clean(p.goos, fe.Path):
			p.problem(fe.ArchivePath, "path_mismatch", fmt.Sprintf("manifest path %q does not map to this entry", fe.Path))
			continue
		case listed[fe.ArchivePath]:
			p.problem(fe.ArchivePath, "duplicate", "listed twice in the manifest")
			continue
		}
		listed[fe.ArchivePath] = true
		zf := p.entries[fe.ArchivePath]
		if zf == nil {
			p.problem(fe.ArchivePath, "missing", "in the manifest, not in the zip")
			continue
		}
		if int64(zf.UncompressedSize64) != fe.Size || fe.Size < 0 {
			p.problem(fe.ArchivePath, "size_mismatch", fmt.Sprintf("manifest %d, zip %d", fe.Size, zf.UncompressedSize64))
			continue
		}
		if !plausibleRatio(zf) {
			p.problem(fe.ArchivePath, "ratio", fmt.Sprintf("%d bytes from %d compressed", zf.UncompressedSize64, zf.CompressedSize64))
			continue
		}
		k := p.key(fe.Path)
		if p.files[k] != nil {
			p.problem(fe.ArchivePath, "duplicate", "same file under two spellings")
			continue
		}
		p.files[k] = fe
		for child := fsaccess.Clean(p.goos, fe.Path); ; {
			dir, _ := fsaccess.Split(p.goos, child)
			if dir == child || dir == "" {
				break
			}
			dk := p.key(dir)
			if p.dirs[dk] == nil {
				p.dirs[dk] = map[string]bool{}
			}
			p.dirs[dk][child] = true
			child = dir
		}
	}
	names := make([]string, 0, len(p.entries))
	for n := range p.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasPrefix(n, "files/") && !listed[n] {
			p.problem(n, "unlisted", "in the zip, not in the manifest")
		}
	}
}

// plausibleRatio rejects entries that declare more output than their method can produce.
func plausibleRatio(zf *zip.File) bool {
	switch zf.Method {
	case zip.Store:
		return zf.UncompressedSize64 == zf.CompressedSize64
	case zip.Deflate:
		return zf.UncompressedSize64 <= zf.CompressedSize64*maxDeflateRatio+1024
	}
	return false
}

func (p *Package) key(s string) string {
	s = fsaccess.Clean(p.goos, s)
	if p.goos == "windows" {
		return strings.ToLower(s)
	}
	return s
}

// OS returns the collected host's OS.
func (p *Package) OS() string { return p.goos }

// Roots returns the roots of the collected files.
func (p *Package) Roots() []string {
	var out []string
	for k := range p.dirs {
		if d, _ := fsaccess.Split(p.goos, k); d == k {
			out = append(out, fsaccess.Clean(p.goos, k))
		}
	}
	sort.Strings(out)
	return out
}

// Lstat describes a collected file or a folder implied by the collected paths.
func (p *Package) Lstat(name string) (fsaccess.FileInfo, error) {
	k := p.key(name)
	if fe := p.files[k]; fe != nil {
		return p.info(fe), nil
	}
	if p.dirs[k] != nil {
		_, base := fsaccess.Split(p.goos, name)
		return fsaccess.FileInfo{Path: fsaccess.Clean(p.goos, name), Name: base, Mode: fs.ModeDir | 0o755, ReadVia: "package"}, nil
	}
	return fsaccess.FileInfo{}, fmt.Errorf("package: lstat %q: %w", name, fsaccess.ErrNotExist)
}

// ReadDir lists a folder implied by the collected paths.
func (p *Package) ReadDir(name string) ([]fsaccess.FileInfo, error) {
	children := p.dirs[p.key(name)]
	if children == nil {
		return nil, fmt.Errorf("package: readdir %q: %w", name, fsaccess.ErrNotExist)
	}
	out := make([]fsaccess.FileInfo, 0, len(children))
	for c := range children {
		fi, err := p.Lstat(c)
		if err == nil {
			out = append(out, fi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (p *Package) info(fe *FileEntry) fsaccess.FileInfo {
	_, name := fsaccess.Split(p.goos, fe.Path)
	return fsaccess.FileInfo{
		Path: fe.Path, Name: name, Size: fe.Size, Mode: parseMode(fe.Mode),
		ModTime: parseTime(fe.MTime), AccessTime: parseTime(fe.ATime), ChangeTime: parseTime(fe.CTime),
		BirthTime: parseTime(fe.BTime), ReadVia: "package",
	}
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// parseMode keeps the permission bits of an ls-style mode string; the file is regular either way.
func parseMode(s string) fs.FileMode {
	var m fs.FileMode
	if len(s) >= 9 {
		perm := s[len(s)-9:]
		for i := 0; i < 9; i++ {
			if perm[i] != '-' {
				m |= 1 << (8 - i)
			}
		}
	}
	return m
}

// Open opens a collected file.
func (p *Package) Open(name string) (fsaccess.File, error) {
	fe := p.files[p.key(name)]
	if fe == nil {
		if p.dirs[p.key(name)] != nil {
			return nil, fmt.Errorf("package: open %q: folder: %w", name, fsaccess.ErrSpecialFile)
		}
		return nil, fmt.Errorf("package: open %q: %w", name, fsaccess.ErrNotExist)
	}
	return fsaccess.OpenZipEntry(p.entries[fe.ArchivePath], p.r, p.info(fe))
}

// OpenEntry opens any valid entry by archive name (live/…, listings/…, collection.log).
func (p *Package) OpenEntry(name string) (io.ReadCloser, error) {
	zf := p.entries[name]
	if zf == nil {
		return nil, fmt.Errorf("package: entry %q: %w", name, fsaccess.ErrNotExist)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("package: entry %q: %w", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, int64(zf.UncompressedSize64)), rc}, nil
}

// Verify reads every file the manifest lists and compares its SHA-256, returning the mismatches (also
// appended to Problems). Files that fail are removed from the accessor.
func (p *Package) Verify(ctx context.Context) []Problem {
	var bad []Problem
	keys := make([]string, 0, len(p.files))
	for k := range p.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if ctx.Err() != nil {
			bad = append(bad, Problem{Reason: "read_error", Detail: ctx.Err().Error()})
			break
		}
		fe := p.files[k]
		rc, err := p.OpenEntry(fe.ArchivePath)
		if err != nil {
			bad = append(bad, Problem{Path: fe.ArchivePath, Reason: "read_error", Detail: err.Error()})
			delete(p.files, k)
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		switch sum := hex.EncodeToString(h.Sum(nil)); {
		case err != nil:
			bad = append(bad, Problem{Path: fe.ArchivePath, Reason: "read_error", Detail: err.Error()})
			delete(p.files, k)
		case sum != fe.SHA256:
			bad = append(bad, Problem{Path: fe.ArchivePath, Reason: "hash_mismatch", Detail: "manifest " + fe.SHA256 + ", content " + sum})
			delete(p.files, k)
		}
	}
	p.Problems = append(p.Problems, bad...)
	return bad
}
