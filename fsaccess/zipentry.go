package fsaccess

import (
	"archive/zip"
	"fmt"
	"io"
)

// zipEntry reads one zip entry with random access. Stored entries are a section of the archive;
// deflated ones are decompressed forward and reopened when a read goes backwards, which keeps
// memory bounded at the cost of time for parsers that jump around (they should read
// sequentially or use stored entries).
type zipEntry struct {
	zf   *zip.File
	fi   FileInfo
	sec  *io.SectionReader // stored entries
	rc   io.ReadCloser     // deflated entries: the current stream
	spos int64             // position of rc
	pos  int64             // the Read/Seek cursor
}

// OpenZipEntry opens zf, an entry of the zip archive r, as a File that Stat describes as fi
// (fi.Size bounds every read). Both readers of zips use it: a received package
// (collector.OpenPackage) and a foreign archive (fsaccess/archive). A deflated entry that ends
// before fi.Size is a read error, never a silently short file.
func OpenZipEntry(zf *zip.File, r io.ReaderAt, fi FileInfo) (File, error) {
	f := &zipEntry{zf: zf, fi: fi}
	if zf.Method == zip.Store {
		off, err := zf.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("zip: open %q: %w", fi.Path, err)
		}
		f.sec = io.NewSectionReader(r, off, fi.Size)
	}
	return f, nil
}

func (f *zipEntry) Stat() (FileInfo, error) { return f.fi, nil }

func (f *zipEntry) Read(b []byte) (int, error) {
	n, err := f.ReadAt(b, f.pos)
	f.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *zipEntry) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("zip: read %q: negative offset", f.fi.Path)
	}
	if off >= f.fi.Size {
		return 0, io.EOF
	}
	if len(b) > int(f.fi.Size-off) {
		b = b[:f.fi.Size-off]
	}
	if f.sec != nil {
		return f.sec.ReadAt(b, off)
	}
	if f.rc == nil || off < f.spos {
		if f.rc != nil {
			f.rc.Close()
		}
		rc, err := f.zf.Open()
		if err != nil {
			return 0, fmt.Errorf("zip: read %q: %w", f.fi.Path, err)
		}
		f.rc, f.spos = rc, 0
	}
	if off > f.spos {
		n, err := io.CopyN(io.Discard, f.rc, off-f.spos)
		f.spos += n
		if err != nil {
			return 0, fmt.Errorf("zip: read %q: %w", f.fi.Path, err)
		}
	}
	// archive/zip refuses to inflate past the declared size, so caps checked at open hold.
	n, err := io.ReadFull(f.rc, b)
	f.spos += int64(n)
	if err == io.ErrUnexpectedEOF || (err == io.EOF && n == 0) {
		err = fmt.Errorf("zip: read %q: entry shorter than declared: %w", f.fi.Path, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (f *zipEntry) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.pos
	case io.SeekEnd:
		offset += f.fi.Size
	default:
		return 0, fmt.Errorf("zip: seek %q: bad whence", f.fi.Path)
	}
	if offset < 0 {
		return 0, fmt.Errorf("zip: seek %q: negative position", f.fi.Path)
	}
	f.pos = offset
	return offset, nil
}

func (f *zipEntry) Close() error {
	if f.rc != nil {
		return f.rc.Close()
	}
	return nil
}
