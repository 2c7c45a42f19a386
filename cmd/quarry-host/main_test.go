package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/collector"
	"github.com/quarry-dfir/quarry/simhost"
	"github.com/quarry-dfir/quarry/upload"
	"github.com/quarry-dfir/quarry/upload/uploadtest"
)

// When the test binary is started with childEnv set it is quarry-host itself: that is how the
// --detach test gets a real detached child. gateEnv names a file the child waits for before it
// starts, so the test can observe the child before it finishes.
const (
	childEnv = "QUARRY_HOST_TEST_CHILD"
	gateEnv  = "QUARRY_HOST_TEST_GATE"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if gate := os.Getenv(gateEnv); gate != "" {
			for {
				if _, err := os.Stat(gate); err == nil {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		main()
	}
	os.Exit(m.Run())
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// linuxRoot generates one simulated Linux host for all tests of the package.
func linuxRoot(t *testing.T) string {
	t.Helper()
	rootOnce.Do(func() {
		rootDir, rootErr = os.MkdirTemp("", "quarry-host-test-root")
		if rootErr == nil {
			_, rootErr = simhost.Generate(rootDir, simhost.Host{Name: "web-03", OS: "linux", OSVersion: "Ubuntu 22.04", Seed: 3, Compromised: true})
		}
	})
	if rootErr != nil {
		t.Fatalf("simhost: %v", rootErr)
	}
	return rootDir
}

// runCLI runs quarry-host in-process and returns its stdout, stderr and exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	code := exitCode(err, &stderr)
	return stdout.String(), stderr.String(), code
}

// readPackage opens a package and returns its manifest, checking the contract's shape on the way.
func readPackage(t *testing.T, path string) (*collector.Manifest, *zip.ReadCloser) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("open package: %v", err)
	}
	t.Cleanup(func() { zr.Close() })
	last := zr.File[len(zr.File)-1]
	if last.Name != "manifest.json" {
		t.Fatalf("last entry is %q, want manifest.json", last.Name)
	}
	var m collector.Manifest
	rc, err := last.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return &m, zr
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestCollectOut(t *testing.T) {
	root := linuxRoot(t)
	pkg := filepath.Join(t.TempDir(), "web-03.zip")
	stdout, stderr, code := runCLI(t, "collect", "--root", root, "--os", "linux", "--out", pkg, "--exclude", "/var/log/syslog*")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var res struct {
		Status, Package, SHA256 string
		Size                    int64
		Files                   int
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if res.Status != "written" || res.Package != pkg || res.SHA256 != fileSHA256(t, pkg) || res.Files == 0 {
		t.Errorf("result = %+v, want written %s with its hash and files", res, pkg)
	}
	m, zr := readPackage(t, pkg)
	if m.Format != "quarry-package/1" || m.Collector.Name != "quarry-host" || m.Collector.Version != Version {
		t.Errorf("manifest format %q collector %+v", m.Format, m.Collector)
	}
	if m.Host.Root == "" || m.Host.Live || m.Host.OS != "linux" {
		t.Errorf("manifest host = %+v, want a non-live linux root", m.Host)
	}
	byPath := map[string]collector.FileEntry{}
	for _, f := range m.Files {
		byPath[f.Path] = f
		if strings.HasPrefix(f.Path, "/var/log/syslog") {
			t.Errorf("%s collected despite --exclude", f.Path)
		}
	}
	auth, ok := byPath["/var/log/auth.log"]
	if !ok {
		t.Fatalf("/var/log/auth.log not in the manifest; files: %d", len(m.Files))
	}
	want := fileSHA256(t, filepath.Join(root, "var/log/auth.log"))
	if auth.SHA256 != want {
		t.Errorf("auth.log sha256 = %s, want %s", auth.SHA256, want)
	}
	if _, err := zr.Open(auth.ArchivePath); err != nil {
		t.Errorf("archive entry %s: %v", auth.ArchivePath, err)
	}
	for _, ls := range m.LiveState {
		if !strings.Contains(ls.Error, "skipped") {
			t.Errorf("live state %s of a --root collection: error %q, want skipped", ls.Name, ls.Error)
		}
	}
}

func TestUploadCommand(t *testing.T) {
	root := linuxRoot(t)
	pkg := filepath.Join(t.TempDir(), "p.zip")
	if _, stderr, code := runCLI(t, "collect", "--root", root, "--os", "linux", "--out", pkg); code != 0 {
		t.Fatalf("collect: exit %d\n%s", code, stderr)
	}
	sum := fileSHA256(t, pkg)

	t.Run("Rejected", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		srv.Reject = "blob store full"
		stdout, stderr, code := runCLI(t, "upload", pkg, "--server", srv.URL, "--token", srv.Token, "--heartbeat", "1ms")
		if code != 1 || !strings.Contains(stderr, "blob store full") || !strings.Contains(stderr, "kept at "+pkg) {
			t.Errorf("exit %d, stderr %q; want 1, the server's reason and where the package is", code, stderr)
		}
		if !strings.Contains(stdout, `"status":"failed"`) {
			t.Errorf("stdout %q, want the failed verdict", stdout)
		}
		if _, err := os.Stat(pkg); err != nil {
			t.Errorf("package removed after a failed upload: %v", err)
		}
	})

	t.Run("OK", func(t *testing.T) {
		// The rejected run left the resume state of another server's upload behind.
		os.Remove(upload.StatePath(pkg))
		srv := uploadtest.New(t, false)
		stdout, stderr, code := runCLI(t, "upload", pkg, "--server", srv.URL, "--token", srv.Token, "--heartbeat", "1ms")
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		var st struct{ Status, SHA256 string }
		if err := json.Unmarshal([]byte(stdout), &st); err != nil || st.Status != "received" || st.SHA256 != sum {
			t.Errorf("stdout %q (%v), want received with sha256 %s", stdout, err, sum)
		}
		if _, err := os.Stat(pkg); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("package still there after the server received it: %v", err)
		}
		hbs := srv.Heartbeats()
		if len(hbs) == 0 || hbs[len(hbs)-1].Phase != upload.PhaseDone {
			t.Errorf("heartbeats = %+v, want the last one done", hbs)
		}
		if strings.Contains(stderr+stdout, srv.Token) {
			t.Error("the token appears in the output")
		}
	})
}

