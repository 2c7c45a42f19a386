package defendersim

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/simhost"
)

// deviceWith returns a steadily online device of the OS family, compromised or not.
func deviceWith(tb testing.TB, s *Sim, family string, compromised bool) *device {
	tb.Helper()
	for _, d := range s.devices {
		if d.host.OS == family && d.flap == 0 && d.online && d.host.Compromised == compromised {
			return d
		}
	}
	tb.Fatalf("no online %s device with compromised=%v", family, compromised)
	return nil
}

func resultOf(tb testing.TB, s *Sim, c *client, actionID string, index int) []byte {
	tb.Helper()
	r := c.do("GET", "/api/machineactions/"+actionID+"/GetLiveResponseResultDownloadLink(index="+string(rune('0'+index))+")", nil)
	if r.status != 200 {
		tb.Fatalf("result link %d = %d %s", index, r.status, r.body)
	}
	dl := download(tb, s, r.json(tb)["value"].(string))
	if dl.status != 200 {
		tb.Fatalf("download %d = %d", index, dl.status)
	}
	return dl.body
}

func gunzip(tb testing.TB, b []byte) []byte {
	tb.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("GetFile result is not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatalf("gunzip: %v", err)
	}
	return out
}

// TestBashScriptEndToEnd runs a real bash script with QUARRY_ROOT on a simhost tree, then fetches a
// file the script wrote and an artifact of the attack story with GetFile.
func TestBashScriptEndToEnd(t *testing.T) {
	s := MustStart(t, Options{Seed: 3, Machines: 200, TimeScale: 600})
	c := newClient(t, s, App{})
	d := deviceWith(t, s, "linux", true)
	story, _ := s.Story(d.m.ID)
	if story.PersistencePath == "" {
		t.Fatal("compromised device has no persistence artifact")
	}
	script := `set -eu
echo "root=$QUARRY_ROOT os=$QUARRY_SIM_OS argc=$# first=$1 second=$2"
cat "$QUARRY_ROOT/etc/hostname"
test -f "$QUARRY_ROOT` + story.PersistencePath + `"
ls helper.txt
echo collected > "$QUARRY_ROOT/tmp/quarry-out.txt"
echo warn >&2
`
	c.mustUpload("triage.sh", []byte(script))
	c.mustUpload("helper.txt", []byte("x"))
	body := map[string]any{"Commands": []map[string]any{
		{"type": "PutFile", "params": []map[string]string{{"key": "FileName", "value": "helper.txt"}}},
		{"type": "RunScript", "params": []map[string]string{{"key": "ScriptName", "value": "triage.sh"}, {"key": "Args", "value": `--out 'two words'`}}},
		{"type": "GetFile", "params": []map[string]string{{"key": "Path", "value": "/tmp/quarry-out.txt"}}},
		{"type": "GetFile", "params": []map[string]string{{"key": "Path", "value": story.PersistencePath}}},
	}, "Comment": "e2e"}
	id := c.startLR(d.m.ID, body)
	if a := c.waitFinal(id); a["status"] != "Succeeded" {
		t.Fatalf("action = %v", a)
	}
	var res ScriptResult
	if err := json.Unmarshal(resultOf(t, s, c, id, 1), &res); err != nil {
		t.Fatal(err)
	}
	root, err := s.DeviceRoot(d.m.ID)
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(filepath.Dir(root), "work")
	wantOut := "root=" + root + " os=linux argc=2 first=--out second=two words\n"
	if res.ExitCode != 0 || !strings.HasPrefix(res.ScriptOutput, wantOut) || res.ScriptErrors != "warn\n" || res.ScriptName != "triage.sh" {
		t.Errorf("result = %+v, want output starting %q", res, wantOut)
	}
	hostname, _ := os.ReadFile(filepath.Join(root, "etc", "hostname"))
	if !strings.Contains(res.ScriptOutput, string(hostname)) || len(hostname) == 0 {
		t.Errorf("script did not read the device's /etc/hostname %q: %q", hostname, res.ScriptOutput)
	}
	if got := gunzip(t, resultOf(t, s, c, id, 2)); string(got) != "collected\n" {
		t.Errorf("GetFile of the script's output = %q", got)
	}
	want, _ := os.ReadFile(filepath.Join(root, filepath.FromSlash(story.PersistencePath)))
	if got := gunzip(t, resultOf(t, s, c, id, 3)); !bytes.Equal(got, want) || len(want) == 0 {
		t.Errorf("GetFile of %s = %d bytes, want %d", story.PersistencePath, len(got), len(want))
	}
	if _, err := os.Stat(filepath.Join(work, "helper.txt")); err != nil {
		t.Errorf("PutFile did not place the file in the working folder: %v", err)
	}
}

