package collectorbin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var local = runtime.GOOS + "/" + runtime.GOARCH

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// releaseDir writes fake release files (each file's content is its name) and returns the folder.
func releaseDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func localName() string {
	n := "quarry-host_" + runtime.GOOS + "_" + runtime.GOARCH
	if runtime.GOOS == "windows" {
		n += ".exe"
	}
	return n
}

func TestReleaseBuilds(t *testing.T) {
	dir := releaseDir(t, localName(), "quarry-host_linux_arm64", "quarry-host_windows_amd64.exe", "quarry-host_darwin_arm64",
		// Not builds: wrong suffix for the OS, unknown OS, odd names.
		"quarry-host_windows_arm64", "quarry-host_linux_amd64.exe.bak", "quarry-host_plan9_386", "README", "quarry-host_linux_AMD64")
	os.Mkdir(filepath.Join(dir, "quarry-host_linux_riscv64"), 0o755) // a folder, not a file
	s := New(t.TempDir(), dir, "1.0.0", nil)
	s.goTool = "/nonexistent/go" // a release build for this machine must make building unnecessary
	got, err := s.Builds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{local: localName(), "linux/arm64": "quarry-host_linux_arm64", "windows/amd64": "quarry-host_windows_amd64.exe", "darwin/arm64": "quarry-host_darwin_arm64"}
	if len(got) != len(want) {
		t.Errorf("Builds = %v, want the keys of %v", got, want)
	}
	for plat, name := range want {
		b := got[plat]
		if b.Path != filepath.Join(dir, name) || b.SHA256 != hexSum([]byte(name)) || b.Size != int64(len(name)) || b.Platform() != plat {
			t.Errorf("Builds[%s] = %+v", plat, b)
		}
	}
	// A replaced file is hashed again.
	os.WriteFile(filepath.Join(dir, "quarry-host_linux_arm64"), []byte("new content"), 0o755)
	os.Chtimes(filepath.Join(dir, "quarry-host_linux_arm64"), time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	got, _ = s.Builds(context.Background())
	if got["linux/arm64"].SHA256 != hexSum([]byte("new content")) {
		t.Errorf("after replacing the file: %+v", got["linux/arm64"])
	}
}

func TestNoWayToBuild(t *testing.T) {
	dir := releaseDir(t, "quarry-host_plan9_amd64", "quarry-host_windows_amd64.exe")
	if local == "windows/amd64" {
		t.Skip("the release folder would hold this machine's build")
	}
	for _, tc := range []struct {
		name string
		edit func(*Store)
		want string
	}{
		{"NoGo", func(s *Store) { s.goTool = "/nonexistent/go" }, "no go toolchain"},
		{"NoSource", func(s *Store) { s.module = func() (string, error) { return "", errors.New("the source is not here") } }, "the source is not here"},
		{"BadVersion", func(s *Store) { s.version = "1.0 -X main.Commit=evil" }, "cannot be built in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(t.TempDir(), dir, "1.0.0", nil)
			tc.edit(s)
			got, err := s.Builds(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "QUARRY_COLLECTOR_DIR") {
				t.Fatalf("Builds error = %v, want %q and how to provide builds", err, tc.want)
			}
			if _, ok := got["windows/amd64"]; !ok || len(got) != 1 {
				t.Errorf("Builds = %v, want the release build despite the error", got)
			}
		})
	}
}

// shared is the one local build the tests make (go build takes seconds even with a warm cache).
var shared struct {
	once sync.Once
	dir  string
	b    Build
	err  error
}

