//go:build unix

package bootstrap

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCollector stands in for quarry-host: it records its arguments (and the --ca-cert file) where
// FAKE_RECORD says, or in QUARRY_ROOT in the emulator, and prints what `collect --detach` prints.
const fakeCollector = `#!/bin/sh
rec=${FAKE_RECORD:-$QUARRY_ROOT/.fake-collector-argv}
: >"$rec"
prev=
for a in "$@"; do
	printf '%s\n' "$a" >>"$rec"
	if [ "$prev" = --ca-cert ]; then cat "$a" >"$rec.ca"; fi
	prev=$a
done
if [ -n "${FAKE_FAIL:-}" ]; then
	echo "quarry-host: $FAKE_FAIL" >&2
	[ -n "${FAKE_QUIET:-}" ] || printf '{"status":"error","error":"%s"}\n' "$FAKE_FAIL"
	exit 2
fi
echo 'time=now level=INFO msg="a log line"'
printf '{"pid":%s,"log":"/tmp/q.log","status":"started"}\n' "${FAKE_PID:-2147483000}"
`

// quarry is a fake Quarry server for the collector download.
type quarry struct {
	*httptest.Server
	payload   []byte
	status    int // answer with this instead of the file, when set
	downloads atomic.Int32
	mu        sync.Mutex
	agent     string
	path      string
}

func (q *quarry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/api/v1/collector/download/") {
		http.NotFound(w, r)
		return
	}
	q.mu.Lock()
	q.agent, q.path = r.UserAgent(), r.URL.Path
	q.mu.Unlock()
	switch {
	case r.Header.Get("Authorization") != "Bearer "+testToken:
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthorized","message":"missing token"}}`))
	case q.status != 0:
		w.WriteHeader(q.status)
		w.Write([]byte(`{"error":{"code":"forbidden","message":"the enrolment token has expired"}}`))
	default:
		q.downloads.Add(1)
		w.Write(q.payload)
	}
}

func newQuarry(t *testing.T, tlsServer bool) *quarry {
	q := &quarry{payload: []byte(fakeCollector)}
	q.Server = httptest.NewUnstartedServer(q)
	// A script refusing the test certificate is a case under test, not news for the test log.
	q.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsServer {
		q.StartTLS()
	} else {
		q.Start()
	}
	t.Cleanup(q.Close)
	return q
}

// result is one run of a bootstrap script.
type result struct {
	status map[string]any
	stdout string
	stderr string
	exit   int
	argv   []string
	tmp    string // the TMPDIR the script used
	dir    string // its working folder
	rec    string
}

// env is a clean environment for a script: no proxy settings from the machine running the tests.
func env(t *testing.T, extra ...string) []string {
	e := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C"}
	return append(e, extra...)
}

