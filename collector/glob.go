package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/quarry-dfir/quarry/fsaccess"
)

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[") }

// matchName matches one path component; Windows names compare case-insensitively.
func matchName(goos, pattern, name string) bool {
	if goos == "windows" {
		pattern, name = strings.ToLower(pattern), strings.ToLower(name)
	}
	if !hasMeta(pattern) {
		return pattern == name
	}
	ok, _ := path.Match(pattern, name)
	return ok
}

// matchPath matches a whole path against a glob with the same syntax as target paths.
func matchPath(goos, pattern, p string) bool {
	pr, pc := fsaccess.Components(goos, pattern)
	r, c := fsaccess.Components(goos, p)
	if !strings.EqualFold(pr, r) {
		return false
	}
	return matchComps(goos, pc, c)
}

func matchComps(goos string, pat, names []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(names); i++ {
				if matchComps(goos, pat[1:], names[i:]) {
					return true
				}
			}
			return false
		}
		if len(names) == 0 || !matchName(goos, pat[0], names[0]) {
			return false
		}
		pat, names = pat[1:], names[1:]
	}
	return len(names) == 0
}

// expand walks the file system for one glob and calls visit for every match (files, symlinks and special
// files; directories only where the pattern names them). It never follows symlinks: walking is
// Lstat-based, so symlink loops cannot trap it, and "**" stops at maxWalkDepth. visit returns false to
// stop the walk. Errors on the way (a folder that cannot be listed) are recorded as skips.
func (e *engine) expand(ctx context.Context, t *Target, pattern string, visit func(fsaccess.FileInfo) bool) {
	root, comps := fsaccess.Components(e.goos, pattern)
	w := walker{e: e, ctx: ctx, t: t, visit: visit, pattern: pattern}
	w.walk(root, comps, 0)
}

type walker struct {
	e       *engine
	ctx     context.Context
	t       *Target
	visit   func(fsaccess.FileInfo) bool
	pattern string // for the not_found line of a literal path
	stopped bool
}

func (w *walker) walk(dir string, comps []string, depth int) {
	if w.stopped || w.e.outOfTime(w.ctx) {
		return
	}
	if len(comps) == 0 {
		return
	}
	c, rest := comps[0], comps[1:]
	switch {
	case c == "**":
		ents, ok := w.descend(dir, depth)
		if !ok {
			return
		}
		if len(rest) > 0 {
			w.walk(dir, rest, depth)
		}
		for _, ent := range ents {
			if w.stopped {
				return
			}
			switch {
			case ent.IsDir():
				w.walk(ent.Path, comps, depth+1)
			case len(rest) == 0:
				w.emit(ent)
			}
		}
	case !hasMeta(c):
		p := fsaccess.Join(w.e.goos, dir, c)
		fi, err := w.e.acc.Lstat(p)
		if err != nil {
			w.lstatFailed(p, err)
			return
		}
		if len(rest) == 0 {
			w.emit(fi)
		} else if fi.IsDir() {
			w.walk(fi.Path, rest, depth)
		}
	default:
		ents, ok := w.readDir(dir)
		if !ok {
			return
		}
		for _, ent := range ents {
			if w.stopped || !matchName(w.e.goos, c, ent.Name) {
				continue
			}
			if len(rest) == 0 {
				w.emit(ent)
			} else if ent.IsDir() {
				w.walk(ent.Path, rest, depth)
			}
		}
	}
}

func (w *walker) emit(fi fsaccess.FileInfo) {
	if !w.visit(fi) {
		w.stopped = true
	}
}

// descend lists dir for a "**" step, refusing to go deeper than maxWalkDepth (bind mounts can loop even
// when symlinks are never followed).
func (w *walker) descend(dir string, depth int) ([]fsaccess.FileInfo, bool) {
	if depth > maxWalkDepth {
		w.e.skip(dir, w.t.Name, ReasonLoop, fmt.Sprintf("deeper than %d levels", maxWalkDepth))
		return nil, false
	}
	return w.readDir(dir)
}

func (w *walker) readDir(dir string) ([]fsaccess.FileInfo, bool) {
	ents, err := w.e.acc.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fsaccess.ErrNotExist) {
			w.e.skip(dir, w.t.Name, reasonFor(err), err.Error())
		}
		return nil, false
	}
	return ents, true
}

