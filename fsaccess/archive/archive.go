// Package archive is an fsaccess.Accessor over a folder-structured collection archive that Quarry did
// not write itself: a zip (KAPE, Velociraptor offline collector), a tar.gz (UAC) or a plain tar. The
// archive is hostile input: names that could escape a folder are refused, links and special files are
// ignored, expansion is bounded (entry count, per-file size, total size, compression ratio), and an
// archive cut off or corrupt part-way keeps what came before the damage, with Problems saying what was
// lost.
package archive

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry/fsaccess"
)

// Formats of the archive container.
const (
	FormatZip   = "zip"
	FormatTarGz = "tar.gz"
	FormatTar   = "tar"
)

// Default limits; the zero Limits takes them.
const (
	DefaultMaxEntries   = 1 << 20
	DefaultMaxFileSize  = 4 << 30
	DefaultMaxTotalSize = 64 << 30
	// DefaultMaxRatio bounds a zip entry's declared size against its compressed size: deflate cannot
	// do better than about 1032:1, so anything claiming more is a bomb or a lie.
	DefaultMaxRatio = 1100
	maxNameBytes    = 4096
)

// ErrBadArchive is wrapped by Open when the archive cannot be used at all.
var ErrBadArchive = errors.New("archive: unusable archive")

// Limits bound what an archive may expand to.
type Limits struct {
	MaxEntries   int   // entries read; a zip with more is refused, a tar is cut there
	MaxFileSize  int64 // larger files are skipped (reported)
	MaxTotalSize int64 // files past this running total are skipped (reported)
	MaxRatio     int64 // zip only: declared size over compressed size
	// TempDir holds the expanded regular files of a tar stream, which has no random access; ""
	// is os.TempDir(). Close removes them. Zips are read in place.
	TempDir string
}

func (l Limits) withDefaults() Limits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultMaxFileSize
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = DefaultMaxTotalSize
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	return l
}

// Problem is an entry that was refused or could not be read, and why.
type Problem struct {
	Path   string `json:"path"`   // the entry name as stored (quoted when it is not a clean name)
	Reason string `json:"reason"` // bad_name, duplicate, link, special, too_large, total_cap, ratio, entry_cap, truncated, read_error
	Detail string `json:"detail,omitempty"`
}

// Entry is one regular file of the archive.
type Entry struct {
	Name     string // cleaned slash path inside the archive
	HostPath string // the file's path on the collected host in the layout's OS syntax; "" when outside the host root
	Size     int64
	ModTime  time.Time
	// AccessTime, ChangeTime: from tar headers (PAX/GNU) when present.
	AccessTime, ChangeTime time.Time

	zf    *zip.File
	spool string // tar: the expanded copy
}

// Archive is an opened archive. As an fsaccess.Accessor it shows the files under the layout's host
// root by their host paths; Entries lists every regular file, also those outside it (UAC's
// live_response, Velociraptor's results).
type Archive struct {
	Format   string
	Layout   Layout
	Problems []Problem

	entries []*Entry
	byName  map[string]*Entry
	files   map[string]*Entry          // key(host path) → entry
	dirs    map[string]map[string]bool // key(dir) → child host paths
	roots   map[string]bool
	r       io.ReaderAt
	spool   string // tar: temp folder
}

var _ fsaccess.Accessor = (*Archive)(nil)

// Sniff names the container format of an archive from its first bytes (at least 512 help the tar
// check): FormatZip, FormatTarGz (any gzip stream), FormatTar, or "".
func Sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return FormatZip
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return FormatTarGz
	case len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar")):
		return FormatTar
	}
	return ""
}