func runScript(t *testing.T, shell string, content []byte, environ []string, args ...string) result {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "boot.sh")
	if err := os.WriteFile(file, content, 0o700); err != nil {
		t.Fatal(err)
	}
	r := result{tmp: filepath.Join(dir, "tmp"), rec: filepath.Join(dir, "argv"), dir: dir}
	os.Mkdir(r.tmp, 0o700)
	cmd := exec.Command(shell, append([]string{file}, args...)...)
	cmd.Env = append(environ, "TMPDIR="+r.tmp, "FAKE_RECORD="+r.rec)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Something the script leaves running must not hold its output open: RunScript would wait.
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("the script exited but left its output open: %v", err)
	} else if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r.stdout, r.stderr = out.String(), errb.String()
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &r.status) != nil {
		t.Fatalf("script printed %q (stderr %q), want one JSON line", r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(r.rec); err == nil {
		r.argv = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	return r
}

func renderSh(t *testing.T, p Params) []byte {
	t.Helper()
	s, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	return s.Content
}

func wantArgv(server string, extra ...string) []string {
	return append([]string{"collect", "--detach", "--server", server, "--enrol-token", testToken, "--acquisition", "42", "--profile", "full"}, extra...)
}

func TestShellScriptStarts(t *testing.T) {
	q := newQuarry(t, false)
	for _, shell := range []string{"sh", "bash"} {
		for _, os := range []string{"linux", "macos"} {
			t.Run(shell+"/"+os, func(t *testing.T) {
				p := testParams(os)
				p.ServerURL, p.Builds = q.URL, allBuilds(q.payload)
				r := runScript(t, shell, renderSh(t, p), env(t), "42", "full")
				if r.exit != 0 || r.status["status"] != "started" || r.status["acquisition"] != 42.0 || r.status["pid"] != 2147483000.0 {
					t.Fatalf("exit %d, status %v, stderr %q", r.exit, r.status, r.stderr)
				}
				if got, want := strings.Join(r.argv, " "), strings.Join(wantArgv(q.URL), " "); got != want {
					t.Errorf("collector argv = %q, want %q", got, want)
				}
				if q.agent != "quarry-bootstrap/1.2.3" {
					t.Errorf("User-Agent = %q", q.agent)
				}
				if left, _ := filepath.Glob(filepath.Join(r.tmp, "*")); len(left) != 0 {
					t.Errorf("the script left %v behind", left)
				}
			})
		}
	}
}

// TestShellScriptRoot: with QUARRY_ROOT (the emulator) the collector reads that folder as the file
// system of the script's OS family, whatever the machine running it is.
func TestShellScriptRoot(t *testing.T) {
	q := newQuarry(t, false)
	for os, family := range map[string]string{"linux": "linux", "macos": "darwin"} {
		p := testParams(os)
		p.ServerURL, p.Builds = q.URL, allBuilds(q.payload)
		r := runScript(t, "bash", renderSh(t, p), env(t, "QUARRY_ROOT=/sim/dev 1/root"), "42", "full")
		if got, want := strings.Join(r.argv, "|"), strings.Join(wantArgv(q.URL, "--root", "/sim/dev 1/root", "--os", family), "|"); got != want {
			t.Errorf("%s: collector argv = %q, want %q", os, got, want)
		}
	}
}

// TestShellScriptProxy: the server's name does not resolve, so only the proxy from the environment
// can deliver the download.
func TestShellScriptProxy(t *testing.T) {
	q := newQuarry(t, false)
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host == "quarry.invalid" {
			proxied.Add(1)
			q.ServeHTTP(w, r)
			return
		}
		http.Error(w, "not via this proxy", http.StatusBadGateway)
	}))
	defer proxy.Close()
	p := testParams("linux")
	p.ServerURL, p.Builds = "http://quarry.invalid", allBuilds(q.payload)
	r := runScript(t, "sh", renderSh(t, p), env(t, "http_proxy="+proxy.URL, "https_proxy="+proxy.URL), "42", "full")
	if r.exit != 0 || r.status["status"] != "started" || proxied.Load() != 1 {
		t.Errorf("exit %d, status %v, %d requests through the proxy", r.exit, r.status, proxied.Load())
	}
}

// TestShellScriptHostileValues renders values full of shell syntax and checks they arrive intact.
func TestShellScriptHostileValues(t *testing.T) {
	q := newQuarry(t, false)
	p := testParams("linux")
	p.Version = `v'1" $(touch pwned) ` + "`touch pwned`; ${HOME} \\"
	p.ServerURL = q.URL + "/q'$(touch%20x);&|<>"
	p.Builds = allBuilds(q.payload)
	r := runScript(t, "sh", renderSh(t, p), env(t), "42", "full")
	if r.exit != 0 {
		t.Fatalf("exit %d, status %v", r.exit, r.status)
	}
	if q.agent != "quarry-bootstrap/"+p.Version {
		t.Errorf("User-Agent = %q, want quarry-bootstrap/%s", q.agent, p.Version)
	}
	if len(r.argv) < 4 || r.argv[3] != p.ServerURL {
		t.Errorf("--server reached the collector as %q, want %q", r.argv, p.ServerURL)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "pwned")); err == nil {
		t.Error("a value was executed")
	}
}