func localBuild(t *testing.T) (string, Build) {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "collectorbin-test-")
		if shared.err != nil {
			return
		}
		s := New(shared.dir, "", "9.8.7-test", nil)
		// The go tool, through a wrapper that counts builds.
		realGo, err := exec.LookPath("go")
		if err != nil {
			shared.err = err
			return
		}
		count := filepath.Join(shared.dir, "builds.log")
		s.goTool = filepath.Join(shared.dir, "go-wrapper")
		wrapper := fmt.Sprintf("#!/bin/sh\n[ \"$1\" = build ] && echo \"$GOOS\" >> %q\nexec %q \"$@\"\n", count, realGo)
		if shared.err = os.WriteFile(s.goTool, []byte(wrapper), 0o755); shared.err != nil {
			return
		}
		// A caller that gives up (a job that timed out) does not kill the build it started.
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, err = s.Builds(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still being built") {
			shared.err = fmt.Errorf("Builds for a caller that gives up = %v", err)
			return
		}
		defer func() {
			if b, _ := os.ReadFile(count); shared.err == nil && strings.Count(string(b), "\n") != 2 {
				shared.err = fmt.Errorf("go build ran for %q; want once for this platform and once for Windows", b)
			}
		}()
		// Several callers at once: one build, one result.
		var wg sync.WaitGroup
		res := make([]Build, 4)
		errs := make([]error, 4)
		for i := range res {
			wg.Go(func() {
				var m map[string]Build
				m, errs[i] = s.Builds(context.Background())
				res[i] = m[local]
			})
		}
		wg.Wait()
		shared.b, shared.err = res[0], errors.Join(errs...)
		for _, r := range res[1:] {
			if r != res[0] {
				shared.err = errors.New("concurrent callers got different builds")
			}
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.dir, shared.b
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

func TestLocalBuild(t *testing.T) {
	dir, b := localBuild(t)
	out, err := exec.Command(b.Path, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "quarry-host 9.8.7-test") || !strings.Contains(string(out), "platform "+local) {
		t.Fatalf("%s version = %q, %v", b.Path, out, err)
	}
	if sum, _ := fileSHA256(b.Path); sum != b.SHA256 {
		t.Errorf("SHA256 = %s, file has %s", b.SHA256, sum)
	}
	if !strings.HasPrefix(b.Path, dir+string(filepath.Separator)) {
		t.Errorf("build %s is not in %s", b.Path, dir)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*", ".build-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// A new store on the same folder (a restarted server) reuses the build; another version does not.
	fi, _ := os.Stat(b.Path)
	again, err := New(dir, "", "9.8.7-test", nil).Builds(context.Background())
	if err != nil || again[local] != b {
		t.Fatalf("restart: %v, %v; want %+v", again[local], err, b)
	}
	if fi2, _ := os.Stat(b.Path); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("the build was made again")
	}
	if testing.Short() {
		return
	}
	other, err := New(dir, "", "9.8.8-test", nil).Builds(context.Background())
	if err != nil || other[local].Path == b.Path {
		t.Fatalf("another version: %+v, %v", other[local], err)
	}
	if _, err := os.Stat(b.Path); !os.IsNotExist(err) {
		t.Error("the old version's build was kept")
	}
	shared.b = other[local] // the shared build moved
}

func TestHandler(t *testing.T) {
	rel := releaseDir(t, localName(), "quarry-host_windows_amd64.exe", "quarry-host_linux_arm64")
	s := New(t.TempDir(), rel, "1", nil)
	authorize := func(r *http.Request) error {
		if r.Header.Get("Authorization") != "Bearer qe_good" {
			return errors.New("bad token")
		}
		return nil
	}
	srv := httptest.NewServer(s.Handler(authorize))
	defer srv.Close()
	for _, tc := range []struct {
		name, method, path, token string
		status                    int
		code, body                string
	}{
		{"OK", "GET", "/api/v1/collector/download/windows/amd64", "qe_good", 200, "", "quarry-host_windows_amd64.exe"},
		{"Head", "HEAD", "/api/v1/collector/download/linux/arm64", "qe_good", 200, "", ""},
		{"NoToken", "GET", "/api/v1/collector/download/windows/amd64", "", 401, "unauthorized", ""},
		{"BadTokenUnknownPlatform", "GET", "/api/v1/collector/download/plan9/mips", "qe_bad", 401, "unauthorized", ""},
		{"Unknown", "GET", "/api/v1/collector/download/plan9/mips", "qe_good", 404, "not_found", ""},
		{"Post", "POST", "/api/v1/collector/download/windows/amd64", "qe_good", 405, "invalid", ""},
		{"NoArch", "GET", "/api/v1/collector/download/windows", "qe_good", 404, "not_found", ""},
		{"Dots", "GET", "/api/v1/collector/download/../../../etc/passwd", "qe_good", 404, "not_found", ""},
		{"EncodedDots", "GET", "/api/v1/collector/download/..%2F..%2Fetc/passwd", "qe_good", 404, "not_found", ""},
		{"ReleaseName", "GET", "/api/v1/collector/download/quarry-host_linux_arm64/x", "qe_good", 404, "not_found", ""},
		{"ExtraSegment", "GET", "/api/v1/collector/download/linux/arm64/..", "qe_good", 404, "not_found", ""},
		{"NUL", "GET", "/api/v1/collector/download/linux%00/arm64", "qe_good", 404, "not_found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			req.URL.Opaque = tc.path // send the path as written, dots and all
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
			if tc.code != "" {
				var env struct {
					Error struct{ Code, Message string }
				}
				if json.Unmarshal(body, &env) != nil || env.Error.Code != tc.code || env.Error.Message == "" {
					t.Errorf("body = %s, want the envelope with code %s", body, tc.code)
				}
				return
			}
			if string(body) != tc.body {
				t.Errorf("body = %q, want %q", body, tc.body)
			}
			name := strings.TrimPrefix(tc.path, "/api/v1/collector/download/")
			want := "quarry-host_" + strings.Replace(name, "/", "_", 1)
			if strings.HasPrefix(name, "windows/") {
				want += ".exe"
			}
			if resp.Header.Get("X-Quarry-SHA256") != hexSum([]byte(want)) || resp.ContentLength != int64(len(want)) {
				t.Errorf("headers = %v, want the SHA-256 and length of %s", resp.Header, want)
			}
		})
	}
}

// TestFailedBuildRemembered: a failed local build is not retried on every call (each would run the
// go tool), only after retryBuild.
func TestFailedBuildRemembered(t *testing.T) {
	now := time.Now()
	s := New(t.TempDir(), "", "1", nil)
	s.now = func() time.Time { return now }
	s.goTool = "/nonexistent/first/go"
	if _, err := s.Builds(context.Background()); err == nil || !strings.Contains(err.Error(), "first") {
		t.Fatalf("Builds = %v", err)
	}
	s.goTool = "/nonexistent/second/go"
	if _, err := s.Builds(context.Background()); err == nil || !strings.Contains(err.Error(), "first") {
		t.Fatalf("Builds within the retry delay = %v, want the remembered failure", err)
	}
	now = now.Add(retryBuild)
	if _, err := s.Builds(context.Background()); err == nil || !strings.Contains(err.Error(), "second") {
		t.Fatalf("Builds after the retry delay = %v, want a new attempt", err)
	}
}
