// Package collectorbin is where the server gets the quarry-host builds that bootstrap scripts
// download: release files from a folder (QUARRY_COLLECTOR_DIR), and, where that has none for the
// server's own platform or for Windows on amd64, builds it makes from the source it was built
// from (what `quarry demo` and the Defender emulator on this machine need). It also serves them over HTTP.
package collectorbin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Module is the module whose ./cmd/quarry-host the store builds.
const Module = "github.com/quarry-dfir/quarry"

// Build is one quarry-host binary for a platform.
type Build struct {
	OS     string // GOOS: windows, linux, darwin
	Arch   string // GOARCH: amd64, arm64, …
	Path   string
	SHA256 string // lowercase hex
	Size   int64
}

// Platform is the build's key in Builds, "goos/goarch".
func (b Build) Platform() string { return b.OS + "/" + b.Arch }

// releaseName matches a release file: quarry-host_<os>_<arch>, with .exe for Windows only.
var releaseName = regexp.MustCompile(`^quarry-host_(linux|darwin|windows)_([a-z0-9]{1,16})(\.exe)?$`)

// versionRE bounds what goes into -ldflags, which the go tool splits at blanks and quotes.
var versionRE = regexp.MustCompile(`^[A-Za-z0-9._+-]{1,64}$`)

// retryBuild is how long a failed local build is remembered before Builds tries again.
const retryBuild = time.Minute

// Store finds, hashes and (for the local platform) builds quarry-host. It is safe for concurrent use.
type Store struct {
	dir, releaseDir, version string
	log                      *slog.Logger
	goTool                   string // the go command; empty: PATH, then GOROOT/bin

	mu       sync.Mutex             // guards hashes
	hashes   map[string]hashed      // path → its hash while size and mtime stay
	making   sync.Mutex             // one local build at a time
	build    sync.Mutex             // guards the fields below
	local    map[platform]*Build    // the store's own builds, once made
	failed   map[platform]failure   // the last failed build of a platform
	building map[platform]*pending  // builds in progress
	now      func() time.Time       // the clock, for the retry delay
	module   func() (string, error) // finds the module root
}

type failure struct {
	err error
	at  time.Time
}

type hashed struct {
	size    int64
	modTime time.Time
	sum     string
}

// New returns a store that keeps its own builds in dir (e.g. <data>/collector) and takes release
// builds from releaseDir (optional). version goes into local builds as main.Version.
func New(dir, releaseDir, version string, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if version == "" {
		version = "dev"
	}
	s := &Store{dir: dir, releaseDir: releaseDir, version: version, log: logger, hashes: map[string]hashed{}, now: time.Now,
		local: map[platform]*Build{}, failed: map[platform]failure{}, building: map[platform]*pending{}}
	s.module = s.findModule
	return s
}

// Builds returns every build there is, keyed "goos/goarch": the release folder's files and, for this
// machine's platform and for windows/amd64 when the folder has none, the store's own builds (made
// once, then reused across restarts while the version and the source stay the same). When one
// cannot be made, the error says how to provide builds and the map still holds the others.
func (s *Store) Builds(ctx context.Context) (map[string]Build, error) {
	out := map[string]Build{}
	if s.releaseDir != "" {
		ents, err := os.ReadDir(s.releaseDir)
		if err != nil {
			return out, fmt.Errorf("collectorbin: release folder: %w", err)
		}
		for _, e := range ents {
			m := releaseName.FindStringSubmatch(e.Name())
			if m == nil || (m[1] == "windows") != (m[3] == ".exe") || !e.Type().IsRegular() {
				continue
			}
			b, err := s.describe(m[1], m[2], filepath.Join(s.releaseDir, e.Name()))
			if err != nil {
				return out, err
			}
			out[b.Platform()] = b
		}
	}
	// The local platform, and Windows on amd64: the Defender emulator's Windows devices run
	// it (through their stand-in), and so can most real Windows hosts.
	var errs []error
	for _, plat := range []platform{{runtime.GOOS, runtime.GOARCH}, {"windows", "amd64"}} {
		if _, ok := out[plat.os+"/"+plat.arch]; ok {
			continue
		}
		b, err := s.localBuild(ctx, plat)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[b.Platform()] = b
	}
	return out, errors.Join(errs...)
}

// platform is a GOOS and GOARCH the store can build for.
type platform struct{ os, arch string }

// describe hashes a build file, reusing the hash while its size and modification time stay.
func (s *Store) describe(goos, arch, path string) (Build, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Build{}, fmt.Errorf("collectorbin: %w", err)
	}
	s.mu.Lock()
	h, ok := s.hashes[path]
	s.mu.Unlock()
	if !ok || h.size != fi.Size() || !h.modTime.Equal(fi.ModTime()) {
		sum, err := fileSHA256(path)
		if err != nil {
			return Build{}, fmt.Errorf("collectorbin: hash %s: %w", path, err)
		}
		h = hashed{fi.Size(), fi.ModTime(), sum}
		s.mu.Lock()
		s.hashes[path] = h
		s.mu.Unlock()
	}
	return Build{OS: goos, Arch: arch, Path: path, SHA256: h.sum, Size: h.size}, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// howToProvide ends every local build error: the way out that needs no toolchain.
const howToProvide = "put release builds named quarry-host_<os>_<arch> (.exe for windows) into the folder QUARRY_COLLECTOR_DIR names"

// maxBuild bounds one local build.
const maxBuild = 15 * time.Minute

// pending is a local build in progress; done closes when b and err are set.
type pending struct {
	done chan struct{}
	b    Build
	err  error
}