func TestCollectServer(t *testing.T) {
	root := linuxRoot(t)

	t.Run("OK", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		spool := t.TempDir()
		stdout, stderr, code := runCLI(t, "collect", "--root", root, "--os", "linux", "--server", srv.URL,
			"--token", srv.Token, "--spool", spool, "--heartbeat", "1ms")
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		if !strings.Contains(stdout, `"status":"received"`) {
			t.Errorf("stdout %q, want the received verdict", stdout)
		}
		left, _ := os.ReadDir(spool)
		if len(left) != 0 {
			t.Errorf("spool holds %v after the server received the package", left)
		}
		m, _ := readPackage(t, srv.Received())
		if m.AcquisitionID != "42" {
			t.Errorf("manifest acquisition_id = %q, want the server's 42", m.AcquisitionID)
		}
		var phases []string
		for _, hb := range srv.Heartbeats() {
			if len(phases) == 0 || phases[len(phases)-1] != hb.Phase {
				phases = append(phases, hb.Phase)
			}
		}
		if len(phases) < 2 || phases[0] != "starting" || phases[len(phases)-1] != "done" {
			t.Errorf("heartbeat phases = %v, want starting ... done", phases)
		}
	})

	t.Run("InterruptedUploadResumes", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		spool := t.TempDir()
		ctx, interrupt := context.WithCancel(context.Background())
		var once sync.Once
		srv.OnPatch = func() { once.Do(interrupt) }
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"collect", "--root", root, "--os", "linux", "--server", srv.URL,
			"--token", srv.Token, "--spool", spool}, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != 1 || !strings.Contains(stderr.String(), "interrupted; the package is kept at") {
			t.Fatalf("exit %d, stderr %q; want 1 and where the package is", code, stderr.String())
		}
		// An interruption pauses the upload; reporting "failed" would make the server refuse the rest.
		if hbs := srv.Heartbeats(); hbs[len(hbs)-1].Phase != upload.PhaseUploading || !strings.Contains(hbs[len(hbs)-1].Message, "interrupted") {
			t.Errorf("last heartbeat = %+v, want uploading and interrupted", hbs[len(hbs)-1])
		}
		pkgs, _ := filepath.Glob(filepath.Join(spool, "quarry-42-*.zip"))
		if len(pkgs) != 1 {
			t.Fatalf("spool holds %v, want one package", pkgs)
		}
		if _, err := os.Stat(upload.StatePath(pkgs[0])); err != nil {
			t.Fatalf("no resume state next to the package: %v", err)
		}
		if _, stderr, code := runCLI(t, "upload", pkgs[0], "--server", srv.URL, "--token", srv.Token); code != 0 {
			t.Fatalf("upload: exit %d\n%s", code, stderr)
		}
		if srv.Status().State != "received" || srv.Requests(http.MethodPost, upload.UploadsPath) != 1 {
			t.Errorf("state %q after %d creations; want received after 1", srv.Status().State, srv.Requests(http.MethodPost, upload.UploadsPath))
		}
	})

	t.Run("AcquisitionCancelled", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		srv.Closed = true
		_, stderr, code := runCLI(t, "collect", "--root", root, "--os", "linux", "--server", srv.URL,
			"--token", srv.Token, "--spool", t.TempDir(), "--heartbeat", "1ms")
		if code != 1 || !strings.Contains(stderr, "stop collecting") {
			t.Errorf("exit %d, stderr %q; want 1 and the server's reason", code, stderr)
		}
		if srv.Received() != "" {
			t.Error("a package was uploaded for a cancelled acquisition")
		}
	})

	t.Run("ErrUnauthorized", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		spool := t.TempDir()
		_, stderr, code := runCLI(t, "collect", "--root", root, "--os", "linux", "--server", srv.URL,
			"--token", "qu_not-the-token", "--spool", spool)
		if code != 1 || !strings.Contains(stderr, "the token is invalid or expired") {
			t.Errorf("exit %d, stderr %q; want 1 and the token message", code, stderr)
		}
		if strings.Contains(stderr, "qu_not-the-token") {
			t.Error("the token appears in the output")
		}
		// Fails before any work: one preflight, nothing collected, nothing uploaded.
		if n := srv.Requests(http.MethodPost, upload.PreflightPath); n != 1 {
			t.Errorf("%d preflights, want 1", n)
		}
		if left, _ := os.ReadDir(spool); len(left) != 0 {
			t.Errorf("spool holds %v after a refused preflight", left)
		}
	})
}

