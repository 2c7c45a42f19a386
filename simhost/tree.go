package simhost

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

const markerName = ".simhost"

// tree is a file system built in memory and written in one pass, so that generation is a pure function of
// the Host and the write step is the only place that touches the disk.
type tree struct {
	files map[string]*file // slash-separated paths relative to the root
	dirs  map[string]bool  // folders that must exist even when empty
	empty time.Time        // time of folders that hold nothing, such as winevt/Logs before the EVTX extra
}

type file struct {
	data  []byte
	mtime time.Time
	mode  fs.FileMode
}

func newTree() *tree { return &tree{files: map[string]*file{}, dirs: map[string]bool{}} }

// add stores a file; a later add of the same path replaces it. Paths are built by this package from
// generated names, never from Host fields, and flush checks them again through os.Root.
func (t *tree) add(p string, data []byte, mtime time.Time, mode fs.FileMode) {
	if !fs.ValidPath(p) || p == "." {
		panic("simhost: bad generated path " + p) // a bug in this package, not bad input
	}
	t.files[p] = &file{data: data, mtime: mtime.UTC(), mode: mode}
}

func (t *tree) text(p, s string, mtime time.Time) { t.add(p, []byte(s), mtime, 0o644) }

func (t *tree) dir(p string) { t.dirs[p] = true }

// entries lists what the marker records: files, then folders that must exist even when empty.
func (t *tree) entries() (files, dirs []string) {
	for d := range t.dirs {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	return t.paths(), dirs
}

func (t *tree) paths() []string {
	ps := make([]string, 0, len(t.files))
	for p := range t.files {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// flush writes the tree beneath root. Folder times are set last, deepest first, to the newest time beneath
// them, so that they are as deterministic as the files.
func (t *tree) flush(root string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("simhost: open root: %w", err)
	}
	defer r.Close()
	dirTimes := map[string]time.Time{}
	note := func(p string, mt time.Time) {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if old, ok := dirTimes[d]; !ok || mt.After(old) {
				dirTimes[d] = mt
			}
		}
	}
	for d := range t.dirs {
		if _, ok := dirTimes[d]; !ok {
			dirTimes[d] = time.Time{}
		}
		note(d, time.Time{})
	}
	// Files are written folder by folder through a Root opened on the folder, so each write resolves
	// one name instead of walking the whole path again.
	byDir := map[string][]string{}
	for _, p := range t.paths() {
		byDir[path.Dir(p)] = append(byDir[path.Dir(p)], p)
	}
	for _, d := range slices.Sorted(maps.Keys(byDir)) {
		if err := t.flushDir(r, d, byDir[d]); err != nil {
			return err
		}
		for _, p := range byDir[d] {
			note(p, t.files[p].mtime)
		}
	}
	dirs := make([]string, 0, len(dirTimes))
	for d := range dirTimes {
		dirs = append(dirs, d)
	}
	// Deepest first, so setting a child's time (a metadata change) never disturbs a parent already set.
	slices.SortFunc(dirs, func(a, b string) int {
		if c := strings.Count(b, "/") - strings.Count(a, "/"); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, d := range dirs {
		if err := r.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("simhost: mkdir %s: %w", d, err)
		}
		mt := dirTimes[d]
		if mt.IsZero() {
			mt = t.empty
		}
		if err := r.Chtimes(d, mt, mt); err != nil {
			return fmt.Errorf("simhost: set times %s: %w", d, err)
		}
	}
	return nil
}

func (t *tree) flushDir(r *os.Root, dir string, paths []string) error {
	if err := r.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("simhost: mkdir %s: %w", dir, err)
	}
	sub, err := r.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("simhost: open %s: %w", dir, err)
	}
	defer sub.Close()
	for _, p := range paths {
		f, name := t.files[p], path.Base(p)
		if err := sub.WriteFile(name, f.data, f.mode); err != nil {
			// A file of an earlier generation may be read-only (sudoers is 0440): replace it.
			if err := sub.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("simhost: replace %s: %w", p, err)
			}
			if err := sub.WriteFile(name, f.data, f.mode); err != nil {
				return fmt.Errorf("simhost: write %s: %w", p, err)
			}
		}
		if err := sub.Chmod(name, f.mode); err != nil { // WriteFile's mode is filtered by the umask
			return fmt.Errorf("simhost: chmod %s: %w", p, err)
		}
		if err := sub.Chtimes(name, f.mtime, f.mtime); err != nil {
			return fmt.Errorf("simhost: set times %s: %w", p, err)
		}
	}
	return nil
}

func mkdirRoot(root string) error {
	if root == "" {
		return errors.New("simhost: empty root")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("simhost: create root: %w", err)
	}
	return nil
}

type marker struct {
	hash  string
	files []string
	dirs  []string
}

// readMarker returns the zero marker when there is none; a marker that cannot be read as one is treated
// the same way, so a damaged tree is simply written again.
func readMarker(root string) (marker, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return marker{}, fmt.Errorf("simhost: open root: %w", err)
	}
	defer r.Close()
	b, err := r.ReadFile(markerName)
	if errors.Is(err, fs.ErrNotExist) {
		return marker{}, nil
	}
	if err != nil {
		return marker{}, fmt.Errorf("simhost: read marker: %w", err)
	}
	var m marker
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "hash "):
			m.hash = strings.TrimPrefix(line, "hash ")
		case strings.HasPrefix(line, "file "):
			m.files = append(m.files, strings.TrimPrefix(line, "file "))
		case strings.HasPrefix(line, "dir "):
			m.dirs = append(m.dirs, strings.TrimPrefix(line, "dir "))
		}
	}
	return m, nil
}

func writeMarker(root, hash string, m marker) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nhash %s\n", Version, hash)
	for _, f := range m.files {
		fmt.Fprintf(&b, "file %s\n", f)
	}
	for _, d := range m.dirs {
		fmt.Fprintf(&b, "dir %s\n", d)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("simhost: open root: %w", err)
	}
	defer r.Close()
	if err := r.WriteFile(markerName, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("simhost: write marker: %w", err)
	}
	return nil
}

// removeFiles deletes what a previous generation wrote, then the folders it leaves empty. The list comes
// from a file on disk, so it is untrusted: os.Root keeps every removal beneath root.
func removeFiles(root string, m marker) error {
	if len(m.files) == 0 && len(m.dirs) == 0 {
		return nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("simhost: open root: %w", err)
	}
	defer r.Close()
	dirs := map[string]bool{}
	for _, d := range m.dirs {
		for ; fs.ValidPath(d) && d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, p := range m.files {
		if !fs.ValidPath(p) || p == "." {
			continue
		}
		if err := r.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("simhost: remove %s: %w", p, err)
		}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	ds := make([]string, 0, len(dirs))
	for d := range dirs {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b string) int { return len(b) - len(a) })
	for _, d := range ds {
		_ = r.Remove(d) // fails, as intended, for folders that still hold something
	}
	return nil
}
