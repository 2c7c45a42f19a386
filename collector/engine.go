package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry/fsaccess"
)

// Options configure one collection. Zero values take the profile's defaults.
type Options struct {
	Profile                   string // "light", "triage" (default) or "full"
	Groups, Include, Exclude  []string
	OS                        string // "auto" (or ""), "windows", "linux", "darwin"
	Root                      string // collect from this folder (mounted image) instead of the live system
	MaxFileSize, MaxTotalSize int64
	MaxDuration               time.Duration
	AcquisitionID             string
	Accessor                  fsaccess.Accessor                        // optional override (a chained os→ntfs accessor on Windows)
	LiveState                 func(ctx context.Context) map[string]any // optional: written under live/
	Progress                  func(p Progress)                         // called at most every second
	Logger                    *slog.Logger
	Version                   string
	// Clock replaces time.Now, so tests can drive the wall-clock cap without waiting.
	Clock func() time.Time
}

// Progress is reported to Options.Progress. BytesTotal is 0: the collector streams without a first pass,
// so the total is not known in advance.
type Progress struct {
	Phase      string // "starting" (live state) or "collecting", as the upload heartbeat names them
	FilesDone  int
	BytesDone  int64
	BytesTotal int64
}

// Result describes a written package.
type Result struct {
	Path     string
	SHA256   string // of exactly the bytes written
	Size     int64
	Manifest *Manifest
}

// Profile holds a profile's budgets.
type Profile struct {
	MaxFileSize, MaxTotalSize int64
	MaxDuration               time.Duration
	TargetCaps                bool // apply each target's max_size
}

var profiles = map[string]Profile{
	"light":  {MaxFileSize: 10 << 20, MaxTotalSize: 1 << 30, MaxDuration: 20 * time.Minute, TargetCaps: true},
	"triage": {MaxFileSize: 1 << 30, MaxTotalSize: 8 << 30, MaxDuration: time.Hour, TargetCaps: true},
	"full":   {MaxFileSize: 8 << 30, MaxTotalSize: 64 << 30, MaxDuration: 4 * time.Hour},
}

// Profiles returns the budgets of each profile.
func Profiles() map[string]Profile {
	out := make(map[string]Profile, len(profiles))
	for k, v := range profiles {
		out[k] = v
	}
	return out
}

const (
	maxWalkDepth = 24      // ** never descends deeper, so bind-mount loops end
	maxPathBytes = 4096    // longer paths are skipped as hostile names
	maxLogBytes  = 4 << 20 // collection.log is kept in memory up to this size
)

// CollectToFile writes the package to path atomically: a temp file in the same folder, fsync, rename.
func CollectToFile(ctx context.Context, path string, opts Options) (*Result, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("collector: create package: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	res, err := Collect(ctx, f, opts)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return nil, fmt.Errorf("collector: write package %s: %w", path, err)
	}
	res.Path = path
	return res, nil
}

// Collect writes a package to out (the zip stream) and returns its hash and manifest. It fails only when
// the package cannot be written or the options are invalid; every file it could not collect is listed
// under "skipped" instead.
func Collect(ctx context.Context, out io.Writer, opts Options) (*Result, error) {
	e, err := newEngine(opts)
	if err != nil {
		return nil, err
	}
	return e.run(ctx, out)
}

type engine struct {
	opts     Options
	acc      fsaccess.Accessor
	goos     string
	targets  []*Target
	profile  Profile
	maxFile  int64
	maxTotal int64
	now      func() time.Time
	start    time.Time

	pw       *packageWriter
	man      *Manifest
	log      *slog.Logger
	logBuf   *boundedBuffer
	seen     map[string]bool
	timeUp   bool
	lastProg time.Time
}

