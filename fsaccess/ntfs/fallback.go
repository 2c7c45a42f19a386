package ntfs

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/quarry-dfir/quarry/fsaccess"
)

// metafiles are the root-level NTFS metadata files. The Windows file API
// refuses to open them, so they are always read raw.
var metafiles = map[string]bool{
	"$mft": true, "$mftmirr": true, "$logfile": true, "$volume": true,
	"$attrdef": true, "$bitmap": true, "$boot": true, "$badclus": true,
	"$secure": true, "$upcase": true, "$extend": true,
}

// Fallback returns an accessor that reads through primary (the operating
// system) and falls back to the raw volume when primary reports
// fsaccess.ErrLocked or fsaccess.ErrPermission, or when the path is an NTFS
// metafile such as `C:\$MFT` or anything under `C:\$Extend`. The volume of a
// drive is opened with open the first time it is needed, once. If the
// returned accessor is closed (it implements io.Closer), the opened volumes
// that implement io.Closer are closed.
func Fallback(primary fsaccess.Accessor, open func(drive string) (io.ReaderAt, error)) fsaccess.Accessor {
	return &fallback{primary: primary, open: open, drives: map[string]*rawDrive{}}
}

type fallback struct {
	primary fsaccess.Accessor
	open    func(drive string) (io.ReaderAt, error)

	mu     sync.Mutex
	drives map[string]*rawDrive
}

// rawDrive is the lazily opened raw view of one drive; err is remembered so
// a volume that cannot be opened is not retried for every file.
type rawDrive struct {
	once sync.Once
	r    io.ReaderAt
	acc  *Accessor
	err  error
}

func (f *fallback) OS() string      { return f.primary.OS() }
func (f *fallback) Roots() []string { return f.primary.Roots() }

func (f *fallback) Lstat(path string) (fsaccess.FileInfo, error) {
	return via(f, path, fsaccess.Accessor.Lstat, (*Accessor).Lstat)
}

func (f *fallback) ReadDir(path string) ([]fsaccess.FileInfo, error) {
	return via(f, path, fsaccess.Accessor.ReadDir, (*Accessor).ReadDir)
}

func (f *fallback) Open(path string) (fsaccess.File, error) {
	return via(f, path, fsaccess.Accessor.Open, (*Accessor).Open)
}

// Close closes every raw volume opened so far.
func (f *fallback) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for d, rd := range f.drives {
		if rd.acc != nil {
			rd.acc.Close()
		}
		if c, ok := rd.r.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("ntfs: close volume %s: %w", d, err))
			}
		}
		delete(f.drives, d)
	}
	return errors.Join(errs...)
}

// via runs one operation on the OS accessor and, when it cannot read the
// path, on the raw volume. When both fail the OS error is kept as the one
// callers classify (locked, permission) and the raw error is added as detail.
func via[T any](f *fallback, path string, osOp func(fsaccess.Accessor, string) (T, error), rawOp func(*Accessor, string) (T, error)) (T, error) {
	if isMetafile(path) {
		raw, err := f.raw(path)
		if err == nil {
			return rawOp(raw, path)
		}
		v, osErr := osOp(f.primary, path)
		if osErr != nil {
			return v, fmt.Errorf("%w (raw ntfs: %v)", osErr, err)
		}
		return v, nil
	}
	v, err := osOp(f.primary, path)
	if err == nil || !(errors.Is(err, fsaccess.ErrLocked) || errors.Is(err, fsaccess.ErrPermission)) {
		return v, err
	}
	raw, rawErr := f.raw(path)
	if rawErr == nil {
		var rv T
		if rv, rawErr = rawOp(raw, path); rawErr == nil {
			return rv, nil
		}
	}
	return v, fmt.Errorf("%w (raw ntfs: %v)", err, rawErr)
}

// raw returns the raw accessor for the drive of path, opening it once.
func (f *fallback) raw(path string) (*Accessor, error) {
	drive, err := parseDrive(driveOf(path))
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	rd := f.drives[drive]
	if rd == nil {
		rd = &rawDrive{}
		f.drives[drive] = rd
	}
	f.mu.Unlock()
	rd.once.Do(func() {
		rd.r, rd.err = f.open(drive)
		if rd.err != nil {
			rd.err = fmt.Errorf("ntfs: open volume %s: %w", drive, rd.err)
			return
		}
		rd.acc, rd.err = New(rd.r, drive)
	})
	return rd.acc, rd.err
}

// isMetafile reports whether path names an NTFS metadata file, which only
// the raw reader can open: `C:\$MFT`, `C:\$Extend\$UsnJrnl:$J` and the like.
func isMetafile(path string) bool {
	p := strings.ReplaceAll(path, "/", `\`)
	if len(p) < 3 || p[1] != ':' || p[2] != '\\' {
		return false
	}
	first, _, _ := strings.Cut(strings.TrimLeft(p[3:], `\`), `\`)
	first, _, _ = strings.Cut(first, ":")
	return metafiles[strings.ToLower(first)]
}

func driveOf(path string) string {
	if len(path) >= 2 && path[1] == ':' {
		return path[:2]
	}
	return path
}
