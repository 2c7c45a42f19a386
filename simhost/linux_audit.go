package simhost

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// auditEvent is one audit event: records sharing a time stamp and serial number.
type auditEvent struct {
	t       time.Time
	records [][2]string // record type, body after "msg=audit(...): "
}

const (
	sshdSubj  = "system_u:system_r:sshd_t:s0-s0:c0.c1023"
	userSubj  = "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023"
	cronSubj  = "system_u:system_r:crond_t:s0-s0:c0.c1023"
	unsetAUID = "4294967295"
)

// linuxAudit writes audit.log in auditd's raw format. Besides the PAM and login events every RHEL host
// has, the host carries an execve rule for interactive users (rules.d/exec.rules, written by linuxEtc),
// so commands typed in sessions of users with uid >= 1000 appear as SYSCALL, EXECVE, CWD and PROCTITLE.
func (p *plan) linuxAudit(b *logBook, lp *linuxPlan) {
	r := newRNG(p.h.Seed, "linux-audit")
	var evs []auditEvent
	ev := func(t time.Time, recs ...[2]string) { evs = append(evs, auditEvent{t: t, records: recs}) }
	pamMsg := func(pid int, uid, auid, ses, subj, op, acct, exe, host, addr, term, res string) string {
		return fmt.Sprintf("pid=%d uid=%s auid=%s ses=%s subj=%s msg='op=%s acct=\"%s\" exe=\"%s\" hostname=%s addr=%s terminal=%s res=%s'",
			pid, uid, auid, ses, subj, op, acct, exe, host, addr, term, res)
	}
	for _, a := range lp.failures {
		ev(a.t, [2]string{"USER_AUTH", pamMsg(a.pid, "0", unsetAUID, unsetAUID, sshdSubj,
			"PAM:authentication grantors=?", a.user, "/usr/sbin/sshd", a.from, a.from, "ssh", "failed")})
		if a.invalid {
			ev(a.t, [2]string{"USER_LOGIN", pamMsg(a.pid, "0", unsetAUID, unsetAUID, sshdSubj,
				"login", "(invalid user)", "/usr/sbin/sshd", "?", a.from, "sshd", "failed")})
		}
	}
	for _, s := range lp.sessions {
		uid, ses := fmt.Sprint(s.user.uid), fmt.Sprint(s.logind)
		op := "PAM:authentication grantors=pam_usertype,pam_unix"
		if s.method == "publickey" {
			op = "pubkey fp=" + s.keyFP + " direction=from-client spid=" + fmt.Sprint(s.pid+1) + " suid=74 rport=" + fmt.Sprint(s.port) + " laddr=" + p.ip + " lport=22"
		}
		ev(s.start, [2]string{"USER_AUTH", pamMsg(s.pid, "0", unsetAUID, unsetAUID, sshdSubj, op, s.user.name,
			"/usr/sbin/sshd", s.from, s.from, "ssh", "success")})
		ev(s.start, [2]string{"USER_ACCT", pamMsg(s.pid, "0", unsetAUID, unsetAUID, sshdSubj,
			"PAM:accounting grantors=pam_unix,pam_localuser", s.user.name, "/usr/sbin/sshd", s.from, s.from, "ssh", "success")})
		ev(s.start, [2]string{"CRED_ACQ", pamMsg(s.pid, "0", unsetAUID, unsetAUID, sshdSubj,
			"PAM:setcred grantors=pam_unix", s.user.name, "/usr/sbin/sshd", s.from, s.from, "ssh", "success")})
		ev(s.start, [2]string{"LOGIN", fmt.Sprintf("pid=%d uid=0 subj=%s old-auid=%s auid=%s tty=(none) old-ses=%s ses=%s res=1",
			s.pid, sshdSubj, unsetAUID, uid, unsetAUID, ses)})
		ev(s.start, [2]string{"USER_START", pamMsg(s.pid, "0", uid, ses, sshdSubj,
			"PAM:session_open grantors=pam_selinux,pam_loginuid,pam_selinux,pam_namespace,pam_keyinit,pam_keyinit,pam_limits,pam_systemd,pam_unix,pam_umask,pam_lastlog",
			s.user.name, "/usr/sbin/sshd", s.from, s.from, "ssh", "success")})
		ev(s.start, [2]string{"USER_LOGIN", fmt.Sprintf("pid=%d uid=0 auid=%s ses=%s subj=%s msg='op=login id=%s exe=\"/usr/sbin/sshd\" hostname=? addr=%s terminal=/dev/%s res=success'",
			s.pid, uid, ses, sshdSubj, uid, s.from, s.tty)})
		if s.user.uid >= 1000 {
			evs = append(evs, p.execEvents(r, s)...)
		}
		if s.end.IsZero() {
			continue
		}
		ev(s.end, [2]string{"USER_END", pamMsg(s.pid, "0", uid, ses, sshdSubj,
			"PAM:session_close grantors=pam_selinux,pam_loginuid,pam_selinux,pam_namespace,pam_keyinit,pam_keyinit,pam_limits,pam_systemd,pam_unix,pam_umask,pam_lastlog",
			s.user.name, "/usr/sbin/sshd", s.from, s.from, "ssh", "success")})
		ev(s.end, [2]string{"CRED_DISP", pamMsg(s.pid, "0", uid, ses, sshdSubj,
			"PAM:setcred grantors=pam_unix", s.user.name, "/usr/sbin/sshd", s.from, s.from, "ssh", "success")})
		ev(s.end, [2]string{"USER_LOGOUT", fmt.Sprintf("pid=%d uid=0 auid=%s ses=%s subj=%s msg='op=login id=%s exe=\"/usr/sbin/sshd\" hostname=? addr=%s terminal=/dev/%s res=success'",
			s.pid, uid, ses, sshdSubj, uid, s.from, s.tty)})
	}
	slices.SortStableFunc(evs, func(x, y auditEvent) int { return x.t.Compare(y.t) })
	serial := r.Between(1000, 9000)
	last := map[int64]int{} // milliseconds already used in a second, so stamps stay increasing
	for _, e := range evs {
		if e.t.After(p.now) {
			continue
		}
		serial++
		ms := min(last[e.t.Unix()]+r.Between(1, 40), 999)
		last[e.t.Unix()] = ms
		stamp := fmt.Sprintf("audit(%d.%03d:%d)", e.t.Unix(), ms, serial)
		for _, rec := range e.records {
			b.add(e.t, logAudit, "", fmt.Sprintf("type=%s msg=%s: %s", rec[0], stamp, rec[1]))
		}
	}
}