func TestShellScriptErrors(t *testing.T) {
	good := []byte(fakeCollector)
	for _, tc := range []struct {
		name    string
		payload []byte
		status  int
		env     []string
		args    []string
		want    []string
	}{
		{"HashMismatch", []byte(fakeCollector + "# altered\n"), 0, nil, []string{"42", "full"},
			[]string{"does not match", "expected " + sum(good), "got " + sum([]byte(fakeCollector+"# altered\n"))}},
		{"Forbidden", good, http.StatusForbidden, nil, []string{"42", "full"},
			[]string{"HTTP 403", "the enrolment token has expired", "/api/v1/collector/download/"}},
		{"NotFound", good, http.StatusNotFound, nil, []string{"42"}, []string{"HTTP 404", "no build for"}},
		{"BadAcquisition", good, 0, nil, []string{`1"; rm -rf \ /`}, []string{"acquisition id must be a number", `1\"; rm -rf \\ /`}},
		{"NoAcquisition", good, 0, nil, nil, []string{"usage"}},
		{"CollectorFails", good, 0, []string{"FAKE_FAIL=enrol: token expired"}, []string{"42"},
			[]string{`{"status":"error","error":"enrol: token expired"}`}},
		{"CollectorFailsQuietly", good, 0, []string{"FAKE_FAIL=enrol: token expired", "FAKE_QUIET=1"}, []string{"42"},
			[]string{"did not start (exit code 2)", "quarry-host: enrol: token expired"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQuarry(t, false)
			q.payload, q.status = tc.payload, tc.status
			p := testParams("linux")
			p.ServerURL, p.Builds = q.URL, allBuilds(good)
			r := runScript(t, "sh", renderSh(t, p), env(t, tc.env...), tc.args...)
			msg, _ := r.status["error"].(string)
			if r.exit != 1 || r.status["status"] != "error" {
				t.Fatalf("exit %d, status %v; want exit 1 and an error", r.exit, r.status)
			}
			raw := r.stdout
			for _, w := range tc.want {
				if !strings.Contains(msg, w) && !strings.Contains(raw, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(r.tmp, "*")); len(left) != 0 {
				t.Errorf("the script left %v behind", left)
			}
		})
	}
}

// TestShellScriptDownloaders runs the script with only wget, and with neither curl nor wget, on PATH.
func TestShellScriptDownloaders(t *testing.T) {
	q := newQuarry(t, false)
	p := testParams("linux")
	p.ServerURL, p.Builds = q.URL, allBuilds(q.payload)
	script := renderSh(t, p)
	tools := []string{"sh", "uname", "mktemp", "chmod", "rm", "cat", "sed", "tr", "grep", "tail", "head", "cut", "sha256sum", "sleep"}
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"WgetOnly", []string{"wget"}, "started"},
		{"Neither", nil, "neither curl nor wget"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := t.TempDir()
			for _, tool := range append(tools, tc.extra...) {
				path, err := exec.LookPath(tool)
				if err != nil {
					t.Fatalf("%s: %v", tool, err)
				}
				if err := os.Symlink(path, filepath.Join(bin, tool)); err != nil {
					t.Fatal(err)
				}
			}
			r := runScript(t, filepath.Join(bin, "sh"), script, []string{"PATH=" + bin, "HOME=" + t.TempDir()}, "42", "full")
			if !strings.Contains(r.stdout, tc.want) {
				t.Errorf("exit %d, output %q, want %q", r.exit, r.stdout, tc.want)
			}
		})
	}
	q.status = http.StatusForbidden
	bin := t.TempDir()
	for _, tool := range append(tools, "wget") {
		path, _ := exec.LookPath(tool)
		os.Symlink(path, filepath.Join(bin, tool))
	}
	r := runScript(t, filepath.Join(bin, "sh"), script, []string{"PATH=" + bin, "HOME=" + t.TempDir()}, "42")
	if msg, _ := r.status["error"].(string); !strings.Contains(msg, "HTTP 403") || !strings.Contains(msg, "has expired") {
		t.Errorf("wget 403: %v", r.status)
	}
}

