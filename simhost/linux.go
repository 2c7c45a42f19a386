package simhost

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Log destinations, mapped to real files per distribution by linuxLogFile.
const (
	logAuth  = "auth"
	logSys   = "sys"
	logCron  = "cron"
	logAudit = "audit"
)

func (p *plan) linuxLogFile(kind string) string {
	if p.distro == "rhel" {
		return map[string]string{logAuth: "var/log/secure", logSys: "var/log/messages", logCron: "var/log/cron",
			logAudit: "var/log/audit/audit.log"}[kind]
	}
	return map[string]string{logAuth: "var/log/auth.log", logSys: "var/log/syslog", logCron: "var/log/syslog"}[kind]
}

// oldSystemd reports distributions whose systemd says "Succeeded." rather than "Deactivated successfully."
// and "Started Session N of User u." rather than naming the scope unit.
func (p *plan) oldSystemd() bool {
	v := strings.ToLower(p.h.OSVersion)
	return strings.Contains(v, "20.04") || strings.Contains(v, "18.04") || strings.Contains(v, "debian 11") ||
		strings.Contains(v, "debian 10") || (p.distro == "rhel" && strings.HasPrefix(versionNumber(v, "9"), "8")) ||
		strings.Contains(v, "centos 7")
}

func (p *plan) kernel() string {
	v := strings.ToLower(p.h.OSVersion)
	n := versionNumber(v, "")
	switch {
	case p.distro == "rhel" && strings.HasPrefix(n, "8"):
		return "4.18.0-513.24.1.el8_9.x86_64"
	case p.distro == "rhel":
		return "5.14.0-362.24.1.el9_3.x86_64"
	case strings.Contains(v, "debian"):
		return "6.1.0-28-amd64"
	case n == "20.04":
		return "5.4.0-200-generic"
	case n == "24.04":
		return "6.8.0-49-generic"
	}
	return "5.15.0-126-generic"
}

func (p *plan) buildLinux(t *tree) {
	lp := p.planLinux()
	book := &logBook{}
	p.linuxAuth(book, lp)
	p.linuxNoise(book)
	if p.distro == "rhel" {
		p.linuxAudit(book, lp)
	}
	// Route each kind to its file (Debian sends cron to syslog), then render every file in time order.
	for i := range book.lines {
		book.lines[i].file = p.linuxLogFile(book.lines[i].file)
	}
	for name, r := range book.render(p.short, p.now, rfc3164) {
		t.add(name, []byte(r.text), r.last, 0o640)
	}
	p.linuxUtmp(t, lp)
	p.linuxEtc(t)
	p.linuxHistories(t, lp)
	p.linuxPackages(t)
	if p.web != "" {
		p.linuxWeb(t)
	}
	p.linuxAttackFiles(t)
	t.dir("tmp")
	t.dir("dev/shm")
	t.dir("var/tmp")
}

