package simhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// decodeUTF16LE decodes a file as Windows writes Unicode text: a byte order mark, then UTF-16LE.
func decodeUTF16LE(tb testing.TB, b []byte) string {
	tb.Helper()
	if len(b) < 2 || b[0] != 0xff || b[1] != 0xfe || len(b)%2 != 0 {
		tb.Fatalf("not UTF-16LE with a byte order mark: % x", b[:min(len(b), 4)])
	}
	u := make([]uint16, 0, len(b)/2-1)
	for i := 2; i < len(b); i += 2 {
		u = append(u, uint16(b[i])|uint16(b[i+1])<<8)
	}
	return string(utf16.Decode(u))
}

// parsedTask holds the parts of the Task Scheduler schema the test checks.
type parsedTask struct {
	XMLName      xml.Name
	Version      string `xml:"version,attr"`
	Registration struct {
		Date   string
		Author string
		URI    string
	} `xml:"RegistrationInfo"`
	Triggers struct {
		Logon    *struct{ Enabled bool } `xml:"LogonTrigger"`
		Calendar *struct {
			StartBoundary string
		} `xml:"CalendarTrigger"`
	}
	Principals struct {
		Principal struct {
			ID       string `xml:"id,attr"`
			UserID   string `xml:"UserId"`
			RunLevel string
		}
	}
	Actions struct {
		Exec struct {
			Command   string
			Arguments string
		}
	}
}

