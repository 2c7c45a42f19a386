//go:build unix

package bootstrap

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/upload/uploadtest"
)

// TestShellScriptRealCollector downloads the real quarry-host, built from ./cmd/quarry-host, and
// checks that it enrols and reports itself started. Quarry here is uploadtest's server behind a
// front that also serves the download.
func TestShellScriptRealCollector(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "quarry-host")
	build := exec.Command("go", "build", "-o", bin, "../cmd/quarry-host")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	content, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	up := uploadtest.New(t, false)
	backend, _ := url.Parse(up.URL)
	proxy := httputil.NewSingleHostReverseProxy(backend)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/v1/collector/download/") {
			proxy.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+up.EnrolToken {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write(content)
	}))
	defer front.Close()

	s := sha256.Sum256(content)
	p := Params{OS: "linux", ServerURL: front.URL, EnrolToken: up.EnrolToken, Builds: allBuilds(nil), Version: "test", ConnectionID: 1}
	for k := range p.Builds {
		p.Builds[k] = hex.EncodeToString(s[:])
	}
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("sim\n"), 0o644)
	r := runScript(t, "sh", renderSh(t, p), env(t, "QUARRY_ROOT="+root), strconv.FormatInt(up.AcquisitionID, 10), "light")
	pid, _ := r.status["pid"].(float64)
	if r.exit != 0 || r.status["status"] != "started" || r.status["acquisition"] != float64(up.AcquisitionID) || pid <= 0 {
		t.Fatalf("exit %d, status %v, stderr %q", r.exit, r.status, r.stderr)
	}
	if got := up.Enrolments(); len(got) != 1 || got[0].AcquisitionID != up.AcquisitionID || got[0].OS != "linux" {
		t.Errorf("enrolments = %+v", got)
	}
	// The detached collector writes its log into TMPDIR, which the test removes: let it finish
	// (a zombie, never reaped in some containers, counts as finished).
	for i := 0; i < 3000 && alive(int(pid)); i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) == 0 || f[0] != "Z"
}
