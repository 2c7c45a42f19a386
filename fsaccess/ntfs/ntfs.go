// Package ntfs reads an NTFS volume raw, below the Windows file system, so the
// collector can copy files Windows keeps locked (registry hives, $MFT,
// $UsnJrnl:$J) and so tests can read NTFS images on any OS.
//
// It implements fsaccess.Accessor on top of www.velocidex.com/golang/go-ntfs.
// go-ntfs trusts the on-disk structures and can panic on hostile input, so
// every call into it is guarded: a panic becomes an error, never a crash.
package ntfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/quarry-dfir/quarry/fsaccess"
	"www.velocidex.com/golang/go-ntfs/parser"
)

const (
	// pageSize aligns every read of the underlying volume: raw Windows
	// devices only accept sector-aligned reads, and 4 KiB is a multiple of
	// every sector size in use.
	pageSize = 4096
	// cachePages bounds the page cache to 4 MiB.
	cachePages = 1024
	// maxIndexBytes bounds how much directory index go-ntfs may scan for one
	// directory. go-ntfs walks an index allocation in 4 KiB steps up to its
	// declared size, so a forged size would otherwise spin for hours.
	maxIndexBytes = 1 << 30

	attrReparsePoint = 0xC0
	siFlagReparse    = 0x400
	mftRoot          = 5

	reparseTagMountPoint = 0xA0000003
	reparseTagSymlink    = 0xA000000C
)

var errCorrupt = errors.New("corrupt ntfs structure")

// Accessor reads one NTFS volume mounted as a drive letter. It is safe for
// concurrent use; calls are serialised because go-ntfs's caches are not.
type Accessor struct {
	mu       sync.Mutex
	ntfs     *parser.NTFSContext
	drive    string // "C:"
	maxIndex int64
}

var _ fsaccess.Accessor = (*Accessor)(nil)

// New parses the boot sector and $MFT of the NTFS volume in r and returns an
// accessor that serves paths on drive (such as "C:"). r is a volume device
// (`\\.\C:`) or an image of a single volume; it must stay open while the
// accessor is used.
func New(r io.ReaderAt, drive string) (a *Accessor, err error) {
	d, err := parseDrive(drive)
	if err != nil {
		return nil, err
	}
	defer guard(&err, "ntfs: open volume")
	paged, err := parser.NewPagedReader(r, pageSize, cachePages)
	if err != nil {
		return nil, fmt.Errorf("ntfs: page cache: %w", err)
	}
	ctx, err := parser.GetNTFSContext(paged, 0)
	if err != nil {
		return nil, fmt.Errorf("ntfs: open volume %s: %w", d, err)
	}
	maxIndex := int64(maxIndexBytes)
	if s, ok := r.(interface{ Size() int64 }); ok && s.Size() < maxIndex {
		maxIndex = s.Size()
	}
	a = &Accessor{ntfs: ctx, drive: d, maxIndex: maxIndex}
	// Reading the root proves the $MFT is usable before anyone relies on it.
	if _, err := a.ntfs.GetMFT(mftRoot); err != nil {
		return nil, fmt.Errorf("ntfs: open volume %s: root directory: %w", d, err)
	}
	return a, nil
}

// OS reports "windows": NTFS paths use Windows syntax.
func (a *Accessor) OS() string { return "windows" }

