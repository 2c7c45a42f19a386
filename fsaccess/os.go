package fsaccess

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// maxLinkHops bounds symlink resolution inside a --root folder, so a loop ends in an error, not a hang.
const maxLinkHops = 40

// OSAccessor reads the live host's file system, or a mounted image or folder laid out like the host
// (root mapping: `/var/log/x` → DIR/var/log/x, `C:\Windows\x` → DIR/C/Windows/x).
type OSAccessor struct {
	goos string
	root string // "" for the live host
}

var _ Accessor = (*OSAccessor)(nil)

// NewOS returns an accessor for the live host (root "") or for a folder holding a file system of goos
// ("windows", "linux" or "darwin"). The live host must be read with its own OS syntax.
func NewOS(goos, root string) (*OSAccessor, error) {
	switch goos {
	case "windows", "linux", "darwin":
	default:
		return nil, fmt.Errorf("fsaccess: unknown os %q", goos)
	}
	if root == "" {
		if goos != runtime.GOOS {
			return nil, fmt.Errorf("fsaccess: live host is %s, not %s", runtime.GOOS, goos)
		}
		return &OSAccessor{goos: goos}, nil
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("fsaccess: root %q: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("fsaccess: root: %w", translate(err))
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("fsaccess: root %q is not a directory", root)
	}
	return &OSAccessor{goos: goos, root: abs}, nil
}

// OS returns the OS whose path syntax the accessor speaks.
func (a *OSAccessor) OS() string { return a.goos }

// Roots returns "/" or the drive roots that exist.
func (a *OSAccessor) Roots() []string {
	if !isWindows(a.goos) {
		return []string{"/"}
	}
	var roots []string
	if a.root == "" {
		for c := 'A'; c <= 'Z'; c++ {
			if _, err := os.Lstat(string(c) + `:\`); err == nil {
				roots = append(roots, string(c)+`:\`)
			}
		}
		return roots
	}
	ents, _ := os.ReadDir(a.root)
	for _, e := range ents {
		if n := e.Name(); e.IsDir() && len(n) == 1 && isLetter(n[0]) {
			roots = append(roots, strings.ToUpper(n)+`:\`)
		}
	}
	return roots
}

// Lstat describes path without following a final symlink.
func (a *OSAccessor) Lstat(p string) (FileInfo, error) {
	host, p, err := a.hostPath(Clean(a.goos, p))
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return FileInfo{}, fmt.Errorf("fsaccess: lstat %q: %w", p, translate(err))
	}
	return a.info(p, host, fi), nil
}

// ReadDir lists a directory without following symlinks, sorted by name.
func (a *OSAccessor) ReadDir(p string) ([]FileInfo, error) {
	host, p, err := a.hostPath(Clean(a.goos, p))
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(host)
	if err != nil && len(ents) == 0 {
		return nil, fmt.Errorf("fsaccess: readdir %q: %w", p, translate(err))
	}
	out := make([]FileInfo, 0, len(ents))
	for _, e := range ents {
		child := filepath.Join(host, e.Name())
		fi, err := os.Lstat(child)
		if err != nil {
			continue // gone since the listing; the caller would only get not-exist
		}
		out = append(out, a.info(Join(a.goos, p, e.Name()), child, fi))
	}
	slices.SortFunc(out, func(x, y FileInfo) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// Open opens a regular file. FIFOs, devices and sockets give ErrSpecialFile without ever being opened in
// blocking mode, and a file swapped for one between the check and the open is caught by the second check.
func (a *OSAccessor) Open(p string) (File, error) {
	host, p, err := a.hostPath(Clean(a.goos, p))
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return nil, fmt.Errorf("fsaccess: open %q: %w", p, translate(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("fsaccess: open %q (%s): %w", p, fi.Mode().Type(), ErrSpecialFile)
	}
	f, err := openNoBlock(host)
	if err != nil {
		return nil, fmt.Errorf("fsaccess: open %q: %w", p, translate(err))
	}
	fi2, err := f.Stat()
	if err != nil || !fi2.Mode().IsRegular() || !os.SameFile(fi, fi2) {
		f.Close()
		return nil, fmt.Errorf("fsaccess: open %q: changed while opening: %w", p, ErrSpecialFile)
	}
	return &osFile{File: f, acc: a, path: p}, nil
}

type osFile struct {
	*os.File
	acc  *OSAccessor
	path string
}

func (f *osFile) Stat() (FileInfo, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return FileInfo{}, fmt.Errorf("fsaccess: stat %q: %w", f.path, translate(err))
	}
	return f.acc.info(f.path, f.File.Name(), fi), nil
}

func (a *OSAccessor) info(p, host string, fi fs.FileInfo) FileInfo {
	_, name := Split(a.goos, p)
	out := FileInfo{Path: p, Name: name, Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime(), ReadVia: "os"}
	if fi.IsDir() {
		out.Size = 0
	}
	fillTimes(&out, host, fi)
	if fi.Mode()&fs.ModeSymlink != 0 {
		out.Link, _ = os.Readlink(host)
	}
	return out
}

// hostPath maps an accessor path to a path of the machine we run on. For the live host that is the path
// itself. Under a root folder every component is resolved by hand: Windows names case-insensitively, and
// symlinks in the middle of the path within the root (an absolute link in a mounted image means the
// image's own root, never ours). The final component is not followed.
func (a *OSAccessor) hostPath(p string) (host, actual string, err error) {
	root, names := Components(a.goos, p)
	if root == "" {
		return "", "", fmt.Errorf("fsaccess: %q is not an absolute path: %w", p, ErrNotExist)
	}
	if a.root == "" {
		return p, p, nil
	}
	var pending []string
	if isWindows(a.goos) {
		pending = append([]string{root[:1]}, names...)
	} else {
		pending = names
	}
	var done []string // resolved host names below a.root
	hops := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		if name == ".." {
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		dir := filepath.Join(append([]string{a.root}, done...)...)
		actual, fi, err := a.lookup(dir, name)
		if err != nil {
			if len(pending) == 0 && errors.Is(err, fs.ErrNotExist) {
				// Let the caller's own Lstat produce the error with the right wording.
				return filepath.Join(dir, name), p, nil
			}
			return "", "", fmt.Errorf("fsaccess: %q: %w", p, translate(err))
		}
		if len(pending) == 0 || fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, actual)
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", "", fmt.Errorf("fsaccess: %q: %w", p, ErrLoop)
		}
		target, err := os.Readlink(filepath.Join(dir, actual))
		if err != nil {
			return "", "", fmt.Errorf("fsaccess: %q: %w", p, translate(err))
		}
		tr, tnames := Components(a.goos, target)
		if tr != "" {
			done = nil
			if isWindows(a.goos) {
				tnames = append([]string{tr[:1]}, tnames...)
			}
		}
		pending = append(tnames, pending...)
	}
	// Report the names as they are on disk (and where the symlinks led), like the OS would.
	if isWindows(a.goos) && len(done) > 0 {
		actual = Join(a.goos, append([]string{strings.ToUpper(done[0]) + `:\`}, done[1:]...)...)
	} else {
		actual = Join(a.goos, append([]string{"/"}, done...)...)
	}
	return filepath.Join(append([]string{a.root}, done...)...), actual, nil
}

// lookup finds name in dir: exactly, or on Windows case-insensitively (drive folders too).
func (a *OSAccessor) lookup(dir, name string) (string, fs.FileInfo, error) {
	fi, err := os.Lstat(filepath.Join(dir, name))
	if err == nil || !isWindows(a.goos) || !errors.Is(err, fs.ErrNotExist) {
		return name, fi, err
	}
	ents, rerr := os.ReadDir(dir)
	if rerr != nil {
		return "", nil, err
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name(), name) {
			fi, err := os.Lstat(filepath.Join(dir, e.Name()))
			return e.Name(), fi, err
		}
	}
	return "", nil, err
}

// translate maps OS errors onto the package's errors, keeping the original text.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %v", ErrNotExist, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %v", ErrPermission, err)
	case isLocked(err):
		return fmt.Errorf("%w: %v", ErrLocked, err)
	}
	return err
}