func TestScriptArgsNeedHasParameters(t *testing.T) {
	s := MustStart(t, Options{Machines: 20, TimeScale: 600})
	c := newClient(t, s, App{})
	if r := c.upload("args.sh", []byte(`echo "argc=$#"`), map[string]string{"HasParameters": "false"}); r.status != 200 {
		t.Fatal(r.status)
	}
	id := c.startLR(onlineMachine(t, s, "linux"), runScriptBody("args.sh", "a b c"))
	c.waitFinal(id)
	var res ScriptResult
	json.Unmarshal(resultOf(t, s, c, id, 0), &res)
	if res.ScriptOutput != "argc=0\n" {
		t.Errorf("output = %q, want argc=0 for a script without HasParameters", res.ScriptOutput)
	}
}

func TestScriptKindMustMatchOS(t *testing.T) {
	s := MustStart(t, Options{Machines: 20, TimeScale: 600})
	c := newClient(t, s, App{})
	c.mustUpload("x.sh", []byte("echo hi"))
	c.mustUpload("y.ps1", []byte("# quarry-sim: echo hi"))
	for _, tc := range []struct{ family, script string }{{"windows", "x.sh"}, {"linux", "y.ps1"}} {
		a := c.waitFinal(c.startLR(onlineMachine(t, s, tc.family), runScriptBody(tc.script, "")))
		cmd := a["commands"].([]any)[0].(map[string]any)
		if a["status"] != "Failed" || cmd["commandStatus"] != "Failed" || len(cmd["errors"].([]any)) == 0 {
			t.Errorf("%s on %s: %v %v, want Failed with errors", tc.script, tc.family, a["status"], cmd)
		}
	}
	// A missing library file fails the command, and the following commands stay Created.
	body := map[string]any{"Commands": []map[string]any{
		{"type": "RunScript", "params": []map[string]string{{"key": "ScriptName", "value": "nosuch.sh"}}},
		{"type": "GetFile", "params": []map[string]string{{"key": "Path", "value": "/etc/hostname"}}},
	}}
	a := c.waitFinal(c.startLR(onlineMachine(t, s, "linux"), body))
	cmds := a["commands"].([]any)
	if a["status"] != "Failed" || cmds[0].(map[string]any)["commandStatus"] != "Failed" || cmds[1].(map[string]any)["commandStatus"] != "Created" {
		t.Errorf("missing script: %v", a)
	}
}

func TestGetFileWindows(t *testing.T) {
	s := MustStart(t, Options{Seed: 3, Machines: 200, TimeScale: 600, PlainGetFile: true})
	c := newClient(t, s, App{})
	d := deviceWith(t, s, "windows", true)
	story := simhost.StoryFor(d.host)
	// Windows paths are case-insensitive; the LR downloads folder is the working folder.
	c.mustUpload("tool.txt", []byte("tool"))
	body := map[string]any{"Commands": []map[string]any{
		{"type": "PutFile", "params": []map[string]string{{"key": "FileName", "value": "tool.txt"}}},
		{"type": "GetFile", "params": []map[string]string{{"key": "Path", "value": strings.ToLower(story.PersistencePath)}}},
		{"type": "GetFile", "params": []map[string]string{{"key": "Path", "value": `C:\ProgramData\Microsoft\Windows Defender Advanced Threat Protection\Downloads\tool.txt`}}},
	}}
	id := c.startLR(d.m.ID, body)
	if a := c.waitFinal(id); a["status"] != "Succeeded" {
		t.Fatalf("action = %v", a)
	}
	root, _, _ := s.deviceDirs(d, true)
	rel, _ := devicePath("windows", story.PersistencePath)
	want, _ := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if got := resultOf(t, s, c, id, 1); !bytes.Equal(got, want) || len(want) == 0 {
		t.Errorf("GetFile %s = %q, want %d bytes", story.PersistencePath, got, len(want))
	}
	if got := resultOf(t, s, c, id, 2); string(got) != "tool" {
		t.Errorf("GetFile from the downloads folder = %q", got)
	}
}

func TestDevicePath(t *testing.T) {
	for _, tc := range []struct {
		os, in, want string
	}{
		{"windows", `C:\Windows\System32\config\SAM`, "C/Windows/System32/config/SAM"},
		{"windows", `c:/Users/a/ntuser.dat`, "C/Users/a/ntuser.dat"},
		{"windows", `C:\..\..\..\etc\passwd`, "C/etc/passwd"},
		{"windows", `D:\data\x`, "D/data/x"},
		{"windows", `\\server\share\x`, ""},
		{"windows", `Windows\x`, ""},
		{"windows", `C:`, ""},
		{"linux", "/var/log/auth.log", "var/log/auth.log"},
		{"linux", "/../../../etc/shadow", "etc/shadow"},
		{"linux", "var/log", ""},
		{"linux", "/", ""},
		{"linux", "/etc/\x00x", ""},
		{"macos", "/private/var/log/system.log", "var/log/system.log"},
		{"macos", "/private/tmpx", "private/tmpx"},
	} {
		got, err := devicePath(tc.os, tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("devicePath(%s, %q) = %q, %v; want %q", tc.os, tc.in, got, err, tc.want)
		}
	}
}

