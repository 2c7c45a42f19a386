package parse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
)

func TestInferYear(t *testing.T) {
	utc := time.UTC
	tests := []struct {
		name          string
		mon           time.Month
		day, hh       int
		ref           time.Time
		loc           *time.Location
		want          time.Time
		wantImpossble bool
	}{
		{"same year", time.March, 1, 10, time.Date(2024, 3, 2, 0, 0, 0, 0, utc), utc, time.Date(2024, 3, 1, 10, 0, 0, 0, utc), false},
		{"December line, January file: previous year", time.December, 31, 23, time.Date(2024, 1, 1, 0, 30, 0, 0, utc), utc, time.Date(2023, 12, 31, 23, 0, 0, 0, utc), false},
		{"January line, January file", time.January, 1, 0, time.Date(2024, 1, 1, 0, 30, 0, 0, utc), utc, time.Date(2024, 1, 1, 0, 0, 0, 0, utc), false},
		{"line slightly after the file time (clock skew) stays in the year", time.March, 2, 12, time.Date(2024, 3, 2, 0, 0, 0, 0, utc), utc, time.Date(2024, 3, 2, 12, 0, 0, 0, utc), false},
		{"New Year's line just after a Dec 31 file time: next year", time.January, 1, 0, time.Date(2023, 12, 31, 23, 50, 0, 0, utc), utc, time.Date(2024, 1, 1, 0, 0, 0, 0, utc), false},
		{"line months after the file time: previous year", time.June, 1, 0, time.Date(2024, 3, 2, 0, 0, 0, 0, utc), utc, time.Date(2023, 6, 1, 0, 0, 0, 0, utc), false},
		{"leap day in a leap year", time.February, 29, 1, time.Date(2024, 3, 2, 0, 0, 0, 0, utc), utc, time.Date(2024, 2, 29, 1, 0, 0, 0, utc), false},
		{"leap day, file in a common year: last leap year", time.February, 29, 1, time.Date(2025, 3, 2, 0, 0, 0, 0, utc), utc, time.Date(2024, 2, 29, 1, 0, 0, 0, utc), false},
		{"leap day before 2100 skips it", time.February, 29, 1, time.Date(2101, 1, 1, 0, 0, 0, 0, utc), utc, time.Date(2096, 2, 29, 1, 0, 0, 0, utc), false},
		{"local time zone: year from the local date of the file time", time.December, 31, 23, time.Date(2023, 12, 31, 22, 30, 0, 0, utc), berlin, time.Date(2023, 12, 31, 23, 0, 0, 0, berlin), false},
		{"impossible date", time.April, 31, 0, time.Date(2024, 5, 1, 0, 0, 0, 0, utc), utc, time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := inferYear(tc.mon, tc.day, tc.hh, 0, 0, 0, tc.loc, tc.ref)
			if ok == tc.wantImpossble {
				t.Fatalf("inferYear ok = %v, want %v", ok, !tc.wantImpossble)
			}
			if ok && !got.Equal(tc.want) {
				t.Errorf("inferYear(%v %d %02d:00, ref %v) = %v, want %v", tc.mon, tc.day, tc.hh, tc.ref, got, tc.want)
			}
		})
	}
}