// localBuild returns the store's own build for a platform, building it when needed. The build
// runs on its own, not under ctx: a caller that gives up (a job that timed out on a loaded
// machine) must not kill a build that the next caller would otherwise start all over again.
func (s *Store) localBuild(ctx context.Context, plat platform) (Build, error) {
	s.build.Lock()
	if b := s.local[plat]; b != nil {
		s.build.Unlock()
		return s.describe(b.OS, b.Arch, b.Path)
	}
	if f := s.failed[plat]; f.err != nil && s.now().Sub(f.at) < retryBuild {
		s.build.Unlock()
		return Build{}, f.err
	}
	p := s.building[plat]
	if p == nil {
		p = &pending{done: make(chan struct{})}
		s.building[plat] = p
		go s.run(context.WithoutCancel(ctx), plat, p)
	}
	s.build.Unlock()
	select {
	case <-p.done:
		return p.b, p.err
	case <-ctx.Done():
		return Build{}, fmt.Errorf("collectorbin: quarry-host for %s/%s is still being built: %w", plat.os, plat.arch, ctx.Err())
	}
}

// run makes one local build and publishes its outcome.
func (s *Store) run(ctx context.Context, plat platform, p *pending) {
	ctx, cancel := context.WithTimeout(ctx, maxBuild)
	defer cancel()
	s.making.Lock()
	b, err := s.make(ctx, plat)
	s.making.Unlock()
	s.build.Lock()
	defer s.build.Unlock()
	delete(s.building, plat)
	if err != nil {
		err = fmt.Errorf("collectorbin: no quarry-host for %s/%s: %w; %s", plat.os, plat.arch, err, howToProvide)
		s.failed[plat] = failure{err, s.now()}
	} else {
		s.local[plat] = &b
		delete(s.failed, plat)
	}
	p.b, p.err = b, err
	close(p.done)
}

// make builds ./cmd/quarry-host for a platform into dir, under a name that carries the version and
// a hash of the source, so a rebuilt server never serves an old collector and a restarted one does
// not build again.
func (s *Store) make(ctx context.Context, plat platform) (Build, error) {
	if !versionRE.MatchString(s.version) {
		return Build{}, fmt.Errorf("version %q cannot be built in (want letters, digits and . _ + -)", s.version)
	}
	goTool, err := s.findGo()
	if err != nil {
		return Build{}, err
	}
	root, err := s.module()
	if err != nil {
		return Build{}, err
	}
	src, err := sourceHash(ctx, goTool, root)
	if err != nil {
		return Build{}, err
	}
	key := sha256.Sum256([]byte(s.version + "\x00" + src))
	name := fmt.Sprintf("quarry-host_%s_%s", plat.os, plat.arch)
	if plat.os == "windows" {
		name += ".exe"
	}
	sub := filepath.Join(s.dir, "local-"+hex.EncodeToString(key[:8]))
	path := filepath.Join(sub, name)
	if _, err := os.Stat(path); err == nil {
		s.log.Info("collectorbin: reusing the local quarry-host build", "path", path)
		return s.describe(plat.os, plat.arch, path)
	}
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return Build{}, err
	}
	tmp, err := os.CreateTemp(sub, ".build-*")
	if err != nil {
		return Build{}, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	start := time.Now()
	s.log.Info("collectorbin: building quarry-host (once per version)", "platform", plat.os+"/"+plat.arch, "version", s.version)
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags", "-s -w -X main.Version="+s.version, "-o", tmp.Name(), "./cmd/quarry-host")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOOS="+plat.os, "GOARCH="+plat.arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Build{}, fmt.Errorf("go build: %w: %s", err, bytes.TrimSpace(out))
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return Build{}, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Build{}, err
	}
	s.log.Info("collectorbin: built quarry-host", "path", path, "took", time.Since(start).Round(time.Millisecond))
	// Builds of other versions or sources are of no use any more.
	if olds, _ := filepath.Glob(filepath.Join(s.dir, "local-*")); len(olds) > 0 {
		for _, o := range olds {
			if o != sub {
				os.RemoveAll(o)
			}
		}
	}
	return s.describe(plat.os, plat.arch, path)
}

// findGo finds a go command: the configured one, PATH, then the GOROOT this binary came from.
func (s *Store) findGo() (string, error) {
	if s.goTool != "" {
		p, err := exec.LookPath(s.goTool)
		if err != nil {
			return "", fmt.Errorf("no go toolchain to build it: %w", err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if gr := runtime.GOROOT(); gr != "" {
		p := filepath.Join(gr, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no go toolchain to build it (go is not on PATH)")
}

// findModule finds the source of this module: the go.mod of the working folder, else the folder
// this file was compiled from (recorded when the server was built without -trimpath).
func (s *Store) findModule() (string, error) {
	var candidates []string
	if goTool, err := s.findGo(); err == nil {
		if out, err := exec.Command(goTool, "env", "GOMOD").Output(); err == nil {
			if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
				candidates = append(candidates, filepath.Dir(gomod))
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Dir(filepath.Dir(file)))
	}
	for _, dir := range candidates {
		if isModuleRoot(dir) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("the source of %s is not here (run the server from its checkout to build quarry-host on demand)", Module)
}

func isModuleRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" {
			return f[1] == Module
		}
	}
	return false
}

// sourceHash hashes what a build of ./cmd/quarry-host reads from the module: go.mod, go.sum and the
// Go and embedded files of every package of the module it imports.
func sourceHash(ctx context.Context, goTool, root string) (string, error) {
	cmd := exec.CommandContext(ctx, goTool, "list", "-deps", "-f",
		`{{if .Module}}{{if eq .Module.Path "`+Module+`"}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}`, "./cmd/quarry-host")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list: %w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("go list: %w", err)
	}
	h := sha256.New()
	files := append([]string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}, strings.Split(strings.TrimSpace(string(out)), "\n")...)
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("source hash: %w", err)
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