// Roots returns the drive root, such as `C:\`.
func (a *Accessor) Roots() []string { return []string{a.drive + `\`} }

// Close drops the caches. It does not close the reader given to New.
func (a *Accessor) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ntfs.Purge()
	return nil
}

// Lstat describes path without following reparse points. A path may name an
// alternate data stream (`C:\$Extend\$UsnJrnl:$J`). Errors: fsaccess.ErrNotExist.
func (a *Accessor) Lstat(path string) (info fsaccess.FileInfo, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer guard(&err, "ntfs: lstat "+path)
	n, err := a.resolve(path)
	if err != nil {
		return fsaccess.FileInfo{}, err
	}
	return n.info, nil
}

// ReadDir lists the directory at path. Alternate data streams are not listed
// as entries (they are reachable by name through Lstat and Open); DOS 8.3
// short names are left out because they duplicate the long names.
func (a *Accessor) ReadDir(path string) (infos []fsaccess.FileInfo, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer guard(&err, "ntfs: readdir "+path)
	n, err := a.resolve(path)
	if err != nil {
		return nil, err
	}
	if !n.info.Mode.IsDir() {
		return nil, fmt.Errorf("ntfs: readdir %s: not a directory", path)
	}
	records, err := a.dir(n.entry)
	if err != nil {
		return nil, fmt.Errorf("ntfs: readdir %s: %w", path, err)
	}
	type key struct {
		ref  uint64
		name string
	}
	seen := map[key]bool{}
	for _, rec := range records {
		fn := rec.File()
		name := fn.Name()
		if fn.NameType().Name == "DOS" || name == "." || name == "" {
			continue
		}
		k := key{rec.MftReference(), name}
		if seen[k] {
			continue
		}
		seen[k] = true
		entry, err := a.entryOf(rec)
		if err != nil {
			continue // a stale index entry is not worth failing the listing
		}
		child := strings.TrimSuffix(n.path, `\`) + `\` + name
		fi := a.stat(entry, child, name, "")
		if fi.Mode.IsDir() && parentOf(a.ntfs, entry) != n.ref {
			// A directory has one parent. An index entry elsewhere that
			// points to it is forged, and following it could loop forever.
			continue
		}
		infos = append(infos, fi)
	}
	return infos, nil
}

// Open opens the file or alternate data stream at path for reading. Sparse
// runs are produced on demand while reading, never held in memory. Errors:
// fsaccess.ErrNotExist; opening a directory is an error.
func (a *Accessor) Open(path string) (f fsaccess.File, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer guard(&err, "ntfs: open "+path)
	n, err := a.resolve(path)
	if err != nil {
		return nil, err
	}
	if n.info.Mode.IsDir() {
		return nil, fmt.Errorf("ntfs: open %s: is a directory", path)
	}
	stream, err := parser.OpenStream(a.ntfs, n.entry, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, n.stream)
	if err != nil {
		return nil, fmt.Errorf("ntfs: open %s: %w", path, fsaccess.ErrNotExist)
	}
	return &file{a: a, r: stream, info: n.info}, nil
}

// node is a resolved path: its MFT entry and the data stream it names.
type node struct {
	entry  *parser.MFT_ENTRY
	ref    uint64 // MFT record number
	path   string // canonical, with on-disk spelling
	stream string // "" for the unnamed $DATA stream
	info   fsaccess.FileInfo
}

// resolve walks path from the root directory, matching names
// case-insensitively as Windows does.
func (a *Accessor) resolve(path string) (*node, error) {
	parts, stream, err := a.split(path)
	if err != nil {
		return nil, err
	}
	entry, err := a.ntfs.GetMFT(mftRoot)
	if err != nil {
		return nil, fmt.Errorf("ntfs: root directory: %w", err)
	}
	canon := a.drive
	name := ""
	ref := uint64(mftRoot)
	for _, part := range parts {
		if !isDir(a.ntfs, entry) {
			return nil, fmt.Errorf("ntfs: %s: %w", path, fsaccess.ErrNotExist)
		}
		records, err := a.dir(entry)
		if err != nil {
			return nil, fmt.Errorf("ntfs: %s: %w", path, err)
		}
		var next *parser.MFT_ENTRY
		for _, rec := range records {
			fn := rec.File()
			if strings.EqualFold(fn.Name(), part) {
				if next, err = a.entryOf(rec); err != nil {
					continue // stale: the file was deleted, its record reused
				}
				name, ref = fn.Name(), rec.MftReference()
				if fn.NameType().Name == "DOS" {
					name = longName(a.ntfs, next, name)
				}
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("ntfs: %s: %w", path, fsaccess.ErrNotExist)
		}
		entry = next
		canon += `\` + name
	}
	if len(parts) == 0 {
		canon += `\`
	}
	n := &node{entry: entry, ref: ref, path: canon}
	if stream != "" {
		actual, ok := findStream(a.ntfs, entry, stream)
		if !ok {
			return nil, fmt.Errorf("ntfs: %s: %w", path, fsaccess.ErrNotExist)
		}
		n.stream = actual
		n.path += ":" + actual
		name += ":" + actual
	}
	n.info = a.stat(entry, n.path, name, n.stream)
	return n, nil
}

// split parses `C:\dir\file:stream` into its components and stream name.
// Forward slashes are accepted too; `::$DATA` suffixes name the default
// stream.
func (a *Accessor) split(path string) (parts []string, stream string, err error) {
	p := strings.ReplaceAll(path, "/", `\`)
	if len(p) < 2 || !strings.EqualFold(p[:2], a.drive) {
		return nil, "", fmt.Errorf("ntfs: %s: not on drive %s: %w", path, a.drive, fsaccess.ErrNotExist)
	}
	for _, part := range strings.Split(p[2:], `\`) {
		switch part {
		case "", ".":
			continue
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
			continue
		}
		parts = append(parts, part)
	}
	for i, part := range parts {
		name, s, found := strings.Cut(part, ":")
		if !found {
			continue
		}
		if i != len(parts)-1 {
			return nil, "", fmt.Errorf("ntfs: %s: stream name inside path: %w", path, fsaccess.ErrNotExist)
		}
		s, _, _ = strings.Cut(s, ":") // drop a ":$DATA" type suffix
		parts[i], stream = name, s
	}
	return parts, stream, nil
}

// entryOf returns the MFT entry an index record points to, if that entry
// is still the file the index names: index blocks keep entries of deleted
// files whose MFT records were since reused by other files.
func (a *Accessor) entryOf(rec *parser.INDEX_RECORD_ENTRY) (*parser.MFT_ENTRY, error) {
	entry, err := a.ntfs.GetMFT(int64(rec.MftReference()))
	if err != nil {
		return nil, err
	}
	if !entry.Flags().IsSet("ALLOCATED") {
		return nil, fmt.Errorf("mft entry %d is not in use", rec.MftReference())
	}
	if seq := rec.Seq_num(); seq != 0 && seq != entry.Sequence_value() {
		return nil, fmt.Errorf("mft entry %d has sequence %d, index wants %d", rec.MftReference(), entry.Sequence_value(), seq)
	}
	return entry, nil
}

// dir returns the index records of a directory after checking that its index
// is of plausible size.
func (a *Accessor) dir(entry *parser.MFT_ENTRY) ([]*parser.INDEX_RECORD_ENTRY, error) {
	for _, attr := range entry.EnumerateAttributes(a.ntfs) {
		if attr.Type().Value == parser.ATTR_TYPE_INDEX_ALLOCATION && attr.DataSize() > a.maxIndex {
			return nil, fmt.Errorf("index of %d bytes: %w", attr.DataSize(), errCorrupt)
		}
	}
	return entry.Dir(a.ntfs), nil
}

// stat builds the FileInfo of an MFT entry, or of one of its named streams.
func (a *Accessor) stat(entry *parser.MFT_ENTRY, path, name, stream string) fsaccess.FileInfo {
	info := fsaccess.FileInfo{Path: path, Name: name, ReadVia: "ntfs", Mode: 0o444}
	if si, err := entry.StandardInformation(a.ntfs); err == nil {
		off := si.Profile
		info.BirthTime = filetime(si.Reader, si.Offset+off.Off_STANDARD_INFORMATION_Create_time)
		info.ModTime = filetime(si.Reader, si.Offset+off.Off_STANDARD_INFORMATION_File_altered_time)
		info.ChangeTime = filetime(si.Reader, si.Offset+off.Off_STANDARD_INFORMATION_Mft_altered_time)
		info.AccessTime = filetime(si.Reader, si.Offset+off.Off_STANDARD_INFORMATION_File_accessed_time)
		flags := parser.ParseUint32(si.Reader, si.Offset+off.Off_STANDARD_INFORMATION_Flags)
		if flags&siFlagReparse != 0 && stream == "" {
			if target, ok := linkTarget(a.ntfs, entry); ok {
				info.Mode = fs.ModeSymlink | 0o777
				info.Link = target
				return info
			}
		}
	}
	if stream == "" && isDir(a.ntfs, entry) {
		info.Mode = fs.ModeDir | 0o555
		return info
	}
	for _, attr := range entry.EnumerateAttributes(a.ntfs) {
		if attr.Type().Value == parser.ATTR_TYPE_DATA && attr.Name() == stream &&
			(attr.IsResident() || attr.Runlist_vcn_start() == 0) {
			info.Size = max(attr.DataSize(), 0)
			break
		}
	}
	return info
}

// isDir reports whether entry holds a directory index. The header flag alone
// is not trusted: $Extend and other metadata directories are recognised by
// their $I30 index too.
func isDir(ntfs *parser.NTFSContext, entry *parser.MFT_ENTRY) bool {
	if entry.Flags().IsSet("DIRECTORY") {
		return true
	}
	return entry.IsDir(ntfs)
}

// parentOf returns the parent directory recorded in the entry's long
// $FILE_NAME, or 0 when there is none.
func parentOf(ntfs *parser.NTFSContext, entry *parser.MFT_ENTRY) uint64 {
	for _, fn := range entry.FileName(ntfs) {
		if fn.NameType().Name != "DOS" {
			return fn.MftReference()
		}
	}
	return 0
}

// findStream returns the on-disk spelling of the named $DATA stream.
func findStream(ntfs *parser.NTFSContext, entry *parser.MFT_ENTRY, want string) (string, bool) {
	for _, attr := range entry.EnumerateAttributes(ntfs) {
		if attr.Type().Value == parser.ATTR_TYPE_DATA {
			if name := attr.Name(); name != "" && strings.EqualFold(name, want) {
				return name, true
			}
		}
	}
	return "", false
}

// longName returns the Win32 name of an entry that was reached by its DOS
// 8.3 alias, so paths are reported the way Windows shows them.
func longName(ntfs *parser.NTFSContext, entry *parser.MFT_ENTRY, fallback string) string {
	for _, fn := range entry.FileName(ntfs) {
		if fn.NameType().Name != "DOS" {
			return fn.Name()
		}
	}
	return fallback
}

// linkTarget reads the target of a symbolic link or junction. Other reparse
// points (deduplicated or cloud placeholder files) are regular files to a
// collector and report false.
func linkTarget(ntfs *parser.NTFSContext, entry *parser.MFT_ENTRY) (string, bool) {
	for _, attr := range entry.EnumerateAttributes(ntfs) {
		if attr.Type().Value != attrReparsePoint {
			continue
		}
		buf := make([]byte, min(max(attr.DataSize(), 0), 16*1024))
		n, _ := attr.Data(ntfs).ReadAt(buf, 0)
		return parseReparse(buf[:n])
	}
	return "", false
}

// parseReparse decodes the print name of a REPARSE_DATA_BUFFER for symbolic
// links and mount points (junctions).
func parseReparse(b []byte) (string, bool) {
	if len(b) < 16 {
		return "", false
	}
	le := func(i int) int { return int(b[i]) | int(b[i+1])<<8 }
	tag := uint32(le(0)) | uint32(le(2))<<16
	base := 16
	switch tag {
	case reparseTagSymlink:
		base = 20 // symbolic links carry 4 bytes of flags before the names
	case reparseTagMountPoint:
	default:
		return "", false
	}
	off, length := base+le(12), le(14)
	if length == 0 {
		off, length = base+le(8), le(10) // fall back to the substitute name
	}
	if off+length > len(b) || length%2 != 0 {
		return "", true
	}
	u := make([]uint16, length/2)
	for i := range u {
		u[i] = uint16(le(off + 2*i))
	}
	return string(utf16.Decode(u)), true
}

// filetime converts a Windows FILETIME at offset in r; 0 means unknown.
func filetime(r io.ReaderAt, offset int64) time.Time {
	ft := parser.ParseUint64(r, offset)
	if ft == 0 {
		return time.Time{}
	}
	const ticksPerSecond = 10_000_000
	const epochDelta = 11644473600 // seconds from 1601-01-01 to 1970-01-01
	return time.Unix(int64(ft/ticksPerSecond)-epochDelta, int64(ft%ticksPerSecond)*100).UTC()
}

// parseDrive normalises "c", "c:" or `C:\` to "C:".
func parseDrive(drive string) (string, error) {
	d := strings.TrimRight(drive, `\/`)
	d = strings.TrimSuffix(d, ":")
	if len(d) != 1 || !('a' <= d[0]|0x20 && d[0]|0x20 <= 'z') {
		return "", fmt.Errorf("ntfs: bad drive %q", drive)
	}
	return strings.ToUpper(d) + ":", nil
}

// guard turns a panic inside go-ntfs into an error, so a corrupt or hostile
// volume cannot take the collector down.
func guard(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: %w: %v", what, errCorrupt, r)
	}
}

// file is an open data stream. Reads go through the accessor's lock.
type file struct {
	a    *Accessor
	r    io.ReaderAt
	info fsaccess.FileInfo
	off  int64
}

func (f *file) Stat() (fsaccess.FileInfo, error) { return f.info, nil }

func (f *file) Close() error { return nil }

func (f *file) ReadAt(p []byte, off int64) (n int, err error) {
	if off < 0 {
		return 0, fmt.Errorf("ntfs: read %s: negative offset", f.info.Path)
	}
	if off >= f.info.Size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := f.info.Size - off; int64(want) > rest {
		want = int(rest)
	}
	f.a.mu.Lock()
	defer f.a.mu.Unlock()
	defer guard(&err, "ntfs: read "+f.info.Path)
	for n < want {
		m, err := f.r.ReadAt(p[n:want], off+int64(n))
		n += m
		if err != nil || m == 0 {
			// The stream ended before its declared size: the runs do
			// not cover it, which only happens on a damaged volume.
			return n, fmt.Errorf("ntfs: read %s at %d: %w", f.info.Path, off+int64(n), io.ErrUnexpectedEOF)
		}
	}
	if want < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *file) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *file) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.info.Size
	default:
		return 0, fmt.Errorf("ntfs: seek %s: bad whence %d", f.info.Path, whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("ntfs: seek %s: negative position", f.info.Path)
	}
	f.off = offset
	return offset, nil
}