func TestParseSyslogLine(t *testing.T) {
	in := Input{ModTime: time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC)}
	tests := []struct {
		line            string
		ok              bool
		host, prog, msg string
		pid             int64
		ts              string
	}{
		{"Mar  1 10:00:01 web1 sshd[812]: hi there", true, "web1", "sshd", "hi there", 812, "2024-03-01T10:00:01Z"},
		{"Mar 01 10:00:01 web1 CRON[1]: (root) CMD (x)", true, "web1", "CRON", "(root) CMD (x)", 1, "2024-03-01T10:00:01Z"},
		{"Mar  1 10:00:01 web1 kernel: boot", true, "web1", "kernel", "boot", -1, "2024-03-01T10:00:01Z"},
		{"Mar  1 10:00:01 kernel: boot", true, "", "kernel", "boot", -1, "2024-03-01T10:00:01Z"},
		{"Mar  1 10:00:01 web1 no tag here", true, "web1", "", "no tag here", -1, "2024-03-01T10:00:01Z"},
		{"Mar  1 10:00:01.250 web1 p[2]: frac", true, "web1", "p", "frac", 2, "2024-03-01T10:00:01.25Z"},
		{"2024-03-01T10:00:00.123456+02:00 web1 prog[9]: iso", true, "web1", "prog", "iso", 9, "2024-03-01T08:00:00.123456Z"},
		{"<13>1 2024-03-01T10:00:00Z h a 42 - - m", true, "h", "a", "m", 42, "2024-03-01T10:00:00Z"},
		{"<13>1 2024-03-01T10:00:00Z - - - - -", true, "", "", "", -1, "2024-03-01T10:00:00Z"},
		{"Foo  1 10:00:01 web1 x: y", false, "", "", "", 0, ""},
		{"Mar 32 10:00:01 web1 x: y", false, "", "", "", 0, ""},
		{"Mar  1 25:00:01 web1 x: y", false, "", "", "", 0, ""},
		{"Feb 30 10:00:01 web1 x: y", false, "", "", "", 0, ""},
		{"<999>Mar  1 10:00:01 web1 x: y", false, "", "", "", 0, ""},
		{"Mar  1 10:00:01X", false, "", "", "", 0, ""},
		{"", false, "", "", "", 0, ""},
	}
	for _, tc := range tests {
		sl, ok := parseSyslogLine(tc.line, in)
		if ok != tc.ok {
			t.Errorf("parseSyslogLine(%q) ok = %v, want %v", tc.line, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if sl.host != tc.host || sl.prog != tc.prog || sl.msg != tc.msg || sl.pid != tc.pid || sl.ts.UTC().Format(time.RFC3339Nano) != tc.ts {
			t.Errorf("parseSyslogLine(%q) = host %q prog %q pid %d msg %q ts %s, want %q %q %d %q %s", tc.line,
				sl.host, sl.prog, sl.pid, sl.msg, sl.ts.UTC().Format(time.RFC3339Nano), tc.host, tc.prog, tc.pid, tc.msg, tc.ts)
		}
	}
}

// utmpdumpLine is one record as util-linux's utmpdump prints it:
// [type] [pid] [id] [user] [line] [host] [addr] [time]
var reUtmpdump = regexp.MustCompile(`^\[(\d+)\] \[(\d+)\] \[(.{4})\] \[(.*?) *\] \[(.*?) *\] \[(.*?) *\] \[(.*?) *\] \[(.*?)\]$`)

// TestUTMPAgainstUtmpdump compares every event from the little-endian 384-byte corpus files (the
// layout utmpdump reads on this machine) with utmpdump's dump of the same record.
func TestUTMPAgainstUtmpdump(t *testing.T) {
	if _, err := exec.LookPath("utmpdump"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("utmpdump (util-linux) not installed")
		}
		t.Skip("utmpdump not installed")
	}
	for _, name := range []string{"utmp", "utmp_x86_64", "wtmp.1", "utmp_corrupted"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(corpusDir, "utmp", name)
			needCorpus(t, path)
			out, err := exec.Command("utmpdump", path).Output()
			if err != nil {
				t.Fatalf("utmpdump %s: %v", path, err)
			}
			var dump [][]string
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if m := reUtmpdump.FindStringSubmatch(sc.Text()); m != nil {
					dump = append(dump, m)
				}
			}
			data, _ := os.ReadFile(path)
			evs, _ := runParser(t, utmpParser, Input{Path: name, HostPath: "/var/run/utmp"}, data)
			if len(evs) == 0 {
				t.Fatal("no events")
			}
			for _, ev := range evs {
				idx := int(ev.Fields["record"].(int64))
				if idx >= len(dump) {
					t.Fatalf("record %d not in utmpdump output (%d records)", idx, len(dump))
				}
				m := dump[idx]
				str := func(k string) string { s, _ := ev.Fields[k].(string); return s }
				if got := strconv.FormatInt(ev.Fields["type_num"].(int64), 10); got != m[1] {
					t.Errorf("record %d type %s, utmpdump %s", idx, got, m[1])
				}
				if got, _ := strconv.ParseInt(m[2], 10, 64); got != ev.Fields["pid"].(int64) {
					t.Errorf("record %d pid %d, utmpdump %s", idx, ev.Fields["pid"], m[2])
				}
				if str("user") != m[4] || str("terminal") != m[5] || str("hostname") != m[6] {
					t.Errorf("record %d user/line/host %q %q %q, utmpdump %q %q %q", idx, str("user"), str("terminal"), str("hostname"), m[4], m[5], m[6])
				}
				ip := str("ip")
				if ip == "" {
					ip = "0.0.0.0"
				}
				if ip != m[7] {
					t.Errorf("record %d ip %s, utmpdump %s", idx, ip, m[7])
				}
				wantTS, err := time.Parse("2006-01-02T15:04:05,000000-07:00", m[8])
				if err != nil {
					t.Fatalf("utmpdump time %q: %v", m[8], err)
				}
				if !ev.Timestamp.Equal(wantTS) {
					t.Errorf("record %d time %v, utmpdump %v", idx, ev.Timestamp, wantTS)
				}
			}
		})
	}
}