func newEngine(opts Options) (*engine, error) {
	if opts.Profile == "" {
		opts.Profile = "triage"
	}
	prof, ok := profiles[opts.Profile]
	if !ok {
		return nil, fmt.Errorf("collector: unknown profile %q", opts.Profile)
	}
	e := &engine{opts: opts, profile: prof, now: opts.Clock, seen: map[string]bool{}}
	if e.now == nil {
		e.now = time.Now
	}
	e.maxFile, e.maxTotal = pick(opts.MaxFileSize, prof.MaxFileSize), pick(opts.MaxTotalSize, prof.MaxTotalSize)
	if opts.MaxDuration <= 0 {
		e.opts.MaxDuration = prof.MaxDuration
	}
	goos, err := resolveOS(opts)
	if err != nil {
		return nil, err
	}
	e.goos = goos
	e.acc = opts.Accessor
	if e.acc == nil {
		if e.acc, err = fsaccess.NewOS(goos, opts.Root); err != nil {
			return nil, fmt.Errorf("collector: %w", err)
		}
	} else if e.acc.OS() != goos {
		return nil, fmt.Errorf("collector: accessor reads %s, collection is for %s", e.acc.OS(), goos)
	}
	for _, globs := range [][]string{opts.Include, opts.Exclude} {
		for _, g := range globs {
			if err := validGlob(goos, g); err != nil {
				return nil, fmt.Errorf("collector: glob %q: %w", g, err)
			}
		}
	}
	ts, err := DefaultTargets()
	if err != nil {
		return nil, err
	}
	if e.targets, err = ts.Select(goos, opts.Profile, opts.Groups); err != nil {
		return nil, err
	}
	if len(opts.Include) > 0 {
		e.targets = append(e.targets, &Target{Name: "custom.include", OS: []string{goos}, Paths: opts.Include})
	}
	e.logBuf = &boundedBuffer{max: maxLogBytes}
	e.log = slog.New(slog.NewTextHandler(e.logBuf, nil))
	return e, nil
}

func pick(v, def int64) int64 {
	if v > 0 {
		return v
	}
	return def
}

// resolveOS picks the OS to collect: the live host's, or for --root the one named or the one whose
// layout the folder has.
func resolveOS(opts Options) (string, error) {
	o := opts.OS
	if o == "macos" {
		o = "darwin"
	}
	switch o {
	case "windows", "linux", "darwin":
		return o, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("collector: unknown os %q", opts.OS)
	}
	if opts.Accessor != nil {
		return opts.Accessor.OS(), nil
	}
	if opts.Root == "" {
		return runtime.GOOS, nil
	}
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(opts.Root, p)); return err == nil }
	if ents, err := os.ReadDir(opts.Root); err == nil {
		for _, d := range ents {
			if len(d.Name()) != 1 || !d.IsDir() {
				continue
			}
			sub, _ := os.ReadDir(filepath.Join(opts.Root, d.Name()))
			for _, s := range sub {
				if strings.EqualFold(s.Name(), "windows") {
					return "windows", nil
				}
			}
		}
	}
	if exists("System/Library") || exists("Users") && !exists("home") {
		return "darwin", nil
	}
	return "linux", nil
}

