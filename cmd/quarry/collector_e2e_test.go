package main

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/simhost"
	"github.com/quarry-dfir/quarry/sqldb"
)

var hostBinary struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// quarryHost builds the real collector once per test binary.
func quarryHost(t *testing.T) string {
	t.Helper()
	hostBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "quarry-host-bin")
		if err != nil {
			hostBinary.err = err
			return
		}
		hostBinary.path = filepath.Join(dir, "quarry-host")
		cmd := exec.Command("go", "build", "-o", hostBinary.path, "github.com/quarry-dfir/quarry/cmd/quarry-host")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		hostBinary.out, hostBinary.err = cmd.CombinedOutput()
	})
	if hostBinary.err != nil {
		t.Fatalf("build quarry-host: %v\n%s", hostBinary.err, hostBinary.out)
	}
	return hostBinary.path
}

// TestCollectorEndToEnd: an analyst opens an upload, the real quarry-host collects a
// simulated compromised Linux host (--root) and uploads it, and the project shows verified,
// immutable evidence whose stored bytes hash to what the collector declared.
func TestCollectorEndToEnd(t *testing.T) {
	bin := quarryHost(t)
	ts := startServer(t, sqldb.DialectSQLite)
	root := t.TempDir()
	story, err := simhost.Generate(root, simhost.Host{Name: "web-07", OS: "linux", OSVersion: "Ubuntu 22.04", IP: "10.30.1.7", Seed: 42, Compromised: true})
	if err != nil {
		t.Fatal(err)
	}
	p := ts.do(t, "POST", "/api/v1/projects", ts.analyst, map[string]any{"name": "e2e"})
	pid := int(p.body["id"].(float64))
	up := ts.do(t, "POST", fmt.Sprintf("/api/v1/projects/%d/uploads", pid), ts.analyst, map[string]any{"host_name": "web-07"})
	if up.status != 201 {
		t.Fatalf("create upload = %d %s", up.status, up.raw)
	}
	token := up.body["upload_token"].(string)
	acq := int(up.body["acquisition_id"].(float64))

	spool := t.TempDir()
	cmd := exec.Command(bin, "collect", "--root", root, "--os", "linux", "--server", ts.m.URL(), "--token", token, "--spool", spool)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quarry-host collect: %v\n%s", err, out)
	}
	if strings.Contains(string(out), token) {
		t.Fatal("quarry-host printed the upload token")
	}

	a := ts.do(t, "GET", fmt.Sprintf("/api/v1/acquisitions/%d", acq), ts.viewer, nil)
	if st := a.body["state"]; (st != "received" && st != "processing" && st != "completed") || a.body["evidence_id"] == nil {
		t.Fatalf("acquisition after upload = %s\ncollector said:\n%s", a.raw, out)
	}
	var states []string
	for _, h := range a.body["history"].([]any) {
		states = append(states, h.(map[string]any)["state"].(string))
	}
	if got := strings.Join(states, ">"); !strings.Contains(got, "uploading>received") {
		t.Fatalf("history = %s", got)
	}
	ev := ts.do(t, "GET", fmt.Sprintf("/api/v1/evidence/%d", int(a.body["evidence_id"].(float64))), ts.viewer, nil)
	manifest := ev.body["manifest"].(map[string]any)
	if ev.status != 200 || manifest["files"].(float64) < 10 || manifest["os"] != "linux" || ev.body["hostname"] == "" {
		t.Fatalf("evidence = %s", ev.raw)
	}

	// The stored package is the one the collector hashed, read-only, and holds the story's traces.
	blob := filepath.Join(ts.m.Config.DataDir, "blobs", ev.body["blob_key"].(string))
	f, err := os.Open(blob)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if hex.EncodeToString(h.Sum(nil)) != ev.body["sha256"] {
		t.Fatal("stored package does not hash to the evidence's SHA-256")
	}
	if st, _ := os.Stat(blob); st.Mode().Perm()&0o222 != 0 {
		t.Fatalf("stored package is writable: %v", st.Mode())
	}
	zr, err := zip.OpenReader(blob)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		entries[f.Name] = f
	}
	for _, want := range []string{"manifest.json", "files/var/log/auth.log", "files/var/log/wtmp"} {
		if entries[want] == nil {
			t.Errorf("package lacks %s", want)
		}
	}
	if f := entries["files/var/log/auth.log"]; f != nil {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !strings.Contains(string(b), story.AttackerIP) {
			t.Errorf("collected auth.log lacks the attacker %s", story.AttackerIP)
		}
	}

	// The project page shows the evidence with its hash.
	c := uiClient(t)
	_, page := get(t, c, ts.m.URL()+"/login")
	post(t, c, ts.m.URL()+"/login", map[string][]string{"username": {"alice"}, "password": {ts.adminPW}, "csrf": {csrfOf(t, page)}})
	res, body := get(t, c, fmt.Sprintf("%s/projects/%d", ts.m.URL(), pid))
	if res.StatusCode != http.StatusOK || !strings.Contains(body, ev.body["sha256"].(string)) || !regexp.MustCompile(`received|processing|completed`).MatchString(body) {
		t.Fatalf("project page (%d) lacks the evidence hash or the acquisition state", res.StatusCode)
	}

	// Processing puts the story on the timeline: every failed password of the brute force, from
	// the attacker's address, and the attacker's commands from the shell history.
	deadline := time.Now().Add(2 * time.Minute) // a bound against a hang
	for a = ts.do(t, "GET", fmt.Sprintf("/api/v1/acquisitions/%d", acq), ts.viewer, nil); a.body["state"] != "completed"; {
		if a.body["state"] == "failed" || time.Now().After(deadline) {
			t.Fatalf("acquisition not processed: %s", a.raw)
		}
		time.Sleep(50 * time.Millisecond)
		a = ts.do(t, "GET", fmt.Sprintf("/api/v1/acquisitions/%d", acq), ts.viewer, nil)
	}
	events := func(q string) float64 {
		t.Helper()
		r := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/events?%s", pid, url.Values{"q": {q}}.Encode()), ts.viewer, nil)
		if r.status != 200 {
			t.Fatalf("events %q = %d %s", q, r.status, r.raw)
		}
		return r.body["total"].(float64)
	}
	if n := events(fmt.Sprintf(`source:"auth.log" AND "Failed password" AND %q`, story.AttackerIP)); int(n) != story.Failures {
		t.Errorf("failed passwords from %s on the timeline = %v, the story has %d", story.AttackerIP, n, story.Failures)
	}
	if n := events(fmt.Sprintf(`source:*history AND %q`, story.Commands[0])); n == 0 {
		t.Errorf("the attacker's first command %q is not on the timeline", story.Commands[0])
	}

	// A second collection with the same token is refused: the token opened one upload.
	cmd = exec.Command(bin, "collect", "--root", root, "--os", "linux", "--server", ts.m.URL(), "--token", token, "--spool", t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("a used upload token collected again:\n%s", out)
	}
}