func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		flags    []string // "CA" stands for the server's certificate file
		wantCode int
		want     string // in stderr
	}{
		{"Untrusted", nil, 1, "certificate"},
		{"CACert", []string{"--ca-cert", "CA"}, 0, ""},
		{"Insecure", []string{"--insecure"}, 0, "WARNING: --insecure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := uploadtest.New(t, true) // a token makes one upload
			ca := filepath.Join(dir, tt.name+".pem")
			if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
				t.Fatal(err)
			}
			for i, f := range tt.flags {
				if f == "CA" {
					tt.flags[i] = ca
				}
			}
			pkg := filepath.Join(dir, tt.name+".zip")
			if err := os.WriteFile(pkg, []byte("package bytes of "+tt.name), 0o600); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"upload", pkg, "--server", srv.URL, "--token", srv.Token}, tt.flags...)
			_, stderr, code := runCLI(t, args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tt.wantCode, tt.want)
			}
		})
	}
}

func TestDetach(t *testing.T) {
	root := linuxRoot(t)
	srv := uploadtest.New(t, false)
	spool := t.TempDir()
	gate := filepath.Join(t.TempDir(), "gate")
	t.Setenv(childEnv, "1")
	t.Setenv(gateEnv, gate)
	t.Setenv(tokenEnv, "")

	stdout, stderr, code := runCLI(t, "collect", "--detach", "--root", root, "--os", "linux", "--server", srv.URL,
		"--token", srv.Token, "--spool", spool, "--heartbeat", "1ms")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var started struct {
		PID    int
		Log    string
		Status string
	}
	if err := json.Unmarshal([]byte(stdout), &started); err != nil || started.PID <= 0 || started.Status != "started" {
		t.Fatalf("stdout %q (%v), want {pid, log, status: started}", stdout, err)
	}
	if strings.Count(stdout, "\n") != 1 {
		t.Errorf("stdout %q, want exactly one line", stdout)
	}
	proc, err := os.FindProcess(started.PID)
	if err != nil {
		t.Fatal(err)
	}
	// The parent has returned after its own preflight while the child still waits at the gate.
	if srv.Received() != "" || srv.Requests(http.MethodPost, upload.PreflightPath) != 1 || len(srv.Heartbeats()) != 0 {
		t.Error("the parent returned after the child did work")
	}
	if filepath.Dir(started.Log) != spool {
		t.Errorf("log %s, want it in the spool folder %s", started.Log, spool)
	}
	checkChildArgs(t, started.PID, srv.Token, "--detach")
	releaseChild(t, proc, gate, started.Log)
	if srv.Received() == "" {
		t.Error("the server received nothing from the child")
	}
}