// TestShellScriptPrivateCA downloads over TLS from a server whose certificate only the pinned CA
// vouches for, and hands the CA to the collector; the folder goes once the collector has exited.
func TestShellScriptPrivateCA(t *testing.T) {
	q := newQuarry(t, true)
	p := testParams("linux")
	p.ServerURL, p.Builds = q.URL, allBuilds(q.payload)
	p.CACertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: q.Certificate().Raw})
	r := runScript(t, "sh", renderSh(t, p), env(t), "42", "full")
	if r.exit != 0 || r.status["status"] != "started" {
		t.Fatalf("exit %d, status %v", r.exit, r.status)
	}
	if n := len(r.argv); n < 2 || r.argv[n-2] != "--ca-cert" {
		t.Fatalf("collector argv = %q, want --ca-cert", r.argv)
	}
	if ca, _ := os.ReadFile(r.rec + ".ca"); !bytes.Equal(ca, p.CACertPEM) {
		t.Errorf("the collector's CA file = %q", ca)
	}
	// The fake's pid does not exist, so the background waiter removes the folder at once.
	for i := 0; ; i++ {
		left, _ := filepath.Glob(filepath.Join(r.tmp, "*"))
		if len(left) == 0 {
			break
		}
		if i == 1000 {
			t.Fatalf("the folder %v was never removed", left)
		}
		exec.Command("sleep", "0.01").Run()
	}
	// While the collector runs, its CA file stays, and the script still returns at once.
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	r = runScript(t, "sh", renderSh(t, p), env(t, "FAKE_PID="+strconv.Itoa(sleeper.Process.Pid)), "42", "full")
	if r.exit != 0 {
		t.Fatalf("exit %d, status %v", r.exit, r.status)
	}
	if left, _ := filepath.Glob(filepath.Join(r.tmp, "*", "ca.pem")); len(left) != 1 {
		t.Errorf("CA files while the collector runs: %v, want one", left)
	}
	if left, _ := filepath.Glob(filepath.Join(r.tmp, "*", "quarry-host")); len(left) != 0 {
		t.Errorf("the collector's file stayed: %v", left)
	}

	// Without the CA the same server is refused.
	p.CACertPEM = nil
	r = runScript(t, "sh", renderSh(t, p), env(t), "42", "full")
	if msg, _ := r.status["error"].(string); r.exit != 1 || !strings.Contains(msg, "certificate") {
		t.Errorf("untrusted server: exit %d, %v", r.exit, r.status)
	}
}

// TestShellScriptWaitsForQuarry: Quarry is down when the script starts (a restart) and comes back
// seconds later; the download is tried again and the collector starts.
func TestShellScriptWaitsForQuarry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused
	q := &quarry{payload: []byte(fakeCollector)}
	srv := &http.Server{Handler: q}
	t.Cleanup(func() { srv.Close() })
	go func() {
		time.Sleep(3 * time.Second)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return // the port was taken meanwhile; the script then fails and the test says so
		}
		srv.Serve(l)
	}()
	p := testParams("linux")
	p.ServerURL, p.Builds = "http://"+addr, allBuilds(q.payload)
	r := runScript(t, "sh", renderSh(t, p), env(t), "42", "light")
	if r.exit != 0 || r.status["status"] != "started" {
		t.Fatalf("exit %d, status %v, stderr %s", r.exit, r.status, r.stderr)
	}
}

// TestShellScriptRetriesTransientDownloads: a download cut off halfway (Quarry killed while
// sending) or answered 503 (Quarry starting) is tried again, and the collector starts; a 403 is
// not retried.
func TestShellScriptRetriesTransientDownloads(t *testing.T) {
	q := newQuarry(t, false)
	var calls atomic.Int32
	cutOnce := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1: // a body cut off: the length promises more than comes
			w.Header().Set("Content-Length", strconv.Itoa(len(q.payload)))
			w.WriteHeader(http.StatusOK)
			w.Write(q.payload[:len(q.payload)/2])
			panic(http.ErrAbortHandler)
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			q.ServeHTTP(w, r)
		}
	})
	srv := httptest.NewServer(cutOnce)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	p := testParams("linux")
	p.ServerURL, p.Builds = srv.URL, allBuilds(q.payload)
	r := runScript(t, "sh", renderSh(t, p), env(t), "42", "light")
	if r.exit != 0 || r.status["status"] != "started" || calls.Load() != 3 {
		t.Fatalf("exit %d, status %v after %d downloads; stderr %s", r.exit, r.status, calls.Load(), r.stderr)
	}

	var refused atomic.Int32
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refused.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(forbidden.Close)
	p.ServerURL = forbidden.URL
	if r := runScript(t, "sh", renderSh(t, p), env(t), "42"); r.exit != 1 || refused.Load() != 1 {
		t.Fatalf("a 403: exit %d, status %v after %d requests, want one", r.exit, r.status, refused.Load())
	}
}