// execEvents returns the execve events of the external programs a session ran, with sudo's USER_CMD.
func (p *plan) execEvents(r *rng, s *sshSession) []auditEvent {
	var out []auditEvent
	uid, ses, tty := fmt.Sprint(s.user.uid), fmt.Sprint(s.logind), strings.ReplaceAll(s.tty, "/", "")
	shellPID := s.pid + 3
	home := homeOf(s.user.name)
	run := func(c timedCmd, euid, cwd string) {
		progs := programs(c.cmd)
		for i := 0; i < len(progs); i++ {
			argv := progs[i]
			if argv[0] == "nohup" && len(argv) > 1 { // nohup then executes the program it was given
				progs = slices.Insert(progs, i+1, argv[1:])
			}
			exe := binPath(argv[0])
			if strings.HasPrefix(argv[0], "/") || strings.HasPrefix(argv[0], ".") {
				exe = argv[0]
			}
			var ex strings.Builder
			fmt.Fprintf(&ex, "argc=%d", len(argv))
			for i, a := range argv {
				fmt.Fprintf(&ex, " a%d=%s", i, auditValue(a))
			}
			comm := exe[strings.LastIndex(exe, "/")+1:]
			pid := p.pidAt(r, c.t)
			out = append(out, auditEvent{t: c.t, records: [][2]string{
				{"SYSCALL", fmt.Sprintf("arch=c000003e syscall=59 success=yes exit=0 a0=55d1c3e2a4f0 a1=55d1c3e2b6a0 a2=55d1c3e2c010 a3=8 items=2 ppid=%d pid=%d auid=%s uid=%s gid=%s euid=%s suid=%s fsuid=%s egid=%s sgid=%s fsgid=%s tty=%s ses=%s comm=%s exe=%s subj=%s key=\"user_exec\"",
					shellPID, pid, uid, euid, euid, euid, euid, euid, euid, euid, euid, tty, ses, auditValue(comm), auditValue(exe), userSubj)},
				{"EXECVE", ex.String()},
				{"CWD", "cwd=" + auditValue(cwd)},
				{"PATH", fmt.Sprintf("item=0 name=%s inode=%d dev=fd:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 obj=system_u:object_r:bin_t:s0 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
					auditValue(exe), 33554432+r.Intn(1<<24))},
				{"PROCTITLE", "proctitle=" + auditValue(strings.Join(argv, "\x00"))},
			}})
			if argv[0] == "sudo" {
				out = append(out, auditEvent{t: c.t, records: [][2]string{{"USER_CMD", fmt.Sprintf("pid=%d uid=%s auid=%s ses=%s subj=%s msg='cwd=%s cmd=%s exe=\"/usr/bin/sudo\" terminal=%s res=success'",
					pid, uid, uid, ses, userSubj, auditValue(cwd), strings.ToUpper(hex.EncodeToString([]byte(strings.Join(argv[1:], " ")))), s.tty)}}})
			}
		}
	}
	cwd := home
	for _, c := range s.cmds {
		if d, ok := strings.CutPrefix(c.cmd, "cd "); ok {
			cwd = strings.Replace(d, "~", home, 1)
		}
		run(c, uid, cwd)
	}
	cwd = "/root"
	for _, c := range s.rootCmds {
		if d, ok := strings.CutPrefix(c.cmd, "cd "); ok {
			cwd = d
		}
		run(c, "0", cwd)
	}
	return out
}