func TestReadDeviceFileStaysInRoot(t *testing.T) {
	dir := t.TempDir()
	root, work := filepath.Join(dir, "root"), filepath.Join(dir, "work")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.MkdirAll(work, 0o755)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("outside"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "ok"), []byte("inside"), 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "etc", "link"))
	os.Symlink("../../secret", filepath.Join(root, "etc", "rel"))
	if b, err := readDeviceFile("linux", root, work, "/etc/ok"); err != nil || string(b) != "inside" {
		t.Errorf("read /etc/ok = %q, %v", b, err)
	}
	for _, p := range []string{"/etc/link", "/etc/rel", "/../secret", "/etc"} {
		if b, err := readDeviceFile("linux", root, work, p); err == nil {
			t.Errorf("read %s = %q, want an error", p, b)
		}
	}
	if _, err := readDeviceFile("windows", root, work, `C:\ProgramData\Microsoft\Windows Defender Advanced Threat Protection\Downloads\..\..\..\secret`); err == nil {
		t.Error("escape from the downloads folder succeeded")
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"  a  b ", []string{"a", "b"}, false},
		{`-Out 'C:\Temp\x y' "q r" C:\Temp\z`, []string{"-Out", `C:\Temp\x y`, "q r", `C:\Temp\z`}, false},
		{`--token=abc"def ghi"`, []string{"--token=abcdef ghi"}, false},
		{`''`, []string{""}, false},
		{`'open`, nil, true},
	} {
		got, err := splitArgs(tc.in)
		if (err != nil) != tc.err || (!tc.err && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestStandIn runs a PowerShell script through the stand-in: download with hash check, a detached
// start, a waited run, files and exit codes.
func TestStandIn(t *testing.T) {
	payload := []byte("#!/bin/sh\necho \"host-collector $*\"\necho started > \"$QUARRY_ROOT/collector-ran\"\n")
	sum := sha256.Sum256(payload)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth" && r.Header.Get("Authorization") != "Bearer qe_x" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		w.Write(payload)
	}))
	defer srv.Close()
	s := MustStart(t, Options{Machines: 20, TimeScale: 600})
	c := newClient(t, s, App{})
	script := "# quarry-sim: echo bootstrap {arg1}\n" +
		"# quarry-sim: download " + srv.URL + "/qh sha256 " + hex.EncodeToString(sum[:]) + " to qh.sh\n" +
		"# quarry-sim: run qh.sh collect {args}\n" +
		"# quarry-sim: start qh.sh detached\n" +
		"# quarry-sim: write note.txt root={root}\n" +
		"Write-Host 'the PowerShell body is not run here'\n"
	c.mustUpload("boot.ps1", []byte(script))
	d := deviceWith(t, s, "windows", false)
	id := c.startLR(d.m.ID, runScriptBody("boot.ps1", "-Token 'a b'"))
	if a := c.waitFinal(id); a["status"] != "Succeeded" {
		t.Fatalf("action = %v", a)
	}
	var res ScriptResult
	json.Unmarshal(resultOf(t, s, c, id, 0), &res)
	root, work, _ := s.deviceDirs(d, true)
	if !strings.HasPrefix(res.ScriptOutput, `Transcript started, output file is C:\ProgramData\`) {
		t.Errorf("output %q lacks the transcript banner", res.ScriptOutput)
	}
	for _, want := range []string{"bootstrap -Token\n", "Downloaded qh.sh\n", "host-collector collect -Token a b\n", "Started qh.sh\n"} {
		if !strings.Contains(res.ScriptOutput, want) {
			t.Errorf("output %q lacks %q", res.ScriptOutput, want)
		}
	}
	if res.ExitCode != 0 || res.ScriptErrors != "" {
		t.Errorf("exit %d errors %q", res.ExitCode, res.ScriptErrors)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "note.txt")); string(b) != "root="+root+"\n" {
		t.Errorf("note.txt = %q", b)
	}
	for range 500 { // the detached start writes its marker on its own schedule
		if _, err := os.Stat(filepath.Join(root, "collector-ran")); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(root, "collector-ran")); err != nil {
		t.Errorf("the program never ran with QUARRY_ROOT: %v", err)
	}

	for _, tc := range []struct {
		name, script string
		exit         int
		errs         string
	}{
		{"BadHash", "# quarry-sim: download " + srv.URL + "/qh sha256 " + strings.Repeat("0", 64) + " to qh.sh\n", 1, "SHA-256 mismatch"},
		{"Exit", "# quarry-sim: echo a\n# quarry-sim: exit 7\n# quarry-sim: echo never\n", 7, ""},
		{"Bearer", "# quarry-sim: download " + srv.URL + "/auth sha256 " + hex.EncodeToString(sum[:]) + " to qh.sh bearer qe_x\n# quarry-sim: exit 3\n", 3, ""},
		{"NoBearer", "# quarry-sim: download " + srv.URL + "/auth sha256 " + hex.EncodeToString(sum[:]) + " to qh.sh\n", 1, "HTTP 401"},
		{"BadDownloadTail", "# quarry-sim: download " + srv.URL + "/auth sha256 " + hex.EncodeToString(sum[:]) + " to qh.sh token qe_x\n", 1, "bearer <token>"},
		{"UnknownVerb", "# quarry-sim: format c:\n", 1, "unknown quarry-sim verb"},
		{"EscapingName", "# quarry-sim: write ../x y\n", 1, "plain file name"},
		{"NoSteps", "Write-Host hi\n", 0, "declares no"},
		{"RunFails", "# quarry-sim: run /bin/sh -c 'exit 4'\n", 4, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.mustUpload("case.ps1", []byte(tc.script))
			id := c.startLR(d.m.ID, runScriptBody("case.ps1", ""))
			c.waitFinal(id)
			var res ScriptResult
			json.Unmarshal(resultOf(t, s, c, id, 0), &res)
			if res.ExitCode != tc.exit || !strings.Contains(res.ScriptErrors, tc.errs) || strings.Contains(res.ScriptOutput, "never") {
				t.Errorf("result = %+v, want exit %d and errors containing %q", res, tc.exit, tc.errs)
			}
		})
	}
}

// TestStandInDocInSync keeps doc.go's verb table and example in step with the stand-in.
func TestStandInDocInSync(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	start := strings.Index(doc, "The verbs:")
	end := strings.Index(doc[start:], "\n//\n// <program>")
	if start < 0 || end < 0 {
		t.Fatal("doc.go has no verb table")
	}
	var documented []string
	for _, m := range regexp.MustCompile(`(?m)^//\t(\w+)( .*)?$`).FindAllStringSubmatch(doc[start:start+end], -1) {
		documented = append(documented, m[1])
	}
	var implemented []string
	for v := range standInVerbs {
		implemented = append(implemented, v)
	}
	slices.Sort(documented)
	slices.Sort(implemented)
	if !slices.Equal(documented, implemented) {
		t.Errorf("doc.go documents verbs %v, the stand-in implements %v", documented, implemented)
	}
	var example []string
	for _, line := range strings.Split(doc[strings.Index(doc, "Example:"):], "\n") {
		if l := strings.TrimPrefix(line, "//\t"); strings.HasPrefix(l, "# quarry-sim: ") {
			example = append(example, l)
		}
	}
	steps, err := parseStandIn([]byte(strings.Join(example, "\n")))
	if err != nil || len(steps) != len(example) || len(steps) < 3 {
		t.Errorf("doc.go example parses to %d steps of %d lines, err %v", len(steps), len(example), err)
	}
}