// checkChildArgs fails the test if the detached child's command line (read where Linux shows
// it) holds any of bad.
func checkChildArgs(t *testing.T, pid int, bad ...string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		if bytes.Contains(cmdline, []byte(b)) {
			t.Errorf("child command line %q carries %q", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), b)
		}
	}
}

// releaseChild opens the gate the detached child waits at, waits for it and returns its log,
// failing the test unless it exited 0 with the server's "received" verdict.
func releaseChild(t *testing.T, proc *os.Process, gate, logPath string) []byte {
	t.Helper()
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	state, err := proc.Wait()
	if err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(logPath)
	if !state.Success() || !bytes.Contains(log, []byte(`"status":"received"`)) {
		t.Fatalf("child exited %v, log:\n%s", state, log)
	}
	return log
}

func TestDetachPreflightFails(t *testing.T) {
	srv := uploadtest.New(t, false)
	spool := t.TempDir()
	t.Setenv(childEnv, "1")
	t.Setenv(tokenEnv, "")
	stdout, stderr, code := runCLI(t, "collect", "--detach", "--root", linuxRoot(t), "--os", "linux", "--server", srv.URL,
		"--token", "qu_expired", "--spool", spool)
	if code != 1 || !strings.HasPrefix(stdout, `{"status":"error","error":"preflight: `) || strings.Count(stdout, "\n") != 1 ||
		!strings.Contains(stdout, "the token is invalid or expired") || !strings.Contains(stderr, "the token is invalid or expired") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, one JSON error line on stdout and the token message on both", code, stdout, stderr)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("spool holds %v: a child was started despite the failed preflight", left)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"NoCommand", nil, "no command"},
		{"UnknownCommand", []string{"colect"}, `unknown command "colect"`},
		{"NoOutput", []string{"collect"}, "give --out FILE or --server URL"},
		{"OutAndServer", []string{"collect", "--out", "x.zip", "--server", "https://q"}, "not both"},
		{"NoToken", []string{"collect", "--server", "https://q"}, "--server needs --token"},
		{"BadScheme", []string{"collect", "--server", "ftp://q", "--token", "qu_x"}, "want an https:// URL"},
		{"BadProfile", []string{"collect", "--profile", "huge", "--out", "x.zip"}, `--profile "huge"`},
		{"BadOS", []string{"collect", "--os", "plan9", "--out", "x.zip"}, `--os "plan9"`},
		{"BadSize", []string{"collect", "--max-file-size", "lots", "--out", "x.zip"}, "--max-file-size"},
		{"UnknownGroup", []string{"collect", "--groups", "logs,nope", "--out", "x.zip"}, `unknown group or target "nope"`},
		{"UnknownFlag", []string{"collect", "--fast"}, "flag provided but not defined"},
		{"ExtraArgument", []string{"collect", "--out", "x.zip", "now"}, `unexpected argument "now"`},
		{"CACertWithOut", []string{"collect", "--out", "x.zip", "--insecure"}, "need --server"},
		{"UploadNoFile", []string{"upload", "--server", "https://q", "--token", "qu_x"}, "exactly one package"},
		{"UploadNoServer", []string{"upload", "p.zip"}, "give --out FILE or --server URL"},
		{"TargetsBadOS", []string{"targets", "--os", "beos"}, `--os "beos"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tokenEnv, "")
			_, stderr, code := runCLI(t, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("quarry-host %v: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.want)
			}
		})
	}
}

func TestVersionAndTargets(t *testing.T) {
	stdout, _, code := runCLI(t, "version")
	if code != 0 || !strings.Contains(stdout, "quarry-host "+Version) || !strings.Contains(stdout, runtime.Version()) ||
		!strings.Contains(stdout, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
	stdout, _, code = runCLI(t, "targets", "--os", "linux")
	if code != 0 {
		t.Fatalf("targets: exit %d", code)
	}
	ts, err := collector.DefaultTargets()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range ts.Names() {
		isLinux := slices.Contains(ts.Get(name).OS, "linux")
		if got := strings.Contains(stdout, "\n"+name+" "); got != isLinux {
			t.Errorf("targets --os linux lists %s: %v, want %v", name, got, isLinux)
		}
	}
	if _, _, code := runCLI(t, "help"); code != 0 {
		t.Errorf("help: exit %d, want 0", code)
	}
}