// swapUTMP384 turns little-endian 384-byte records into big-endian ones, field by field.
func swapUTMP384(le []byte) []byte {
	be := bytes.Clone(le)
	for off := 0; off+384 <= len(be); off += 384 {
		r := be[off : off+384]
		sw16 := func(i int) { binary.BigEndian.PutUint16(r[i:], binary.LittleEndian.Uint16(le[off+i:])) }
		sw32 := func(i int) { binary.BigEndian.PutUint32(r[i:], binary.LittleEndian.Uint32(le[off+i:])) }
		sw16(0)
		sw32(4)
		sw16(332)
		sw16(334)
		sw32(336)
		sw32(340)
		sw32(344)
	}
	return be
}

func TestUTMPBigEndian(t *testing.T) {
	path := filepath.Join(corpusDir, "utmp", "utmp")
	needCorpus(t, path)
	le, _ := os.ReadFile(path)
	in := Input{Path: "utmp", HostPath: "/var/run/utmp"}
	want, _ := runParser(t, utmpParser, in, le)
	got, _ := runParser(t, utmpParser, in, swapUTMP384(le))
	if len(got) != len(want) || len(want) != 14 {
		t.Fatalf("big-endian copy gave %d events, little-endian %d (want 14)", len(got), len(want))
	}
	for i := range want {
		if got[i].Fields["layout"] != "384-be" {
			t.Fatalf("layout %v, want 384-be", got[i].Fields["layout"])
		}
		delete(got[i].Fields, "layout")
		delete(want[i].Fields, "layout")
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("event %d:\n big-endian %v\n little     %v", i, got[i], want[i])
		}
	}
}

func buildLastlog(size int, order binary.ByteOrder, recs map[int][3]any, n int) []byte {
	out := make([]byte, size*n)
	for uid, r := range recs {
		b := out[uid*size:]
		off := 4
		if size == 296 {
			order.PutUint64(b, uint64(r[0].(int64)))
			off = 8
		} else {
			order.PutUint32(b, uint32(r[0].(int64)))
		}
		copy(b[off:off+32], r[1].(string))
		copy(b[off+32:off+288], r[2].(string))
	}
	return out
}

func TestLastlog(t *testing.T) {
	recs := map[int][3]any{
		300:  {int64(1709287200), "pts/0", "203.0.113.9"},
		1000: {int64(1709290800), "tty1", ""},
		1001: {int64(1709294400), "pts/3", "2001:db8::7"},
	}
	for _, tc := range []struct {
		name  string
		size  int
		order binary.ByteOrder
	}{{"292-le", 292, binary.LittleEndian}, {"296-le", 296, binary.LittleEndian}, {"292-be", 292, binary.BigEndian}, {"296-be", 296, binary.BigEndian}} {
		t.Run(tc.name, func(t *testing.T) {
			data := buildLastlog(tc.size, tc.order, recs, 1002)
			in := Input{Path: "lastlog", HostPath: "/var/log/lastlog"}
			if p, ok := Sniff(data[:HeadSize], in); !ok || p.Name != "lastlog" {
				t.Errorf("Sniff = %v %v, want lastlog", p.Name, ok)
			}
			evs, st := runParser(t, lastlogParser, in, data)
			if len(evs) != 3 || st.Skipped != 0 || st.Records != 1002 {
				t.Fatalf("%d events, stats %v; want 3 events from 1002 records", len(evs), st)
			}
			for _, ev := range evs {
				uid := int(ev.Fields["uid"].(int64))
				r, ok := recs[uid]
				if !ok {
					t.Fatalf("event for uid %d, which has no record", uid)
				}
				if ev.Timestamp.Unix() != r[0].(int64) || ev.Fields["layout"] != tc.name {
					t.Errorf("uid %d: time %d layout %v, want %d %s", uid, ev.Timestamp.Unix(), ev.Fields["layout"], r[0], tc.name)
				}
				term, _ := ev.Fields["terminal"].(string)
				host, _ := ev.Fields["hostname"].(string)
				if term != r[1] || host != r[2] {
					t.Errorf("uid %d: line %q host %q, want %q %q", uid, term, host, r[1], r[2])
				}
			}
		})
	}
	t.Run("all zero", func(t *testing.T) {
		evs, st := runParser(t, lastlogParser, Input{}, make([]byte, 292*500))
		if len(evs) != 0 || st.Skipped != 0 {
			t.Errorf("zero file: %d events, %v", len(evs), st)
		}
	})
	t.Run("endless zeros stop", func(t *testing.T) {
		for _, first := range [][]byte{nil, buildLastlog(292, binary.LittleEndian, map[int][3]any{0: {int64(1709287200), "pts/0", "x"}}, 1)} {
			r := io.MultiReader(bytes.NewReader(first), zeroReader{})
			n := 0
			st, err := lastlogParser.Parse(context.Background(), Input{}, r, func(*quarry.Event) error { n++; return nil })
			if err != nil || n != len(first)/292 || st.Skipped != 1 || !strings.Contains(st.FirstSkip, "sparse") {
				t.Errorf("endless zeros after %d bytes: %d events, %v, %v; want a stop noted in the stats", len(first), n, st, err)
			}
		}
	})
	t.Run("trailing bytes", func(t *testing.T) {
		data := append(buildLastlog(292, binary.LittleEndian, map[int][3]any{1: {int64(1709287200), "pts/0", "x"}}, 3), 1, 2, 3)
		evs, st := runParser(t, lastlogParser, Input{}, data)
		if len(evs) != 1 || st.Skipped != 1 || !strings.Contains(st.FirstSkip, "offset 876") {
			t.Errorf("got %d events, %v; want 1 event and the trailing 3 bytes at offset 876 skipped", len(evs), st)
		}
	})
}