// linuxAuth writes the SSH, PAM, sudo and logind lines of every failed attempt and session.
func (p *plan) linuxAuth(b *logBook, lp *linuxPlan) {
	r := newRNG(p.h.Seed, "linux-auth")
	logind := fmt.Sprintf("systemd-logind[%d]", r.Between(600, 900))
	for _, a := range lp.failures {
		// a.t is the "Failed password" line; the lines before it lead up to it.
		sshd := fmt.Sprintf("sshd[%d]", a.pid)
		if a.invalid {
			b.add(a.t.Add(-3*time.Second), logAuth, sshd, fmt.Sprintf("Invalid user %s from %s port %d", a.user, a.from, a.port))
			b.add(a.t.Add(-2*time.Second), logAuth, sshd, "pam_unix(sshd:auth): check pass; user unknown")
			b.add(a.t.Add(-2*time.Second), logAuth, sshd, fmt.Sprintf("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s", a.from))
			b.add(a.t, logAuth, sshd, fmt.Sprintf("Failed password for invalid user %s from %s port %d ssh2", a.user, a.from, a.port))
			b.add(a.t, logAuth, sshd, fmt.Sprintf("Connection closed by invalid user %s %s port %d [preauth]", a.user, a.from, a.port))
			continue
		}
		b.add(a.t.Add(-2*time.Second), logAuth, sshd, fmt.Sprintf("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s  user=%s", a.from, a.user))
		b.add(a.t, logAuth, sshd, fmt.Sprintf("Failed password for %s from %s port %d ssh2", a.user, a.from, a.port))
		b.add(a.t, logAuth, sshd, fmt.Sprintf("Connection closed by authenticating user %s %s port %d [preauth]", a.user, a.from, a.port))
	}
	for _, s := range lp.sessions {
		sshd := fmt.Sprintf("sshd[%d]", s.pid)
		switch s.method {
		case "publickey":
			b.add(s.start, logAuth, sshd, fmt.Sprintf("Accepted publickey for %s from %s port %d ssh2: ED25519 %s", s.user.name, s.from, s.port, s.keyFP))
		default:
			b.add(s.start, logAuth, sshd, fmt.Sprintf("Accepted password for %s from %s port %d ssh2", s.user.name, s.from, s.port))
		}
		b.add(s.start, logAuth, sshd, fmt.Sprintf("pam_unix(sshd:session): session opened for user %s(uid=%d) by (uid=0)", s.user.name, s.user.uid))
		b.add(s.start, logAuth, logind, fmt.Sprintf("New session %d of user %s.", s.logind, s.user.name))
		if p.oldSystemd() {
			b.add(s.start, logSys, "systemd[1]", fmt.Sprintf("Started Session %d of User %s.", s.logind, s.user.name))
		} else {
			b.add(s.start, logSys, "systemd[1]", fmt.Sprintf("Started session-%d.scope - Session %d of User %s.", s.logind, s.logind, s.user.name))
		}
		p.sudoLines(b, r, s)
		if s.end.IsZero() {
			continue
		}
		b.add(s.end, logAuth, sshd, fmt.Sprintf("Received disconnect from %s port %d:11: disconnected by user", s.from, s.port))
		b.add(s.end, logAuth, sshd, fmt.Sprintf("Disconnected from user %s %s port %d", s.user.name, s.from, s.port))
		b.add(s.end, logAuth, sshd, fmt.Sprintf("pam_unix(sshd:session): session closed for user %s", s.user.name))
		b.add(s.end, logAuth, logind, fmt.Sprintf("Session %d logged out. Waiting for processes to exit.", s.logind))
		b.add(s.end, logAuth, logind, fmt.Sprintf("Removed session %d.", s.logind))
	}
}

// sudoLines logs each "sudo ..." command of a session the way sudo 1.9 does through syslog.
func (p *plan) sudoLines(b *logBook, r *rng, s *sshSession) {
	home := homeOf(s.user.name)
	cwd := home
	for i, c := range s.cmds {
		if dir, ok := strings.CutPrefix(c.cmd, "cd "); ok {
			cwd = strings.Replace(dir, "~", home, 1)
		}
		rest, ok := strings.CutPrefix(c.cmd, "sudo ")
		if !ok {
			continue
		}
		runas, command := "root", ""
		args := strings.Fields(strings.NewReplacer("'", "", "\"", "").Replace(rest))
		for len(args) > 0 && strings.HasPrefix(args[0], "-") {
			switch args[0] {
			case "-i":
				command = "/bin/bash"
			case "-l":
				command = "list"
			case "-u":
				if len(args) > 1 {
					runas = args[1]
					args = args[1:]
				}
			}
			args = args[1:]
		}
		if command == "" && len(args) > 0 {
			command = strings.Join(append([]string{binPath(args[0])}, args[1:]...), " ")
		}
		b.add(c.t, logAuth, "sudo", fmt.Sprintf("%8s : TTY=%s ; PWD=%s ; USER=%s ; COMMAND=%s", s.user.name, s.tty, cwd, runas, command))
		if command == "list" {
			continue
		}
		runUID := 0
		if runas != "root" {
			runUID = 111
		}
		b.add(c.t, logAuth, "sudo", fmt.Sprintf("pam_unix(sudo:session): session opened for user %s(uid=%d) by %s(uid=%d)", runas, runUID, s.user.name, s.user.uid))
		end := c.t.Add(r.dur(time.Second, 20*time.Second))
		if command == "/bin/bash" && len(s.rootCmds) > 0 {
			end = s.rootCmds[len(s.rootCmds)-1].t
		} else if i+1 < len(s.cmds) && s.cmds[i+1].t.Before(end) {
			end = s.cmds[i+1].t
		}
		b.add(end, logAuth, "sudo", fmt.Sprintf("pam_unix(sudo:session): session closed for user %s", runas))
	}
}