// Open reads the archive's index (for a tar, the whole stream, expanding its files to Limits.TempDir)
// and guesses its layout. It fails only when nothing of the archive can be read.
func Open(r io.ReaderAt, size int64, lim Limits) (*Archive, error) {
	lim = lim.withDefaults()
	head := make([]byte, 512)
	n, _ := r.ReadAt(head, 0)
	a := &Archive{byName: map[string]*Entry{}, files: map[string]*Entry{}, dirs: map[string]map[string]bool{}, roots: map[string]bool{}, r: r}
	var err error
	switch a.Format = Sniff(head[:n]); a.Format {
	case FormatZip:
		err = a.openZip(r, size, lim)
	case FormatTarGz:
		zr, gerr := gzip.NewReader(io.NewSectionReader(r, 0, size))
		if gerr != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrBadArchive, gerr)
		}
		zr.Multistream(false)
		err = a.openTar(zr, lim)
	case FormatTar:
		err = a.openTar(io.NewSectionReader(r, 0, size), lim)
	default:
		return nil, fmt.Errorf("%w: neither zip nor tar nor gzip", ErrBadArchive)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Layout = detectLayout(a.entries)
	a.index()
	return a, nil
}

// Close removes the expanded copies of a tar's files.
func (a *Archive) Close() error {
	if a.spool == "" {
		return nil
	}
	err := os.RemoveAll(a.spool)
	a.spool = ""
	return err
}

func (a *Archive) problem(path, reason, detail string) {
	a.Problems = append(a.Problems, Problem{Path: path, Reason: reason, Detail: detail})
}