// TestRootOnlyForScriptsThatNameIt: a script that never names QUARRY_ROOT gets no such variable and
// costs no generated tree; the device's tree appears with the first script that names it.
func TestRootOnlyForScriptsThatNameIt(t *testing.T) {
	s := MustStart(t, Options{Seed: 3, Machines: 20, TimeScale: 600})
	c := newClient(t, s, App{})
	d := deviceWith(t, s, "linux", false)
	root := filepath.Join(s.dataDir, "devices", d.m.ID, "root")
	run := func(name, script string) ScriptResult {
		t.Helper()
		c.mustUpload(name, []byte(script))
		id := c.startLR(d.m.ID, runScriptBody(name, ""))
		if a := c.waitFinal(id); a["status"] != "Succeeded" {
			t.Fatalf("action = %v", a)
		}
		var res ScriptResult
		if err := json.Unmarshal(resultOf(t, s, c, id, 0), &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := run("plain.sh", "env | grep -c '^QUARRY_R' || true\n"); res.ScriptOutput != "0\n" {
		t.Errorf("a script that does not name the root saw it: %q", res.ScriptOutput)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("the device tree was generated for a script that cannot see it: %v", err)
	}
	if res := run("named.sh", `test -f "$QUARRY_ROOT/etc/hostname" && echo found`+"\n"); res.ScriptOutput != "found\n" {
		t.Errorf("a script that names the root did not find the device tree: %+v", res)
	}
}