func homeOf(name string) string {
	if name == "root" {
		return "/root"
	}
	return "/home/" + name
}

// binPath resolves a command name the way sudo logs it, by its full path.
func binPath(name string) string {
	if strings.HasPrefix(name, "/") {
		return name
	}
	switch name {
	case "getenforce", "useradd", "usermod", "visudo", "iptables", "nginx", "sshd":
		return "/usr/sbin/" + name
	}
	return "/usr/bin/" + name
}

// linuxNoise writes the routine lines of a healthy server: cron jobs, systemd timers, time sync, and the
// side effects of the attacker's persistence.
func (p *plan) linuxNoise(b *logBook) {
	r := newRNG(p.h.Seed, "linux-noise")
	rhel := p.distro == "rhel"
	done := func(unit string) string {
		if p.oldSystemd() {
			return unit + ": Succeeded."
		}
		return unit + ": Deactivated successfully."
	}
	timer := func(t time.Time, unit, desc string) {
		b.add(t, logSys, "systemd[1]", "Starting "+desc+"...")
		t = t.Add(r.dur(time.Second, 40*time.Second))
		b.add(t, logSys, "systemd[1]", done(unit))
		b.add(t, logSys, "systemd[1]", "Finished "+desc+".")
	}
	cronJob := func(t time.Time, user, cmd string) {
		pid := p.pidAt(r, t)
		if rhel {
			b.add(t, logAuth, fmt.Sprintf("crond[%d]", pid), fmt.Sprintf("pam_unix(crond:session): session opened for user %s(uid=0) by (uid=0)", user))
			b.add(t, logCron, fmt.Sprintf("CROND[%d]", pid), fmt.Sprintf("(%s) CMD (%s)", user, cmd))
			end := t.Add(r.dur(0, 2*time.Second))
			b.add(end, logCron, fmt.Sprintf("CROND[%d]", pid), fmt.Sprintf("(%s) CMDEND (%s)", user, cmd))
			b.add(end, logAuth, fmt.Sprintf("crond[%d]", pid), fmt.Sprintf("pam_unix(crond:session): session closed for user %s", user))
			return
		}
		b.add(t, logAuth, fmt.Sprintf("CRON[%d]", pid), fmt.Sprintf("pam_unix(cron:session): session opened for user %s(uid=0) by (uid=0)", user))
		b.add(t, logCron, fmt.Sprintf("CRON[%d]", pid), fmt.Sprintf("(%s) CMD (%s)", user, cmd))
		b.add(t.Add(r.dur(0, 2*time.Second)), logAuth, fmt.Sprintf("CRON[%d]", pid), fmt.Sprintf("pam_unix(cron:session): session closed for user %s", user))
	}
	for h := p.start; h.Before(p.now); h = h.Add(time.Hour) {
		if rhel {
			cronJob(h.Add(time.Minute), "root", "run-parts /etc/cron.hourly")
			rp := fmt.Sprintf("run-parts[%d]", p.pidAt(r, h))
			b.add(h.Add(time.Minute), logCron, rp, "(/etc/cron.hourly) starting 0anacron")
			b.add(h.Add(time.Minute+time.Second), logCron, rp, "(/etc/cron.hourly) finished 0anacron")
			if r.Chance(60) {
				mc := h.Add(r.dur(5*time.Minute, 55*time.Minute))
				b.add(mc, logSys, "systemd[1]", "Starting dnf makecache...")
				b.add(mc.Add(time.Second), logSys, fmt.Sprintf("dnf[%d]", p.pidAt(r, mc)), pick(r, []string{"Metadata cache refreshed recently.", "Metadata cache created."}))
				b.add(mc.Add(2*time.Second), logSys, "systemd[1]", done("dnf-makecache.service"))
				b.add(mc.Add(2*time.Second), logSys, "systemd[1]", "Finished dnf makecache.")
			}
		} else {
			cronJob(h.Add(17*time.Minute), "root", "   cd / && run-parts --report /etc/cron.hourly")
		}
		if r.Chance(8) {
			ts := h.Add(r.dur(0, 59*time.Minute))
			if rhel {
				b.add(ts, logSys, fmt.Sprintf("chronyd[%d]", 700+r.Intn(80)), fmt.Sprintf("Selected source %s (2.rhel.pool.ntp.org)", publicIP(r)))
			} else {
				b.add(ts, logSys, fmt.Sprintf("systemd-timesyncd[%d]", 500+r.Intn(80)), "Network configuration changed, trying to establish connection.")
				b.add(ts.Add(time.Second), logSys, fmt.Sprintf("systemd-timesyncd[%d]", 500+r.Intn(80)), "Initial synchronization to time server 185.125.190.57:123 (ntp.ubuntu.com).")
			}
		}
	}
	for d := p.start; d.Before(p.now); d = d.Add(24 * time.Hour) {
		timer(d.Add(r.dur(0, 4*time.Minute)), "logrotate.service", "Rotate log files")
		timer(d.Add(r.dur(10*time.Minute, 50*time.Minute)), "systemd-tmpfiles-clean.service", "Cleanup of Temporary Directories")
		if rhel {
			continue
		}
		b.add(d.Add(r.dur(5*time.Minute, 6*time.Minute)), logSys, "rsyslogd", fmt.Sprintf(`[origin software="rsyslogd" swVersion="8.2112.0" x-pid="%d" x-info="https://www.rsyslog.com"] rsyslogd was HUPed`, 600+r.Intn(200)))
		timer(d.Add(r.dur(6*time.Hour, 6*time.Hour+50*time.Minute)), "apt-daily-upgrade.service", "Daily apt upgrade and clean activities")
		timer(d.Add(r.dur(8*time.Hour, 20*time.Hour)), "apt-daily.service", "Daily apt download activities")
		timer(d.Add(r.dur(time.Hour, 23*time.Hour)), "man-db.service", "Daily man-db regeneration")
		cronJob(d.Add(6*time.Hour+25*time.Minute), "root", "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }")
	}
	if p.linux != nil {
		p.persistenceNoise(b, r, cronJob)
	}
}

