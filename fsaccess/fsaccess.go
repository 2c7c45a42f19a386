// Package fsaccess is the one file-access interface of Quarry: the collector reads the live host, a mounted
// image or folder (--root) and, on the server, a received package through it, so parsers and targets never
// care where the bytes come from.
package fsaccess

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// FileInfo describes one file as the accessor saw it, without following a final symlink.
type FileInfo struct {
	Path    string // full path in the accessor's OS syntax, e.g. `C:\Windows\System32\config\SYSTEM` or `/var/log/auth.log`
	Name    string
	Size    int64
	Mode    fs.FileMode // type bits matter: dir, symlink, named pipe, device, socket
	ModTime time.Time   // zero when unknown
	// AccessTime, ChangeTime (inode change or MFT change) and BirthTime are zero when unknown.
	AccessTime, ChangeTime, BirthTime time.Time
	Link                              string // symlink target, when Mode is a symlink
	ReadVia                           string // "os", "ntfs", "package"
}

// IsDir reports whether the entry is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode.IsDir() }

// IsRegular reports whether the entry is a regular file, the only kind whose content is ever read.
func (fi FileInfo) IsRegular() bool { return fi.Mode.IsRegular() }

// File is an open regular file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
	Stat() (FileInfo, error)
}

// Accessor reads one file system. Paths are in the syntax of OS(). Errors wrap ErrNotExist, ErrPermission,
// ErrLocked or ErrSpecialFile where they apply.
type Accessor interface {
	OS() string // "windows", "linux", "darwin"
	// Lstat describes path without following a final symlink.
	Lstat(path string) (FileInfo, error)
	// ReadDir lists a directory; entries are Lstat-like (symlinks not followed), sorted by name.
	ReadDir(path string) ([]FileInfo, error)
	// Open opens a regular file. It never blocks on FIFOs or devices: it returns ErrSpecialFile for them.
	Open(path string) (File, error)
	// Roots lists the file system roots: "/" or drive roots like `C:\`.
	Roots() []string
}

// Errors callers branch on. Implementations wrap them, so test with errors.Is.
var (
	ErrSpecialFile = errors.New("fsaccess: not a regular file")
	ErrNotExist    = fmt.Errorf("fsaccess: %w", fs.ErrNotExist)
	ErrPermission  = fmt.Errorf("fsaccess: %w", fs.ErrPermission)
	ErrLocked      = errors.New("fsaccess: file locked by another process")
	// ErrLoop is returned when resolving a path meets too many symlinks (a loop, most likely).
	ErrLoop = errors.New("fsaccess: too many levels of symbolic links")
)