func (e *engine) run(ctx context.Context, out io.Writer) (*Result, error) {
	e.start = e.now()
	e.pw = newPackageWriter(out)
	e.man = &Manifest{
		Format: Format, Collector: collectorInfo(e.opts.Version), AcquisitionID: e.opts.AcquisitionID,
		Profile: e.opts.Profile, Groups: orEmpty(e.opts.Groups), Include: orEmpty(e.opts.Include),
		Exclude: orEmpty(e.opts.Exclude), StartedAt: e.start.UTC(), Log: "collection.log",
		Files: []FileEntry{}, Skipped: []SkipEntry{}, LiveState: []LiveEntry{},
	}
	e.man.Host = hostFacts(e.acc, e.opts.Root)
	e.logf(slog.LevelInfo, "collection started", "profile", e.opts.Profile, "os", e.goos, "root", e.opts.Root,
		"targets", len(e.targets), "max_file", e.maxFile, "max_total", e.maxTotal, "max_duration", e.opts.MaxDuration)

	if e.opts.LiveState != nil {
		if err := e.liveState(ctx); err != nil {
			return nil, err
		}
	}
	// Listings first: they are cheap and /tmp changes fastest.
	for _, t := range e.targets {
		if t.List {
			if err := e.listing(ctx, t); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range e.targets {
		if t.List {
			continue
		}
		if err := e.target(ctx, t); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	end := e.now()
	e.man.EndedAt = end.UTC()
	e.man.Stats.Skipped = len(e.man.Skipped)
	e.man.Stats.DurationMS = end.Sub(e.start).Milliseconds()
	e.logf(slog.LevelInfo, "collection finished", "files", e.man.Stats.Files, "bytes", e.man.Stats.Bytes,
		"skipped", e.man.Stats.Skipped)
	e.progress("collecting", true)
	if _, err := e.pw.addBytes("collection.log", end, e.logBuf.Bytes()); err != nil {
		return nil, err
	}
	mb, err := json.MarshalIndent(e.man, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("collector: manifest: %w", err)
	}
	if _, err := e.pw.addBytes("manifest.json", end, mb); err != nil {
		return nil, err
	}
	sum, size, err := e.pw.close()
	if err != nil {
		return nil, err
	}
	return &Result{SHA256: sum, Size: size, Manifest: e.man}, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func collectorInfo(version string) CollectorInfo {
	ci := CollectorInfo{Name: "quarry-host", Version: version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				ci.Commit = s.Value
			}
		}
		if ci.Version == "" {
			ci.Version = bi.Main.Version
		}
	}
	return ci
}

func (e *engine) logf(level slog.Level, msg string, args ...any) {
	e.log.Log(context.Background(), level, msg, args...)
	if e.opts.Logger != nil {
		e.opts.Logger.Log(context.Background(), level, msg, args...)
	}
}

func (e *engine) progress(phase string, force bool) {
	if e.opts.Progress == nil {
		return
	}
	now := e.now()
	if !force && now.Sub(e.lastProg) < time.Second {
		return
	}
	e.lastProg = now
	e.opts.Progress(Progress{Phase: phase, FilesDone: e.man.Stats.Files, BytesDone: e.man.Stats.Bytes})
}

// outOfTime reports whether the wall-clock budget is spent; from then on everything left is skipped.
func (e *engine) outOfTime(ctx context.Context) bool {
	if !e.timeUp && (ctx.Err() != nil || e.now().Sub(e.start) >= e.opts.MaxDuration) {
		e.timeUp = true
		e.logf(slog.LevelWarn, "time budget spent", "max_duration", e.opts.MaxDuration)
	}
	return e.timeUp
}

func (e *engine) skip(p, target, reason, detail string) {
	e.man.Skipped = append(e.man.Skipped, SkipEntry{Path: p, Target: target, Reason: reason, Detail: detail})
	e.logf(slog.LevelDebug, "skipped", "path", p, "target", target, "reason", reason, "detail", detail)
}

// liveState writes each document of Options.LiveState under live/.
func (e *engine) liveState(ctx context.Context) error {
	e.progress("starting", true)
	docs := e.opts.LiveState(ctx)
	names := make([]string, 0, len(docs))
	for n := range docs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		le := LiveEntry{Name: n, ArchivePath: "live/" + n + ".json"}
		if !groupPattern.MatchString(n) {
			le.ArchivePath, le.Error = "", "invalid name"
			e.man.LiveState = append(e.man.LiveState, le)
			continue
		}
		b, err := json.MarshalIndent(docs[n], "", " ")
		if err != nil {
			le.Error = err.Error()
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		if m, ok := docs[n].(map[string]any); ok {
			if s, ok := m["error"].(string); ok {
				le.Error = s
			}
		}
		res, err := e.pw.addBytes(le.ArchivePath, e.now(), b)
		if err != nil {
			return err
		}
		le.SHA256 = res.SHA256
		e.man.LiveState = append(e.man.LiveState, le)
	}
	return nil
}

// target collects every file of one content target.
func (e *engine) target(ctx context.Context, t *Target) error {
	for _, p := range t.Paths {
		if e.outOfTime(ctx) {
			e.skip(p, t.Name, ReasonTimeCap, "not started: time budget spent")
			continue
		}
		var werr error
		e.expand(ctx, t, p, func(fi fsaccess.FileInfo) bool {
			werr = e.file(ctx, t, fi)
			return werr == nil
		})
		if werr != nil {
			return werr
		}
	}
	return nil
}

// file collects one matched entry or records why not.
func (e *engine) file(ctx context.Context, t *Target, fi fsaccess.FileInfo) error {
	if fi.IsDir() || e.excluded(fi.Path) || !e.first(fi.Path) {
		return nil
	}
	if reason := badName(fi.Path); reason != "" {
		e.skip(fi.Path, t.Name, ReasonName, reason+": "+fmt.Sprintf("%q", fi.Path))
		return nil
	}
	switch {
	case fi.Mode&os.ModeSymlink != 0:
		e.skip(fi.Path, t.Name, ReasonSymlink, "-> "+fi.Link)
		return nil
	case !fi.IsRegular():
		e.skip(fi.Path, t.Name, ReasonSpecialFile, fi.Mode.Type().String())
		return nil
	}
	if e.outOfTime(ctx) {
		e.skip(fi.Path, t.Name, ReasonTimeCap, "")
		return nil
	}
	limit := e.maxFile
	if e.profile.TargetCaps && t.maxSize > 0 && t.maxSize < limit {
		limit = t.maxSize
	}
	if fi.Size > limit {
		e.skip(fi.Path, t.Name, ReasonSizeCap, fmt.Sprintf("size %d > cap %d", fi.Size, limit))
		return nil
	}
	left := e.maxTotal - e.man.Stats.Bytes
	if fi.Size > left {
		e.skip(fi.Path, t.Name, ReasonTotalCap, fmt.Sprintf("size %d > %d left of %d", fi.Size, left, e.maxTotal))
		return nil
	}
	f, err := e.acc.Open(fi.Path)
	if err != nil {
		e.skip(fi.Path, t.Name, reasonFor(err), err.Error())
		return nil
	}
	defer f.Close()
	rel, _ := fsaccess.ArchivePath(e.goos, fi.Path)
	name := "files/" + rel
	if e.pw.names[name] {
		// Two Windows spellings of one file (case) land on one entry; the first is kept.
		return nil
	}
	// A growing log is read up to the per-file cap; the total cap is what matters for the package.
	tctx, cancel := e.timeCtx(ctx)
	res, err := e.pw.add(tctx, name, fi.ModTime, f, min(limit, left))
	cancel()
	if err != nil {
		return err
	}
	fe := FileEntry{
		Path: fi.Path, ArchivePath: name, Target: t.Name, Size: res.Size, SHA256: res.SHA256,
		MTime: rfc(fi.ModTime), ATime: rfc(fi.AccessTime), CTime: rfc(fi.ChangeTime), BTime: rfc(fi.BirthTime),
		Mode: fi.Mode.String(), ReadVia: fi.ReadVia, Compression: res.Compression, Truncated: res.Truncated,
	}
	e.man.Files = append(e.man.Files, fe)
	e.man.Stats.Files++
	e.man.Stats.Bytes += res.Size
	if res.ReadErr != nil {
		e.skip(fi.Path, t.Name, reasonFor(res.ReadErr), fmt.Sprintf("read failed after %d bytes: %v", res.Size, res.ReadErr))
	} else if res.Truncated && e.timeUp {
		e.skip(fi.Path, t.Name, ReasonTimeCap, fmt.Sprintf("truncated at %d bytes", res.Size))
	}
	e.progress("collecting", false)
	return nil
}

// timeCtx is cancelled when the time budget runs out during a copy. The check runs between chunks, so
// it uses the injectable clock rather than a timer.
func (e *engine) timeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancelCause(ctx)
	return &clockCtx{Context: c, e: e, cancel: cancel}, func() { cancel(nil) }
}

type clockCtx struct {
	context.Context
	e      *engine
	cancel context.CancelCauseFunc
}

func (c *clockCtx) Err() error {
	if c.e.outOfTime(c.Context) {
		c.cancel(errStop)
		return errStop
	}
	return c.Context.Err()
}

func rfc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// first reports whether p is seen for the first time (case-insensitively on Windows).
func (e *engine) first(p string) bool {
	k := p
	if e.goos == "windows" {
		k = strings.ToLower(p)
	}
	if e.seen[k] {
		return false
	}
	e.seen[k] = true
	return true
}

func (e *engine) excluded(p string) bool {
	for _, g := range e.opts.Exclude {
		if matchPath(e.goos, g, p) {
			return true
		}
	}
	return false
}

func reasonFor(err error) string {
	switch {
	case errors.Is(err, fsaccess.ErrPermission):
		return ReasonPermission
	case errors.Is(err, fsaccess.ErrLocked):
		return ReasonLocked
	case errors.Is(err, fsaccess.ErrSpecialFile):
		return ReasonSpecialFile
	case errors.Is(err, fsaccess.ErrLoop):
		return ReasonLoop
	case errors.Is(err, fsaccess.ErrNotExist):
		return ReasonNotFound
	}
	return ReasonError
}

// badName says why a path cannot go into the package as is: invalid UTF-8, control characters (newlines
// break line-based tools), bidirectional overrides (they make a name read differently than it is), or
// absurd length. Such files are listed as skipped with the name quoted, so they are never silently lost.
func badName(p string) string {
	switch {
	case len(p) > maxPathBytes:
		return fmt.Sprintf("path longer than %d bytes", maxPathBytes)
	case !utf8.ValidString(p):
		return "invalid UTF-8"
	}
	for _, r := range p {
		switch {
		case r < 0x20 || r == 0x7f:
			return "control character"
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f:
			return "bidirectional control character"
		}
	}
	for _, n := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if len(n) > 255 {
			return "name longer than 255 bytes"
		}
	}
	return ""
}

// boundedBuffer keeps the first max bytes of the log and counts the rest, so a host with a million
// unreadable files cannot blow the memory budget through the log.
type boundedBuffer struct {
	bytes.Buffer
	max     int
	dropped int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.dropped += len(p)
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

func (b *boundedBuffer) Bytes() []byte {
	if b.dropped > 0 {
		fmt.Fprintf(&b.Buffer, "log truncated: %d more bytes dropped\n", b.dropped)
		b.dropped = 0
	}
	return b.Buffer.Bytes()
}