// zeroReader is an endless sparse file.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestSniff(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.file, "..") {
				needCorpus(t, tc.file)
			}
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			head := data[:min(len(data), HeadSize)]
			p, ok := Sniff(head, Input{HostPath: tc.hostPath})
			if !ok || p.Name != tc.parser {
				t.Errorf("Sniff(%s as %s) = %q, %v; want %q", tc.file, tc.hostPath, p.Name, ok, tc.parser)
			}
		})
	}
	// Content alone, with a meaningless name.
	for file, want := range map[string]string{
		corpusDir + "/syslog/syslog":     "syslog",
		corpusDir + "/apache_access.log": "access_log",
		corpusDir + "/apt_history.log":   "apt_history",
		corpusDir + "/bash_history":      "bash_history",
		corpusDir + "/utmp/utmp":         "utmp",
		"testdata/audit.log":             "audit",
		"testdata/dpkg.log":              "dpkg",
		"testdata/zsh_history":           "zsh_history",
		"testdata/fish_history":          "fish_history",
		"testdata/UpdateCheck":           "scheduled_task",
		"testdata/setupapi.dev.log":      "setupapi",
	} {
		t.Run("content/"+filepath.Base(file), func(t *testing.T) {
			if strings.HasPrefix(file, "..") {
				needCorpus(t, file)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, ok := Sniff(data[:min(len(data), HeadSize)], Input{HostPath: "/evidence/file.bin"})
			if !ok || p.Name != want {
				t.Errorf("Sniff(%s) = %q, %v; want %q", file, p.Name, ok, want)
			}
		})
	}
	t.Run("btmp by name", func(t *testing.T) {
		file := corpusDir + "/utmp/utmp"
		needCorpus(t, file)
		data, _ := os.ReadFile(file)
		p, ok := Sniff(data[:HeadSize], Input{HostPath: "/var/log/btmp.1"})
		if !ok || p.Name != "btmp" {
			t.Fatalf("Sniff(as /var/log/btmp.1) = %q, %v; want btmp", p.Name, ok)
		}
		evs, _ := runParser(t, p, Input{HostPath: "/var/log/btmp.1"}, data)
		if len(evs) == 0 || evs[len(evs)-1].TimestampDesc != "Failed Login Time" || !strings.HasPrefix(evs[len(evs)-1].Message, "failed login") {
			t.Errorf("btmp events do not read as failed logins: %+v", evs[len(evs)-1])
		}
	})
	t.Run("random binary", func(t *testing.T) {
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 200; i++ {
			b := make([]byte, HeadSize)
			rng.Read(b)
			if p, ok := Sniff(b, Input{HostPath: "/tmp/blob"}); ok {
				t.Fatalf("Sniff(random #%d) = %q, want none", i, p.Name)
			}
		}
		if p, ok := Sniff(make([]byte, HeadSize), Input{HostPath: "/tmp/blob"}); ok {
			t.Errorf("Sniff(zeros) = %q, want none", p.Name)
		}
		if p, ok := Sniff([]byte("just some notes\nnothing to see\n"), Input{HostPath: "/tmp/notes.txt"}); ok {
			t.Errorf("Sniff(plain text) = %q, want none", p.Name)
		}
	})
}