func TestWindowsScheduledTasks(t *testing.T) {
	for _, name := range []string{"Windows", "WinServer"} {
		h := testHosts[name]
		root, st := mustGenerate(t, h)
		tasks := filepath.Join(root, "C/Windows/System32/Tasks")
		found := false
		n := 0
		err := filepath.WalkDir(tasks, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			n++
			b, _ := os.ReadFile(p)
			text := decodeUTF16LE(t, b)
			if !strings.HasPrefix(text, `<?xml version="1.0" encoding="UTF-16"?>`+"\r\n") || strings.Contains(strings.ReplaceAll(text, "\r\n", ""), "\n") {
				t.Errorf("%s: want the UTF-16 declaration and CRLF lines", p)
			}
			dec := xml.NewDecoder(strings.NewReader(text))
			dec.CharsetReader = func(label string, r io.Reader) (io.Reader, error) { return r, nil } // already decoded
			var tk parsedTask
			if err := dec.Decode(&tk); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			rel, _ := filepath.Rel(tasks, p)
			if tk.XMLName.Space != "http://schemas.microsoft.com/windows/2004/02/mit/task" || tk.XMLName.Local != "Task" || tk.Version != "1.2" {
				t.Errorf("%s: root element %v version %q", rel, tk.XMLName, tk.Version)
			}
			if want := `\` + strings.ReplaceAll(filepath.ToSlash(rel), "/", `\`); tk.Registration.URI != want {
				t.Errorf("%s: URI %q, want %q", rel, tk.Registration.URI, want)
			}
			if tk.Actions.Exec.Command == "" || (tk.Triggers.Logon == nil && tk.Triggers.Calendar == nil) {
				t.Errorf("%s: task without action or trigger", rel)
			}
			if st.PersistencePath != "" && `C:\Windows\System32\Tasks\`+strings.ReplaceAll(filepath.ToSlash(rel), "/", `\`) == st.PersistencePath {
				found = true
				if tk.Actions.Exec.Command != st.PayloadPath || tk.Triggers.Logon == nil || tk.Principals.Principal.UserID != "S-1-5-18" {
					t.Errorf("malicious task runs %q as %q, want the payload %q at logon as SYSTEM", tk.Actions.Exec.Command, tk.Principals.Principal.UserID, st.PayloadPath)
				}
				at, err := time.Parse("2006-01-02T15:04:05", tk.Registration.Date)
				info, _ := os.Stat(p)
				if err != nil || !info.ModTime().Equal(at) || at.Before(st.FirstSuccess) || at.After(st.LastActivity) {
					t.Errorf("malicious task date %q (mtime %v) not within the attack %v..%v", tk.Registration.Date, info.ModTime(), st.FirstSuccess, st.LastActivity)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 10 {
			t.Errorf("%s: only %d tasks", name, n)
		}
		if h.Compromised != found {
			t.Errorf("%s: compromised=%t but malicious task found=%t", name, h.Compromised, found)
		}
		if fi, err := os.Stat(filepath.Join(root, "C/Windows/System32/winevt/Logs")); err != nil || !fi.IsDir() {
			t.Errorf("%s: winevt/Logs folder missing: %v", name, err)
		}
	}
}

func TestWindowsStoryAgrees(t *testing.T) {
	h := testHosts["Windows"]
	root, st := mustGenerate(t, h)
	histPath := filepath.Join(root, "C/Users", st.User, "AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt")
	b, err := os.ReadFile(histPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if strings.Count(text, "\n") != strings.Count(text, "\r\n") || !strings.HasSuffix(text, "\r\n") {
		t.Errorf("PSReadLine history must use CRLF line ends")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\r\n"), "\r\n")
	if got := lines[len(lines)-len(st.Commands):]; strings.Join(got, "\n") != strings.Join(st.Commands, "\n") {
		t.Errorf("history ends with %q, want the story's commands %q", got, st.Commands)
	}
	var sawEnc, sawAdd, sawTask bool
	for _, c := range st.Commands {
		if enc, ok := strings.CutPrefix(c, "powershell -nop -w hidden -enc "); ok {
			raw, err := base64.StdEncoding.DecodeString(enc)
			if err != nil || len(raw)%2 != 0 {
				t.Fatalf("encoded command is not base64 UTF-16: %v", err)
			}
			u := make([]uint16, len(raw)/2)
			for i := range u {
				u[i] = uint16(raw[2*i]) | uint16(raw[2*i+1])<<8
			}
			script := string(utf16.Decode(u))
			sawEnc = strings.Contains(script, "DownloadString('http://"+st.C2+"/")
		}
		sawAdd = sawAdd || c == "net localgroup administrators "+st.AddedUser+" /add"
		sawTask = sawTask || strings.HasPrefix(c, "schtasks /create") && strings.Contains(c, st.PayloadPath)
	}
	if !sawEnc || !sawAdd || !sawTask {
		t.Errorf("story commands lack the encoded stager (%t), the added admin (%t) or the task (%t)", sawEnc, sawAdd, sawTask)
	}
	pay, err := os.ReadFile(filepath.Join(root, winRel(st.PayloadPath)))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(pay); hex.EncodeToString(sum[:]) != st.PayloadSHA256 || !bytes.HasPrefix(pay, []byte("MZ")) {
		t.Errorf("payload hash or MZ header wrong")
	}
	if !st.BruteForceStart.Before(st.FirstSuccess) || st.Failures < 20 || st.Access != "rdp-bruteforce" {
		t.Errorf("story brute force fields inconsistent: %+v", st)
	}
}

func TestSetupAPILog(t *testing.T) {
	root, _ := mustGenerate(t, testHosts["Windows"])
	b, err := os.ReadFile(filepath.Join(root, "C/Windows/INF/setupapi.dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n")
	if lines[0] != "[Device Install Log]" || !strings.Contains(string(b), "\r\n[BeginLog]\r\n") {
		t.Fatalf("missing header")
	}
	start := regexp.MustCompile(`^>>>  Section start (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3})$`)
	end := regexp.MustCompile(`^<<<  Section end \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}$`)
	body := regexp.MustCompile(`^     (ump|ndv|dvi): .+$`)
	var opened, usb int
	var prev time.Time
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, ">>>  [Device Install (Hardware initiated) - "):
			opened++
			usb += strings.Count(l, `USBSTOR\Disk&Ven_`)
			if !start.MatchString(lines[i+1]) {
				t.Errorf("line %d: section title not followed by its start time", i+2)
			}
		case start.MatchString(l):
			at, _ := time.Parse("2006/01/02 15:04:05.000", start.FindStringSubmatch(l)[1])
			if at.Before(prev) {
				t.Errorf("line %d: sections out of time order", i+1)
			}
			prev = at
		case end.MatchString(l), l == "<<<  [Exit status: SUCCESS]", l == "", body.MatchString(l):
		case i < 9:
		default:
			t.Errorf("line %d: unexpected %q", i+1, l)
		}
	}
	if opened < 10 || usb == 0 {
		t.Errorf("%d sections, %d USB storage devices", opened, usb)
	}
}

func TestMacArtifacts(t *testing.T) {
	zsh := regexp.MustCompile(`^: (\d{10}):\d+;(.+)$`)
	for _, name := range []string{"Mac", "MacClean"} {
		h := testHosts[name]
		root, st := mustGenerate(t, h)
		users, _ := filepath.Glob(filepath.Join(root, "Users/*/.zsh_history"))
		if len(users) != 1 {
			t.Fatalf("%s: %d zsh histories", name, len(users))
		}
		b, _ := os.ReadFile(users[0])
		var cmds []string
		var prev int64
		for i, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			m := zsh.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s:%d: not zsh extended history: %q", name, i+1, l)
			}
			sec, _ := strconv.ParseInt(m[1], 10, 64)
			if sec < prev || time.Unix(sec, 0).After(h.anchor()) {
				t.Errorf("%s:%d: time %d out of order or after now", name, i+1, sec)
			}
			prev = sec
			cmds = append(cmds, m[2])
		}
		checkLines(t, root, "var/log/system.log", `^[A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d `+h.Name+` [A-Za-z][\w.-]*(\[\d+\])?: .+$`)
		checkLines(t, root, "var/log/install.log", `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d `+h.Name+` [A-Za-z]+\[\d+\]: .+$`)
		if !h.Compromised {
			continue
		}
		if !strings.Contains(strings.Join(cmds, "\n"), strings.Join(st.Commands, "\n")) {
			t.Errorf("zsh history lacks the pasted commands in order")
		}
		plist, err := os.ReadFile(filepath.Join(root, strings.TrimPrefix(st.PersistencePath, "/")))
		if err != nil {
			t.Fatal(err)
		}
		var pl struct {
			Dict struct {
				Inner []byte `xml:",innerxml"`
			} `xml:"dict"`
		}
		if err := xml.Unmarshal(plist, &pl); err != nil || !bytes.Contains(pl.Dict.Inner, []byte("<string>"+st.PayloadPath+"</string>")) {
			t.Errorf("LaunchAgent does not parse or does not run the payload: %v", err)
		}
		if !strings.HasPrefix(st.PersistencePath, "/Users/"+st.User+"/Library/LaunchAgents/") {
			t.Errorf("persistence %s is not a LaunchAgent of %s", st.PersistencePath, st.User)
		}
		pay, _ := os.ReadFile(filepath.Join(root, strings.TrimPrefix(st.PayloadPath, "/")))
		if sum := sha256.Sum256(pay); hex.EncodeToString(sum[:]) != st.PayloadSHA256 {
			t.Errorf("payload hash differs from the story")
		}
	}
}