// persistenceNoise logs what the attacker's persistence makes the system say: cron reloading and then
// running the payload, or systemd starting the new unit.
func (p *plan) persistenceNoise(b *logBook, r *rng, cronJob func(time.Time, string, string)) {
	a := p.linux
	at := a.persistAt
	cronPID := 800 + r.Intn(150)
	switch a.persist {
	case "crontab":
		b.add(at, logCron, fmt.Sprintf("crontab[%d]", p.pidAt(r, at)), "(root) REPLACE (root)")
		spool := "crontabs/root"
		if p.distro == "rhel" {
			spool = "/var/spool/cron/root"
		}
		reload := at.Truncate(time.Minute).Add(time.Minute)
		if p.distro == "rhel" {
			b.add(reload, logCron, fmt.Sprintf("crond[%d]", cronPID), "(root) RELOAD ("+spool+")")
		} else {
			b.add(reload, logCron, fmt.Sprintf("cron[%d]", cronPID), "(root) RELOAD ("+spool+")")
		}
	case "crond":
		name := strings.TrimPrefix(p.story.PersistencePath, "/etc/cron.d/")
		reload := at.Truncate(time.Minute).Add(time.Minute)
		if p.distro == "rhel" {
			b.add(reload, logCron, fmt.Sprintf("crond[%d]", cronPID), "(root) RELOAD ("+p.story.PersistencePath+")")
		} else {
			b.add(reload, logCron, fmt.Sprintf("cron[%d]", cronPID), fmt.Sprintf("(*system*%s) RELOAD (%s)", name, p.story.PersistencePath))
		}
	case "systemd":
		b.add(at, logSys, "systemd[1]", "Reloading.")
		b.add(at.Add(2*time.Second), logSys, "systemd[1]", "Started "+unitDescription(a.unit)+".")
		return
	}
	var every int
	fmt.Sscanf(a.cronLine, "*/%d", &every)
	if every <= 0 {
		return
	}
	cmd := a.payPath + " >/dev/null 2>&1"
	step := time.Duration(every) * time.Minute
	for t := at.Truncate(step).Add(step); t.Before(p.now); t = t.Add(step) {
		cronJob(t, "root", cmd)
	}
}