// CleanName turns an archive entry name into a clean relative slash path, or says why it cannot be
// one. Backslashes count as separators (archives written on Windows); absolute names, drive letters,
// ".." anywhere, NUL and invalid UTF-8 are refused rather than repaired, since a tool that repairs them
// differently would read a different file.
func CleanName(name string) (string, string) {
	if name == "" || len(name) > maxNameBytes {
		return "", "empty or too long"
	}
	if !utf8.ValidString(name) || strings.ContainsRune(name, 0) {
		return "", "invalid UTF-8 or NUL"
	}
	n := strings.ReplaceAll(name, `\`, "/")
	if strings.HasPrefix(n, "/") || (len(n) > 1 && n[1] == ':') {
		return "", "absolute"
	}
	var parts []string
	for _, c := range strings.Split(n, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return "", "parent (..) component"
		}
		if strings.Contains(c, ":") && len(parts) == 0 && len(c) == 2 {
			return "", "drive letter"
		}
		parts = append(parts, c)
	}
	if len(parts) == 0 {
		return "", "empty"
	}
	return strings.Join(parts, "/"), ""
}

func (a *Archive) add(e *Entry) bool {
	if old, dup := a.byName[e.Name]; dup {
		if old != nil {
			a.problem(e.Name, "duplicate", "entry name appears more than once; all copies ignored")
			a.byName[e.Name] = nil
		}
		return false
	}
	a.byName[e.Name] = e
	return true
}

func (a *Archive) openZip(r io.ReaderAt, size int64, lim Limits) error {
	zr, err := zip.NewReader(r, size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		return fmt.Errorf("%w: zip: %w", ErrBadArchive, err)
	}
	if len(zr.File) > lim.MaxEntries {
		return fmt.Errorf("%w: %d entries, limit %d", ErrBadArchive, len(zr.File), lim.MaxEntries)
	}
	var total int64
	for _, zf := range zr.File {
		mode := zf.Mode()
		if mode.IsDir() || strings.HasSuffix(zf.Name, "/") {
			continue
		}
		name, bad := CleanName(zf.Name)
		if bad != "" {
			a.problem(fmt.Sprintf("%q", zf.Name), "bad_name", bad)
			continue
		}
		switch {
		case mode&fs.ModeSymlink != 0:
			a.problem(name, "link", "symbolic link ignored")
			continue
		case !mode.IsRegular():
			a.problem(name, "special", "not a regular file: "+mode.Type().String())
			continue
		}
		if zf.UncompressedSize64 > uint64(lim.MaxFileSize) {
			a.problem(name, "too_large", fmt.Sprintf("%d bytes, limit %d", zf.UncompressedSize64, lim.MaxFileSize))
			continue
		}
		us := int64(zf.UncompressedSize64)
		switch zf.Method {
		case zip.Store:
			if zf.UncompressedSize64 != zf.CompressedSize64 {
				a.problem(name, "ratio", "stored entry whose sizes differ")
				continue
			}
		case zip.Deflate:
			if us > int64(zf.CompressedSize64)*lim.MaxRatio+1024 {
				a.problem(name, "ratio", fmt.Sprintf("%d bytes from %d compressed", us, zf.CompressedSize64))
				continue
			}
		default:
			a.problem(name, "read_error", fmt.Sprintf("compression method %d not supported", zf.Method))
			continue
		}
		if total+us > lim.MaxTotalSize {
			a.problem(name, "total_cap", fmt.Sprintf("the archive expands past %d bytes", lim.MaxTotalSize))
			continue
		}
		e := &Entry{Name: name, Size: us, ModTime: zf.Modified.UTC(), zf: zf}
		if zf.Modified.IsZero() {
			e.ModTime = time.Time{}
		}
		if a.add(e) {
			total += us
		}
	}
	a.collect()
	return nil
}

// collect keeps the entries that stayed unique, in archive order.
func (a *Archive) collect() {
	var order []*Entry
	for _, e := range a.byName {
		if e != nil {
			order = append(order, e)
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i].Name < order[j].Name })
	a.entries = order
}

func (a *Archive) openTar(r io.Reader, lim Limits) error {
	dir, err := os.MkdirTemp(lim.TempDir, "quarry-archive-*")
	if err != nil {
		return fmt.Errorf("archive: spool folder: %w", err)
	}
	a.spool = dir
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<16))
	var total int64
	count := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if count == 0 {
				return fmt.Errorf("%w: tar: %w", ErrBadArchive, err)
			}
			a.problem("", "truncated", fmt.Sprintf("the archive ends or is corrupt after %d entries: %v", count, err))
			break
		}
		count++
		if count > lim.MaxEntries {
			a.problem("", "entry_cap", fmt.Sprintf("more than %d entries; the rest was not read", lim.MaxEntries))
			break
		}
		name, bad := CleanName(h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg, tar.TypeRegA:
		case tar.TypeSymlink, tar.TypeLink:
			if bad == "" {
				a.problem(name, "link", "link ignored")
			} else {
				a.problem(fmt.Sprintf("%q", h.Name), "link", "link ignored")
			}
			continue
		default:
			if bad == "" {
				a.problem(name, "special", fmt.Sprintf("tar entry type %q ignored", h.Typeflag))
			}
			continue
		}
		if bad != "" {
			a.problem(fmt.Sprintf("%q", h.Name), "bad_name", bad)
			continue
		}
		if h.Size > lim.MaxFileSize || h.Size < 0 {
			a.problem(name, "too_large", fmt.Sprintf("%d bytes, limit %d", h.Size, lim.MaxFileSize))
			continue
		}
		if total+h.Size > lim.MaxTotalSize {
			a.problem(name, "total_cap", fmt.Sprintf("the archive expands past %d bytes", lim.MaxTotalSize))
			continue
		}
		if old, dup := a.byName[name]; dup {
			if old != nil {
				a.problem(name, "duplicate", "entry name appears more than once; all copies ignored")
				a.byName[name] = nil
			}
			continue
		}
		// The copy is named by its number, never by the entry's name.
		sp := fmt.Sprintf("%s/%d", dir, count)
		n, werr := spoolCopy(sp, tr, h.Size)
		if werr != nil {
			os.Remove(sp)
			a.problem(name, "truncated", fmt.Sprintf("only %d of %d bytes: %v", n, h.Size, werr))
			break
		}
		total += n
		e := &Entry{Name: name, Size: n, ModTime: utcOrZero(h.ModTime), AccessTime: utcOrZero(h.AccessTime),
			ChangeTime: utcOrZero(h.ChangeTime), spool: sp}
		a.byName[name] = e
	}
	a.collect()
	return nil
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() || t.Unix() == 0 {
		return time.Time{}
	}
	return t.UTC()
}

func spoolCopy(path string, r io.Reader, size int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Entries lists every regular file, sorted by name.
func (a *Archive) Entries() []*Entry { return append([]*Entry(nil), a.entries...) }

// OpenEntry opens a regular file by its archive name.
func (a *Archive) OpenEntry(name string) (fsaccess.File, error) {
	e := a.byName[name]
	if e == nil {
		return nil, fmt.Errorf("archive: entry %q: %w", name, fsaccess.ErrNotExist)
	}
	return a.open(e)
}

func (a *Archive) open(e *Entry) (fsaccess.File, error) {
	fi := a.info(e)
	if e.spool != "" {
		f, err := os.Open(e.spool)
		if err != nil {
			return nil, fmt.Errorf("archive: open %q: %w", e.Name, err)
		}
		return &spoolFile{File: f, fi: fi}, nil
	}
	return fsaccess.OpenZipEntry(e.zf, a.r, fi)
}

func (a *Archive) info(e *Entry) fsaccess.FileInfo {
	p := e.HostPath
	if p == "" {
		p = e.Name
	}
	_, name := fsaccess.Split(a.Layout.OS, p)
	return fsaccess.FileInfo{Path: p, Name: name, Size: e.Size, Mode: 0o644, ModTime: e.ModTime,
		AccessTime: e.AccessTime, ChangeTime: e.ChangeTime, ReadVia: "archive"}
}

func (a *Archive) key(p string) string {
	p = fsaccess.Clean(a.Layout.OS, p)
	if a.Layout.OS == "windows" {
		return strings.ToLower(p)
	}
	return p
}

// index maps the entries under the layout's root to host paths.
func (a *Archive) index() {
	goos := a.Layout.OS
	for _, e := range a.entries {
		hp, ok := a.Layout.HostPath(e.Name)
		if !ok {
			continue
		}
		k := a.key(hp)
		if a.files[k] != nil {
			a.problem(e.Name, "duplicate", "same host file under two spellings; the first is kept")
			continue
		}
		e.HostPath = hp
		a.files[k] = e
		for child := fsaccess.Clean(goos, hp); ; {
			dir, _ := fsaccess.Split(goos, child)
			if dir == child {
				a.roots[child] = true
				break
			}
			if dir == "" {
				break
			}
			dk := a.key(dir)
			if a.dirs[dk] == nil {
				a.dirs[dk] = map[string]bool{}
			}
			a.dirs[dk][child] = true
			child = dir
		}
	}
}

// OS returns the guessed OS of the collected host.
func (a *Archive) OS() string { return a.Layout.OS }

// Roots returns the roots of the files under the host root.
func (a *Archive) Roots() []string {
	out := make([]string, 0, len(a.roots))
	for r := range a.roots {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Lstat describes a file by host path, or a folder implied by the host paths.
func (a *Archive) Lstat(name string) (fsaccess.FileInfo, error) {
	k := a.key(name)
	if e := a.files[k]; e != nil {
		return a.info(e), nil
	}
	if a.dirs[k] != nil {
		_, base := fsaccess.Split(a.Layout.OS, name)
		return fsaccess.FileInfo{Path: fsaccess.Clean(a.Layout.OS, name), Name: base, Mode: fs.ModeDir | 0o755, ReadVia: "archive"}, nil
	}
	return fsaccess.FileInfo{}, fmt.Errorf("archive: lstat %q: %w", name, fsaccess.ErrNotExist)
}

// ReadDir lists a folder implied by the host paths.
func (a *Archive) ReadDir(name string) ([]fsaccess.FileInfo, error) {
	children := a.dirs[a.key(name)]
	if children == nil {
		return nil, fmt.Errorf("archive: readdir %q: %w", name, fsaccess.ErrNotExist)
	}
	out := make([]fsaccess.FileInfo, 0, len(children))
	for c := range children {
		if fi, err := a.Lstat(c); err == nil {
			out = append(out, fi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Open opens a file by host path.
func (a *Archive) Open(name string) (fsaccess.File, error) {
	e := a.files[a.key(name)]
	if e == nil {
		if a.dirs[a.key(name)] != nil {
			return nil, fmt.Errorf("archive: open %q: folder: %w", name, fsaccess.ErrSpecialFile)
		}
		return nil, fmt.Errorf("archive: open %q: %w", name, fsaccess.ErrNotExist)
	}
	return a.open(e)
}

type spoolFile struct {
	*os.File
	fi fsaccess.FileInfo
}

func (f *spoolFile) Stat() (fsaccess.FileInfo, error) { return f.fi, nil }