// auditValue encodes a field as auditd does: quoted when plain printable text, otherwise upper-case hex.
func auditValue(s string) string {
	for _, c := range []byte(s) {
		if c <= 0x20 || c >= 0x7f || c == '"' {
			return strings.ToUpper(hex.EncodeToString([]byte(s)))
		}
	}
	return `"` + s + `"`
}

// shellBuiltins run inside bash and so never reach execve.
var shellBuiltins = map[string]bool{"cd": true, "echo": true, "exit": true, "history": true, "export": true,
	"unset": true, "alias": true, "source": true, ".": true, "printf": true, "true": true, "test": true}

// programs splits a command line into the argv of each external program it starts, after the shell has
// removed quotes and redirections. It understands what the generated commands use: pipes, ";", "&&",
// "||", subshell parentheses, quotes, "&" and redirections.
func programs(cmd string) [][]string {
	var out [][]string
	var argv []string
	var cur strings.Builder
	inWord := false
	var quote rune
	flush := func() {
		if inWord {
			argv = append(argv, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	end := func() {
		flush()
		// Drop redirections: a word starting with '>' or '<' or "N>" and the target after a bare one.
		var clean []string
		for i := 0; i < len(argv); i++ {
			w := argv[i]
			if strings.HasPrefix(w, ">") || strings.HasPrefix(w, "<") || strings.HasPrefix(w, "2>") || strings.HasPrefix(w, "0>") || strings.HasPrefix(w, "1>") {
				if strings.TrimLeft(w, "012<>&") == "" && i+1 < len(argv) {
					i++
				}
				continue
			}
			clean = append(clean, w)
		}
		if len(clean) > 0 && !shellBuiltins[clean[0]] {
			out = append(out, clean)
		}
		argv = nil
	}
	rs := []rune(cmd)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			flush()
		case c == '|' || c == ';' || c == '(' || c == ')':
			end()
			if i+1 < len(rs) && rs[i+1] == '|' {
				i++
			}
		case c == '&':
			if i+1 < len(rs) && rs[i+1] == '&' {
				end()
				i++
			} else if inWord || (i+1 < len(rs) && rs[i+1] == '>') || (i > 0 && rs[i-1] == '>') {
				cur.WriteRune(c)
				inWord = true
			} else {
				end()
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	end()
	return out
}