func unitDescription(unit string) string {
	base := strings.TrimSuffix(unit, ".service")
	words := strings.Split(base, "-")
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ") + " Service"
}

// linuxUtmp writes wtmp, btmp, lastlog and /run/utmp from the same sessions and attempts as auth.log.
func (p *plan) linuxUtmp(t *tree, lp *linuxPlan) {
	kernel := p.kernel()
	boot := []utmpRecord{
		{typ: utBootTime, line: "~", id: "~~", user: "reboot", host: kernel, t: p.boot},
		{typ: utRunLevel, pid: 'N'*256 + '3', line: "~", id: "~~", user: "runlevel", host: kernel, t: p.boot.Add(9 * time.Second)},
	}
	var wtmp, run []byte
	for _, rec := range boot {
		wtmp = append(wtmp, rec.encode()...)
		run = append(run, rec.encode()...)
	}
	type ev struct {
		t   time.Time
		rec utmpRecord
	}
	var evs []ev
	last := map[int]lastlogEntry{}
	wtmpLast := p.boot.Add(9 * time.Second)
	for _, s := range lp.sessions {
		id := s.tty[len(s.tty)-min(4, len(s.tty)):]
		login := utmpRecord{typ: utUserProcess, pid: int32(s.pid + 2), line: s.tty, id: id, user: s.user.name,
			host: s.from, t: s.start, addr: s.from}
		evs = append(evs, ev{s.start, login})
		last[s.user.uid] = lastlogEntry{t: s.start, line: s.tty, host: s.from}
		if s.end.IsZero() {
			run = append(run, login.encode()...)
			continue
		}
		evs = append(evs, ev{s.end, utmpRecord{typ: utDeadProcess, pid: int32(s.pid + 2), line: s.tty, id: id, t: s.end}})
	}
	slices.SortStableFunc(evs, func(a, b ev) int { return a.t.Compare(b.t) })
	for _, e := range evs {
		wtmp = append(wtmp, e.rec.encode()...)
		wtmpLast = e.t
	}
	var btmp []byte
	btmpLast := p.boot
	for _, a := range lp.failures {
		btmp = append(btmp, utmpRecord{typ: utLoginProcess, pid: int32(a.pid), line: "ssh:notty", user: a.user,
			host: a.from, t: a.t, addr: a.from}.encode()...)
		btmpLast = a.t
	}
	lastlogTime := p.boot
	for _, e := range last {
		if e.t.After(lastlogTime) {
			lastlogTime = e.t
		}
	}
	t.add("var/log/wtmp", wtmp, wtmpLast, 0o664)
	t.add("var/log/btmp", btmp, btmpLast, 0o600)
	t.add("var/log/lastlog", encodeLastlog(last), lastlogTime, 0o664)
	t.add("run/utmp", run, wtmpLast, 0o664)
}