// lstatFailed records a literal path that could not be looked up. A missing file is only worth a line
// when the target says its absence matters (a hive, /etc/passwd) or it is raw-NTFS-only; a missing
// ~/.zsh_history of a bash user is normal.
func (w *walker) lstatFailed(p string, err error) {
	literal := w.pattern != "" && !hasMeta(w.pattern)
	switch {
	case !errors.Is(err, fsaccess.ErrNotExist):
		w.e.skip(p, w.t.Name, reasonFor(err), err.Error())
	case literal && w.t.RawNTFS:
		w.e.skip(w.pattern, w.t.Name, ReasonNotFound, "raw NTFS only: the OS cannot open it, needs the ntfs accessor")
	case literal && w.t.ReportMissing:
		w.e.skip(w.pattern, w.t.Name, ReasonNotFound, "")
	}
}

// listEntry is one line of a listing.
type listEntry struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Mode  string `json:"mode"`
	MTime string `json:"mtime,omitempty"`
	ATime string `json:"atime,omitempty"`
	CTime string `json:"ctime,omitempty"`
	BTime string `json:"btime,omitempty"`
	Link  string `json:"link,omitempty"`
	Name  string `json:"name_quoted,omitempty"` // Go-quoted path when it is not clean UTF-8 text
}

// listing writes names and metadata (no content) of a list-only target as JSON lines. Folders are
// listed too: an empty hidden folder in /dev/shm is worth seeing.
func (e *engine) listing(ctx context.Context, t *Target) error {
	if e.outOfTime(ctx) {
		e.skip(strings.Join(t.Paths, " "), t.Name, ReasonTimeCap, "listing not started")
		return nil
	}
	// The walk feeds the zip entry through a pipe, so a listing of a million names is never held whole.
	pr, pw := io.Pipe()
	name := "listings/" + t.Name + ".jsonl"
	count, mtime := 0, e.now()
	// Listings keep their own "seen": a listed file may still be collected by a content target.
	seen := map[string]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc := json.NewEncoder(pw)
		for _, p := range t.Paths {
			root, comps := fsaccess.Components(e.goos, p)
			w := walker{e: e, ctx: ctx, t: t, visit: func(fi fsaccess.FileInfo) bool {
				if seen[fi.Path] {
					return true
				}
				seen[fi.Path] = true
				le := listEntry{Path: fi.Path, Size: fi.Size, Mode: fi.Mode.String(), MTime: rfc(fi.ModTime),
					ATime: rfc(fi.AccessTime), CTime: rfc(fi.ChangeTime), BTime: rfc(fi.BirthTime), Link: fi.Link}
				if badName(fi.Path) != "" {
					le.Name = fmt.Sprintf("%q", fi.Path)
				}
				count++
				return enc.Encode(le) == nil
			}}
			w.walkAll(root, comps, 0)
		}
		pw.Close()
	}()
	res, err := e.pw.add(context.Background(), name, mtime, pr, -1)
	pr.Close()
	<-done
	if err != nil {
		return err
	}
	e.man.Listings = append(e.man.Listings, ListingEntry{Target: t.Name, ArchivePath: name, SHA256: res.SHA256, Entries: count})
	return nil
}

// walkAll is walk for listings: with "**" last it reports folders as well as files.
func (w *walker) walkAll(dir string, comps []string, depth int) {
	n := len(comps)
	if n == 0 || comps[n-1] != "**" {
		w.walk(dir, comps, depth)
		return
	}
	// List targets have a literal prefix (validated), so it is joined rather than matched.
	base := fsaccess.Join(w.e.goos, append([]string{dir}, comps[:n-1]...)...)
	var rec func(string, int)
	rec = func(d string, depth int) {
		if w.stopped || w.e.outOfTime(w.ctx) {
			return
		}
		ents, ok := w.descend(d, depth)
		if !ok {
			return
		}
		for _, ent := range ents {
			w.emit(ent)
			if ent.IsDir() {
				rec(ent.Path, depth+1)
			}
		}
	}
	rec(base, depth)
}
