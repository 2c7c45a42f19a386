package evtxgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/evtx"
	"github.com/quarry-dfir/quarry/evtx/evtxwriter"
	"github.com/quarry-dfir/quarry/evtx/evtxwriter/evtxexporttest"
	"github.com/quarry-dfir/quarry/simhost"
)

var testAnchor = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

var (
	winHost   = simhost.Host{Name: "ws-fin-012.contoso.local", OS: "windows", OSVersion: "Windows 11 23H2", Seed: 3, Compromised: true, Anchor: testAnchor}
	cleanHost = simhost.Host{Name: "srv-file-01", OS: "windows", OSVersion: "Windows Server 2022", Seed: 5}
)

// generate writes h's tree with simhost, then its logs, and returns the root and the story.
func generate(t *testing.T, h simhost.Host) (string, simhost.Story) {
	t.Helper()
	root := t.TempDir()
	s, err := simhost.Generate(root, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHostLogs(root, h, s); err != nil {
		t.Fatal(err)
	}
	return root, s
}

func readLogs(t *testing.T, root string) map[string][]evtxexporttest.Event {
	t.Helper()
	out := map[string][]evtxexporttest.Event{}
	for _, cf := range channelFiles {
		out[cf.channel] = evtxexporttest.Run(t, filepath.Join(root, LogsDir, cf.file))
	}
	return out
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return tm
}

func TestWriteHostLogsStory(t *testing.T) {
	root, s := generate(t, winHost)
	if s.Failures == 0 || s.AddedUser == "" || len(s.Commands) == 0 {
		t.Fatalf("the test host's story is not the one this test expects: %+v", s)
	}
	logs := readLogs(t, root)
	now, start := anchor(winHost)
	for ch, events := range logs {
		if len(events) < 20 {
			t.Errorf("%s: only %d events", ch, len(events))
		}
		var prevID uint64
		var prevT time.Time
		for i, e := range events {
			if e.System.Channel != ch || e.System.Computer != winHost.Name {
				t.Fatalf("%s event %d: channel %q computer %q", ch, i, e.System.Channel, e.System.Computer)
			}
			id, _ := strconv.ParseUint(e.System.EventRecordID, 10, 64)
			tm := parseTime(t, e.System.TimeCreated.SystemTime)
			if i > 0 && (id != prevID+1 || tm.Before(prevT)) {
				t.Fatalf("%s event %d: id %d after %d, time %v after %v", ch, i, id, prevID, tm, prevT)
			}
			if tm.Before(start) || !tm.Before(now) {
				t.Fatalf("%s event %d at %v, outside the host's week %v..%v", ch, i, tm, start, now)
			}
			prevID, prevT = id, tm
		}
	}
	// Our own reader agrees with evtxexport on every log.
	for _, cf := range channelFiles {
		if n := countRecords(t, filepath.Join(root, LogsDir, cf.file)); n != len(logs[cf.channel]) {
			t.Errorf("%s: package evtx reads %d records, evtxexport %d", cf.file, n, len(logs[cf.channel]))
		}
	}
	sec := logs[ChannelSecurity]
	count := func(events []evtxexporttest.Event, id string, match func(e evtxexporttest.Event) bool) []evtxexporttest.Event {
		var out []evtxexporttest.Event
		for _, e := range events {
			if e.System.EventID.Value == id && match(e) {
				out = append(out, e)
			}
		}
		return out
	}
	fromAttacker := func(e evtxexporttest.Event) bool { return e.Get("IpAddress") == s.AttackerIP }

	fails := count(sec, "4625", fromAttacker)
	if len(fails) != s.Failures {
		t.Errorf("%d failures from %s, story says %d", len(fails), s.AttackerIP, s.Failures)
	}
	for _, e := range fails {
		tm := parseTime(t, e.System.TimeCreated.SystemTime)
		if tm.Before(s.BruteForceStart) || !tm.Before(s.FirstSuccess) || e.Get("TargetUserName") != s.User || e.Get("LogonType") != "3" {
			t.Fatalf("failure at %v for %q type %s, want %v..%v for %q type 3", tm, e.Get("TargetUserName"), e.Get("LogonType"),
				s.BruteForceStart, s.FirstSuccess, s.User)
		}
		if e.System.Keywords != "0x8010000000000000" || e.Get("SubStatus") != "0xc000006a" {
			t.Fatalf("failure keywords %s substatus %s", e.System.Keywords, e.Get("SubStatus"))
		}
	}
	logons := count(sec, "4624", fromAttacker)
	if len(logons) != 2 {
		t.Fatalf("%d logons from the attacker, want the NLA logon and the RDP session", len(logons))
	}
	if tm := parseTime(t, logons[0].System.TimeCreated.SystemTime); !tm.Equal(s.FirstSuccess) || logons[0].Get("LogonType") != "3" {
		t.Errorf("first attacker logon at %v type %s, want %v type 3", tm, logons[0].Get("LogonType"), s.FirstSuccess)
	}
	if logons[1].Get("LogonType") != "10" || logons[1].Get("TargetUserName") != s.User {
		t.Errorf("second attacker logon type %s user %s, want 10 %s", logons[1].Get("LogonType"), logons[1].Get("TargetUserName"), s.User)
	}
	if n := len(count(sec, "4720", func(e evtxexporttest.Event) bool { return e.Get("TargetUserName") == s.AddedUser })); n != 1 {
		t.Errorf("%d 4720 for %s, want 1", n, s.AddedUser)
	}
	if n := len(count(sec, "4732", func(e evtxexporttest.Event) bool { return e.Get("TargetUserName") == "Administrators" })); n != 1 {
		t.Errorf("%d 4732 to Administrators, want 1", n)
	}
	task := `\` + filepath.Base(strings.ReplaceAll(s.PersistencePath, `\`, "/"))
	tasks := count(sec, "4698", func(e evtxexporttest.Event) bool { return e.Get("TaskName") == task })
	if len(tasks) != 1 || !strings.Contains(tasks[0].Get("TaskContent"), s.PayloadPath) {
		t.Errorf("4698 for %s: %d, or its content lacks the payload path", task, len(tasks))
	}
	for _, c := range s.Commands {
		if n := len(count(logs[ChannelPowerShell], "4104", func(e evtxexporttest.Event) bool { return e.Get("ScriptBlockText") == c })); n != 1 {
			t.Errorf("%d 4104 for %q, want 1", n, c)
		}
	}
	for _, want := range []string{`"C:\Windows\system32\whoami.exe" /all`, `C:\Windows\system32\net1 localgroup administrators`, `-enc `} {
		if len(count(sec, "4688", func(e evtxexporttest.Event) bool { return strings.Contains(e.Get("CommandLine"), want) })) == 0 {
			t.Errorf("no 4688 with a command line holding %q", want)
		}
	}
	if len(count(sec, "4688", func(e evtxexporttest.Event) bool { return e.Get("NewProcessName") == s.PayloadPath })) != 1 {
		t.Errorf("no 4688 for the payload %s", s.PayloadPath)
	}
	// The decoded stager of "powershell -enc" is logged by the child PowerShell.
	if len(count(logs[ChannelPowerShell], "4104", func(e evtxexporttest.Event) bool {
		return strings.Contains(e.Get("ScriptBlockText"), "DownloadString") && e.System.Level == "3"
	})) != 1 {
		t.Errorf("no warning-level 4104 with the decoded stager")
	}
	// The task's 4698 agrees with the task file's registration time.
	if g, err := newHostGen(mustRoot(t, root), winHost, s); err != nil {
		t.Fatal(err)
	} else if at, ok := g.taskDate(); !ok || parseTime(t, tasks[0].System.TimeCreated.SystemTime).Sub(at) > time.Second {
		t.Errorf("4698 at %s, task registered at %v", tasks[0].System.TimeCreated.SystemTime, at)
	}
	// File times are those of the last event.
	for _, cf := range channelFiles {
		fi, err := os.Stat(filepath.Join(root, LogsDir, cf.file))
		if err != nil {
			t.Fatal(err)
		}
		events := logs[cf.channel]
		if last := parseTime(t, events[len(events)-1].System.TimeCreated.SystemTime); !fi.ModTime().Equal(last) {
			t.Errorf("%s modified %v, last event %v", cf.file, fi.ModTime(), last)
		}
	}
}

func countRecords(t *testing.T, path string) int {
	t.Helper()
	r, err := evtx.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	for rec, err := range r.Records(context.Background()) {
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if _, err := rec.Event(); err != nil {
			t.Fatalf("%s record %d: %v", path, rec.ID, err)
		}
		n++
	}
	return n
}

func mustRoot(t *testing.T, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestWriteHostLogsClean(t *testing.T) {
	root, s := generate(t, cleanHost)
	if s.AttackerIP != "" {
		t.Fatalf("clean host has a story")
	}
	logs := readLogs(t, root)
	for _, e := range logs[ChannelSecurity] {
		if e.System.EventID.Value == "4625" || e.System.EventID.Value == "4720" || e.System.EventID.Value == "4698" {
			t.Fatalf("clean host logs a %s", e.System.EventID.Value)
		}
	}
	if n := len(logs[ChannelSecurity]); n < 1000 || n > 6000 {
		t.Errorf("%d Security events in a week, want a few thousand", n)
	}
}

func TestWriteHostLogsDeterministic(t *testing.T) {
	a, _ := generate(t, winHost)
	b, _ := generate(t, winHost)
	other := winHost
	other.Seed = 4
	c, _ := generate(t, other)
	for _, cf := range channelFiles {
		x, _ := os.ReadFile(filepath.Join(a, LogsDir, cf.file))
		y, _ := os.ReadFile(filepath.Join(b, LogsDir, cf.file))
		z, _ := os.ReadFile(filepath.Join(c, LogsDir, cf.file))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs for the same host", cf.file)
		}
		if bytes.Equal(x, z) {
			t.Errorf("%s is the same for two seeds", cf.file)
		}
	}
}

func TestWriteHostLogsOtherOS(t *testing.T) {
	for _, h := range []simhost.Host{
		{Name: "web-03", OS: "linux", OSVersion: "Ubuntu 22.04", Seed: 7, Compromised: true, Anchor: testAnchor},
		{Name: "mbp-alice", OS: "macos", OSVersion: "macOS 14", Seed: 4, Anchor: testAnchor},
	} {
		root := t.TempDir()
		if err := WriteHostLogs(root, h, simhost.StoryFor(h)); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(root)
		if len(entries) != 0 {
			t.Errorf("%s host: wrote %d entries", h.OS, len(entries))
		}
	}
}

func TestWriteHostLogsWithoutTree(t *testing.T) {
	// Called on an empty root (no profiles, no task file) it still writes consistent logs.
	root := t.TempDir()
	if err := WriteHostLogs(root, winHost, simhost.StoryFor(winHost)); err != nil {
		t.Fatal(err)
	}
	logs := readLogs(t, root)
	if len(logs[ChannelSecurity]) == 0 {
		t.Fatal("no Security events")
	}
}

func TestNoiseOrderAndDeterminism(t *testing.T) {
	m := Machine{Computer: "WS1.corp.local", Short: "WS1", Domain: "CORP", SID: "S-1-5-21-1-2-3", LsassPID: 700, SvcPID: 680}
	users := []Account{{Name: "alice", Domain: "CORP", SID: "S-1-5-21-1-2-3-1001"}}
	for _, ch := range []string{ChannelSecurity, ChannelSystem, ChannelApp, ChannelPowerShell} {
		a := NewNoise(m, users, []string{"alice"}, 42, testAnchor, ch)
		b := NewNoise(m, users, []string{"alice"}, 42, testAnchor, ch)
		var prev time.Time
		ids := map[uint16]int{}
		for i := range 3000 {
			x, y := a.Next(), b.Next()
			if x.Time.Before(prev) || x.Time.Before(testAnchor) {
				t.Fatalf("%s event %d at %v after %v", ch, i, x.Time, prev)
			}
			if x.Channel != ch || x.Time != y.Time || x.EventID != y.EventID {
				t.Fatalf("%s event %d: not deterministic or wrong channel %q", ch, i, x.Channel)
			}
			prev = x.Time
			ids[x.EventID]++
		}
		if len(ids) < 3 {
			t.Errorf("%s noise has only event ids %v", ch, ids)
		}
	}
}

// TestSysmonFieldsMatchCorpus compares the Sysmon builders' field names, in order, with real Sysmon
// events of the Sigma regression corpus (rendered to JSON by a reference parser, keys in document order).
func TestSysmonFieldsMatchCorpus(t *testing.T) {
	var files []string
	filepath.WalkDir("../../../shared/corpus/sigma/regression_data", func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".json") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Skip("Sigma regression corpus not found")
	}
	want := map[[2]int][]string{} // EventID, Version -> field names
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Event struct {
				System struct {
					Provider struct {
						Attrs struct{ Name string } `json:"#attributes"`
					}
					EventID int
					Version int
				}
				EventData json.RawMessage
			}
		}
		if json.NewDecoder(bytes.NewReader(b)).Decode(&doc) != nil || doc.Event.System.Provider.Attrs.Name != Sysmon {
			continue
		}
		k := [2]int{doc.Event.System.EventID, doc.Event.System.Version}
		if _, ok := want[k]; !ok {
			want[k] = keys(t, doc.Event.EventData)
		}
	}
	m := Machine{Computer: "WS1"}
	g := "5AA13A44-0BDA-68FD-7836-000000004002"
	for _, e := range []evtx.Event{
		m.Sysmon1(SysmonProcess{Time: testAnchor, ProcessGUID: g, ParentGUID: g, LogonGUID: g}),
		m.Sysmon3(SysmonNet{Time: testAnchor, ProcessGUID: g}),
		m.Sysmon11(SysmonFile{Time: testAnchor, ProcessGUID: g}),
	} {
		w, ok := want[[2]int{int(e.EventID), int(e.Version)}]
		if !ok {
			t.Logf("no Sysmon %d version %d event in the corpus", e.EventID, e.Version)
			continue
		}
		var got []string
		for _, f := range e.Data {
			got = append(got, f.Name)
		}
		if !slices.Equal(got, w) {
			t.Errorf("Sysmon %d fields\n got %v\nwant %v", e.EventID, got, w)
		}
	}
	if len(want) == 0 {
		t.Skip("no Sysmon event in the corpus")
	}
}

func keys(t *testing.T, raw json.RawMessage) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Every builder's event is one the writer accepts and evtxexport reads back with the same field names.
func TestBuildersReadBack(t *testing.T) {
	m := Machine{Computer: "WS1.corp.local", Short: "WS1", Domain: "CORP", SID: "S-1-5-21-1-2-3", LsassPID: 700, SvcPID: 680}
	u := Account{Name: "alice", Domain: "CORP", SID: "S-1-5-21-1-2-3-1001"}
	at := testAnchor
	events := []evtx.Event{
		m.Logon4624(Logon{Time: at, Target: u, Type: 10, LogonID: 0x1234, IP: "203.0.113.5", Port: 0, Workstation: "WS1"}),
		m.Logon4625(Logon{Time: at, Target: u, Type: 3, IP: "203.0.113.5", Port: 51000, NTLM: true}, SubBadPassword),
		m.Logoff4634(at, u, 0x1234, 10, 4),
		m.Special4672(at, u, 0x1234, AdminPrivileges, 4),
		m.Process4688(Process{Time: at, Subject: u, LogonID: 0x1234, PID: 0x1a2c, Image: `C:\Windows\System32\whoami.exe`,
			CommandLine: `whoami /all`, ParentPID: 0x100, ParentImage: `C:\Windows\explorer.exe`}),
		m.Task4698(at, u, 0x1234, `\T`, "<Task/>", 4),
		m.User4720(at, u, 0x1234, Account{Name: "bob", Domain: "WS1", SID: "S-1-5-21-1-2-3-1002"}, 4),
		m.Group4732(at, u, 0x1234, Account{SID: "S-1-5-21-1-2-3-1002"}, "Administrators", SIDAdmins, 4),
		m.Group4799(at, u, 0x1234, "Administrators", SIDAdmins, 0x44, `C:\Windows\System32\svchost.exe`, 4),
		m.Cleared1102(at, u, 0x1234, 4),
		m.Cleared104(at, u, "Security", 4),
		m.Service7045(at, u, "evil", `C:\evil.exe`, "demand start", "LocalSystem", 4),
		m.Service7036(at, "Windows Update", "running", "wuauserv", 4),
		m.ScriptBlock4104(ScriptBlock{Time: at, User: u, Text: "whoami", ID: "1b2c3d4e-0000-4000-8000-000000000001", PID: 1, TID: 2}),
		m.Sysmon1(SysmonProcess{Time: at, ProcessGUID: "5AA13A44-0BDA-68FD-7836-000000004002", ParentGUID: "5AA13A44-0BDA-68FD-7836-000000004002",
			LogonGUID: "5AA13A44-0BDA-68FD-7836-000000004002", Image: `C:\x.exe`}),
		m.Sysmon3(SysmonNet{Time: at, ProcessGUID: "5AA13A44-0BDA-68FD-7836-000000004002", Protocol: "tcp", Initiated: true,
			SrcIP: "10.0.0.5", DstIP: "203.0.113.9", SrcPort: 50123, DstPort: 443, DstPortName: "https"}),
		m.Sysmon11(SysmonFile{Time: at, ProcessGUID: "5AA13A44-0BDA-68FD-7836-000000004002", Target: `C:\t.txt`, Created: at}),
	}
	path := filepath.Join(t.TempDir(), "b.evtx")
	if err := evtxwriter.WriteFile(path, events); err != nil {
		t.Fatal(err)
	}
	got := evtxexporttest.Run(t, path)
	if len(got) != len(events) {
		t.Fatalf("read %d events, wrote %d", len(got), len(events))
	}
	for i, e := range events {
		g := got[i]
		if g.System.EventID.Value != strconv.Itoa(int(e.EventID)) || g.System.Provider.Name != e.Provider || g.System.Channel != e.Channel {
			t.Errorf("event %d: %s %s %s", i, g.System.EventID.Value, g.System.Provider.Name, g.System.Channel)
		}
		d := g.Data()
		if len(d) != len(e.Data) {
			t.Errorf("event %d (%d): %d fields, want %d", i, e.EventID, len(d), len(e.Data))
			continue
		}
		for j, f := range e.Data {
			if d[j].Name != f.Name {
				t.Errorf("event %d (%d) field %d: %q, want %q", i, e.EventID, j, d[j].Name, f.Name)
			}
		}
	}
	if v := got[0].Get("TargetLogonId"); v != "0x0000000000001234" {
		t.Errorf("4624 TargetLogonId = %q", v)
	}
	if v := got[9].System.Provider.Guid; v != "{"+EventlogGUID+"}" {
		t.Errorf("1102 provider guid = %q", v)
	}
}

func BenchmarkWriteHostLogs(b *testing.B) {
	root := b.TempDir()
	s, err := simhost.Generate(root, winHost)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := WriteHostLogs(root, winHost, s); err != nil {
			b.Fatal(err)
		}
	}
	var events, size int64
	for _, cf := range channelFiles {
		fi, _ := os.Stat(filepath.Join(root, LogsDir, cf.file))
		size += fi.Size()
	}
	_ = events
	b.ReportMetric(float64(size)/1e6, "MB/host")
}