func TestStatsString(t *testing.T) {
	var st Stats
	st.Records = 400
	st.Events = 388
	st.skip("line %d: no timestamp", 3)
	st.skip("line %d: no timestamp", 9)
	if got, want := st.String(), "400 records, 388 events, 2 skipped (first: line 3: no timestamp)"; got != want {
		t.Errorf("Stats.String() = %q, want %q", got, want)
	}
}

func TestLookupAndAll(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range All() {
		if p.Name == "" || p.Sniff == nil || p.Parse == nil || seen[p.Name] {
			t.Errorf("bad or duplicate parser %q", p.Name)
		}
		seen[p.Name] = true
		if q, ok := Lookup(p.Name); !ok || q.Name != p.Name {
			t.Errorf("Lookup(%q) failed", p.Name)
		}
	}
	if _, ok := Lookup("no-such-parser"); ok {
		t.Error("Lookup found a parser that does not exist")
	}
}

func TestLongLine(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Mar  1 10:00:00 h a[1]: first\n")
	b.WriteString("Mar  1 10:00:01 h a[1]: ")
	b.Write(bytes.Repeat([]byte("x"), 3*maxLine))
	b.WriteString("\nMar  1 10:00:02 h a[1]: last")
	in := Input{ModTime: time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC)}
	evs, st := runParser(t, syslogParser, in, b.Bytes())
	if len(evs) != 3 || st.Truncated != 1 || st.Records != 3 {
		t.Fatalf("got %d events, stats %v; want 3 events, 1 truncated line", len(evs), st)
	}
	if n := len(evs[1].Message); n > maxLine {
		t.Errorf("truncated message is %d bytes, more than the %d limit", n, maxLine)
	}
	if evs[2].Fields["body"] != "last" {
		t.Errorf("line after the long one: %v", evs[2].Message)
	}
}

func TestEmitErrorAndCancel(t *testing.T) {
	data := bytes.Repeat([]byte("Mar  1 10:00:00 h a[1]: x\n"), 5000)
	stop := errors.New("stop")
	n := 0
	_, err := syslogParser.Parse(context.Background(), Input{}, bytes.NewReader(data), func(*quarry.Event) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("Parse after emit error: err %v after %d events, want stop after 3", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := syslogParser.Parse(ctx, Input{}, bytes.NewReader(data), func(*quarry.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Parse with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestUserFromPath(t *testing.T) {
	for p, want := range map[string]string{
		"/home/alice/.bash_history": "alice",
		"/root/.bash_history":       "root",
		"/Users/bob/.zsh_history":   "bob",
		`C:\Users\mallory\AppData\Roaming\Microsoft\Windows\PowerShell\PSReadLine\ConsoleHost_history.txt`: "mallory",
		"/var/log/syslog":           "",
		"/home":                     "",
		"/srv/home/x/.bash_history": "",
	} {
		if got := userFromPath(p); got != want {
			t.Errorf("userFromPath(%q) = %q, want %q", p, got, want)
		}
	}
}

// BenchmarkSyslog measures the syslog parser on generated RFC 3164 lines; events/s is reported.
func BenchmarkSyslog(b *testing.B) {
	var buf bytes.Buffer
	progs := []string{"sshd[812]: Accepted password for alice from 203.0.113.9 port 51022 ssh2",
		"CRON[31051]: (root) CMD (touch /var/run/crond.somecheck)",
		"kernel: [997.390602] sda2: rw=0, want=65, limit=2",
		"systemd[1]: Started Session 7 of user alice."}
	const lines = 200000
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&buf, "Mar %2d %02d:%02d:%02d web1 %s\n", 1+i%28, i%24, i%60, i%60, progs[i%len(progs)])
	}
	data := buf.Bytes()
	in := Input{ModTime: time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC)}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var events int
	for i := 0; i < b.N; i++ {
		st, err := syslogParser.Parse(context.Background(), in, bytes.NewReader(data), func(*quarry.Event) error { return nil })
		if err != nil || st.Events != lines {
			b.Fatalf("%v, %v", st, err)
		}
		events += st.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
