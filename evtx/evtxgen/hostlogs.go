package evtxgen

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/quarry-dfir/quarry/evtx"
	"github.com/quarry-dfir/quarry/evtx/evtxwriter"
	"github.com/quarry-dfir/quarry/simhost"
)

// LogsDir is where Windows keeps its event logs, relative to a simulated host's root.
const LogsDir = "C/Windows/System32/winevt/Logs"

// Log file names of the channels WriteHostLogs writes.
var channelFiles = []struct{ channel, file string }{
	{ChannelSecurity, "Security.evtx"},
	{ChannelSystem, "System.evtx"},
	{ChannelApp, "Application.evtx"},
	{ChannelPowerShell, "Microsoft-Windows-PowerShell%4Operational.evtx"},
}

// WriteHostLogs writes the event logs of a simulated Windows host under root: Security, System,
// Application and PowerShell/Operational, holding a week of background activity and, for a compromised
// host, the attack in s. It matches simhost.Extra and runs after simhost has written the rest of the
// tree, which it reads for what the Story does not say: the user profiles under C/Users (the accounts
// that log on), the attacker's task file (its XML and registration time, for 4698) and the payload's
// time (the download). It does nothing for hosts that are not Windows, and the same (h, s) and tree give
// byte-identical files. Every file access goes through an os.Root, so nothing is written outside root.
//
// The attack appears as Windows would log it: s.Failures 4625s (logon type 3, NTLM, bad password) from
// s.AttackerIP spread from s.BruteForceStart to before s.FirstSuccess; at s.FirstSuccess the NLA logon
// (4624 type 3) and the RDP session (4624 type 10, 4672); then for each of s.Commands, typed in that
// session's PowerShell, a 4104 script block, plus a 4688 for each command that starts a process (native
// programs, net.exe's net1.exe, the payload run by Start-Process), a 4720 and a 4732 for the account
// added to Administrators, a 4698 for the task, a 7045 for a service and a 1102/104 for a cleared log.
func WriteHostLogs(root string, h simhost.Host, s simhost.Story) error {
	if h.OS != "windows" {
		return nil
	}
	if err := h.Validate(); err != nil {
		return fmt.Errorf("evtxgen: %w", err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("evtxgen: %w", err)
	}
	defer r.Close()
	g, err := newHostGen(r, h, s)
	if err != nil {
		return err
	}
	if err := r.MkdirAll(LogsDir, 0o755); err != nil {
		return fmt.Errorf("evtxgen: %w", err)
	}
	story := g.story()
	for i, cf := range channelFiles {
		noise := NewNoise(g.m, g.users, g.admins, h.Seed, g.start, cf.channel)
		events := merge(noise.Until(g.now), story[cf.channel])
		if len(events) > 0 {
			// A log rarely starts at record 1: it has rolled over or been in use since installation.
			rr := newRNG(h.Seed, "first-record-"+cf.channel)
			events[0].RecordID = uint64(rr.Between(1000, 90000) * (4 - i))
		}
		if err := writeLog(r, path.Join(LogsDir, cf.file), events); err != nil {
			return err
		}
	}
	return nil
}

// merge merges two time-ordered lists; on equal times the story event comes last.
func merge(a, b []evtx.Event) []evtx.Event {
	out := make([]evtx.Event, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if b[0].Time.Before(a[0].Time) {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

// writeLog writes a log through a temporary name renamed into place, with the file time of its last
// event as Windows leaves it.
func writeLog(r *os.Root, name string, events []evtx.Event) error {
	tmp := name + ".tmp"
	f, err := r.Create(tmp)
	if err != nil {
		return fmt.Errorf("evtxgen: %w", err)
	}
	err = func() error {
		w, err := evtxwriter.New(f)
		if err != nil {
			return err
		}
		for i := range events {
			if err := w.Write(events[i]); err != nil {
				return err
			}
		}
		return w.Close()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, name)
	}
	if err == nil && len(events) > 0 {
		last := events[len(events)-1].Time
		err = r.Chtimes(name, last, last)
	}
	if err != nil {
		r.Remove(tmp)
		return fmt.Errorf("evtxgen: %s: %w", name, err)
	}
	return nil
}

// hostGen holds what the logs of one host are made from.
type hostGen struct {
	r          *os.Root
	h          simhost.Host
	s          simhost.Story
	m          Machine
	now, start time.Time
	users      []Account
	admins     []string
	sids       map[string]string
}

// anchor mirrors simhost's notion of a host's "now" (Host.Anchor, or a date derived from the seed) and
// start (the beginning of the day a week before), so the logs cover the days the other artifacts do.
func anchor(h simhost.Host) (now, start time.Time) {
	if !h.Anchor.IsZero() {
		now = h.Anchor.UTC().Truncate(time.Second)
	} else {
		s := uint64(h.Seed)
		base := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
		now = base.AddDate(0, 0, int(s%300)).Add(time.Duration(8*3600+(s/300)%(10*3600)) * time.Second)
	}
	return now, now.Add(-7 * 24 * time.Hour).Truncate(24 * time.Hour)
}

func newHostGen(r *os.Root, h simhost.Host, s simhost.Story) (*hostGen, error) {
	g := &hostGen{r: r, h: h, s: s, sids: map[string]string{}}
	g.now, g.start = anchor(h)
	rr := newRNG(h.Seed, "machine")
	short := strings.ToUpper(strings.SplitN(h.Name, ".", 2)[0])
	if len(short) > 15 {
		short = short[:15]
	}
	domain := short
	if i := strings.IndexByte(h.Name, '.'); i > 0 {
		domain = strings.ToUpper(strings.SplitN(h.Name[i+1:], ".", 2)[0])
	}
	g.m = Machine{Computer: h.Name, Short: short, Domain: domain,
		SID:      fmt.Sprintf("S-1-5-21-%d-%d-%d", 1e9+rr.Intn(3e9), 1e9+rr.Intn(3e9), 1e8+rr.Intn(9e8)),
		LsassPID: uint32(rr.Between(150, 300) * 4), SvcPID: uint32(rr.Between(150, 300) * 4),
		LogPID: uint32(rr.Between(300, 600) * 4)}

	// The accounts are the profiles simhost wrote: the ones with Documents are people, the one without
	// is the shared local account (an administrator, and the brute force's target).
	entries, err := fs.ReadDir(r.FS(), "C/Users")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("evtxgen: list users: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "Public" && e.Name() != "Default" {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for i, n := range names {
		g.sids[n] = fmt.Sprintf("%s-%d", g.m.SID, 1001+i)
		a := Account{Name: n, Domain: short, SID: g.sids[n]}
		g.users = append(g.users, a)
		if _, err := r.Stat("C/Users/" + n + "/Documents"); err != nil || i == 0 {
			g.admins = append(g.admins, n)
		}
	}
	return g, nil
}

func (g *hostGen) account(name string) Account {
	sid, ok := g.sids[name]
	if !ok {
		sid = fmt.Sprintf("%s-%d", g.m.SID, 1001+len(g.sids))
		g.sids[name] = sid
	}
	return Account{Name: name, Domain: g.m.Short, SID: sid}
}

// story returns the attack's events by channel, each list in time order.
func (g *hostGen) story() map[string][]evtx.Event {
	s, m := g.s, g.m
	out := map[string][]evtx.Event{}
	if s.FirstSuccess.IsZero() || s.User == "" {
		return out
	}
	add := func(e evtx.Event) { out[e.Channel] = append(out[e.Channel], e) }
	r := newRNG(g.h.Seed, "story")
	tid := func() uint32 { return uint32(r.Between(50, 4000) * 4) }
	victim := g.account(s.User)
	attackerWS := pick(r, []string{"kali", "-", "WIN-8SD3JQ1F7PQ", "DESKTOP-" + strings.ToUpper(r.guid()[:7])})

	// The brute force: evenly spread failures, all before the first success.
	if s.Failures > 0 && !s.BruteForceStart.IsZero() {
		span := s.FirstSuccess.Sub(s.BruteForceStart)
		for i := range s.Failures {
			t := s.BruteForceStart.Add(span * time.Duration(i) / time.Duration(s.Failures))
			add(m.Logon4625(Logon{Time: t, Target: Account{Name: s.User, Domain: ""}, Type: 3, IP: s.AttackerIP,
				Port: uint16(r.Between(49152, 65535)), Workstation: attackerWS, NTLM: true, ThreadID: tid()}, SubBadPassword))
		}
	}
	// NLA's network logon, then the RDP session itself.
	nla := uint64(0x5a0000 + r.Intn(0x10000))
	add(m.Logon4624(Logon{Time: s.FirstSuccess, Target: victim, Type: 3, LogonID: nla, IP: s.AttackerIP,
		Port: uint16(r.Between(49152, 65535)), Workstation: attackerWS, NTLM: true, ThreadID: tid()}))
	add(m.Logoff4634(s.FirstSuccess.Add(700*time.Millisecond), victim, nla, 3, tid()))
	session := nla + uint64(r.Between(0x200, 0x2000))
	rdpAt := s.FirstSuccess.Add(1500 * time.Millisecond)
	add(m.Logon4624(Logon{Time: rdpAt, Target: victim, Type: 10, LogonID: session, IP: s.AttackerIP,
		Port: 0, Workstation: m.Short, ProcessID: uint64(r.pid()), ProcessName: `C:\Windows\System32\svchost.exe`,
		Elevated: true, LogonGUID: "00000000-0000-0000-0000-000000000000", ThreadID: tid()}))
	add(m.Special4672(rdpAt, victim, session, AdminPrivileges, tid()))

	const psImage = `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`
	shellPID := r.pid()
	shellAt := rdpAt.Add(20 * time.Second)
	add(m.Process4688(Process{Time: shellAt, Subject: victim, LogonID: session, PID: uint64(shellPID), Image: psImage,
		CommandLine: `"` + psImage + `" `, ParentPID: uint64(r.pid()), ParentImage: `C:\Windows\explorer.exe`, Elevated: true, ThreadID: tid()}))
	act := r.guid()
	times := g.commandTimes(shellAt)
	for i, cmd := range s.Commands {
		t := times[i]
		add(m.ScriptBlock4104(ScriptBlock{Time: t, User: victim, Text: cmd, ID: strings.ToLower(r.guid()), PID: shellPID,
			TID: tid(), ActivityID: act, Suspicious: suspicious(cmd)}))
		proc := func(at time.Time, image, cmdline string, parentPID uint32, parent string) uint32 {
			pid := r.pid()
			add(m.Process4688(Process{Time: at, Subject: victim, LogonID: session, PID: uint64(pid), Image: image,
				CommandLine: cmdline, ParentPID: uint64(parentPID), ParentImage: parent, Elevated: true, ThreadID: tid()}))
			return pid
		}
		fields := strings.Fields(cmd)
		if len(fields) == 0 {
			continue
		}
		verb := strings.ToLower(fields[0])
		args := strings.TrimSpace(cmd[len(fields[0]):])
		at := t.Add(80 * time.Millisecond)
		switch verb {
		case "whoami", "ipconfig", "schtasks", "net", "sc", "wevtutil", "reg", "certutil", "nltest", "systeminfo", "tasklist", "bitsadmin":
			image := `C:\Windows\System32\` + verb + ".exe"
			pid := proc(at, image, `"`+`C:\Windows\system32\`+verb+`.exe" `+args, shellPID, psImage)
			if verb == "net" && len(fields) > 1 && (strings.EqualFold(fields[1], "user") || strings.EqualFold(fields[1], "localgroup")) {
				proc(at.Add(15*time.Millisecond), `C:\Windows\System32\net1.exe`, `C:\Windows\system32\net1 `+args, pid, image)
			}
		case "powershell", "powershell.exe", "pwsh":
			pid := proc(at, psImage, `"`+psImage+`" `+args, shellPID, psImage)
			if text := decodeEnc(fields); text != "" {
				add(m.ScriptBlock4104(ScriptBlock{Time: at.Add(900 * time.Millisecond), User: victim, Text: text,
					ID: strings.ToLower(r.guid()), PID: pid, TID: tid(), ActivityID: r.guid(), Suspicious: true}))
			}
		case "start-process":
			image := strings.Trim(args, `"'`)
			proc(at.Add(200*time.Millisecond), image, `"`+image+`"`, shellPID, psImage)
		case "clear-eventlog":
			g.cleared(add, at, victim, session, tid())
		}
		lower := strings.ToLower(cmd)
		switch {
		case verb == "net" && len(fields) > 3 && strings.EqualFold(fields[1], "user") && strings.EqualFold(fields[len(fields)-1], "/add"):
			add(m.User4720(at.Add(200*time.Millisecond), victim, session, g.account(fields[2]), tid()))
		case verb == "net" && len(fields) > 3 && strings.EqualFold(fields[1], "localgroup") && strings.EqualFold(fields[len(fields)-1], "/add"):
			group, sid := fields[2], "S-1-5-32-545"
			if strings.EqualFold(group, "administrators") {
				group, sid = "Administrators", SIDAdmins
			}
			add(m.Group4732(at.Add(200*time.Millisecond), victim, session, g.account(fields[3]), group, sid, tid()))
		case verb == "schtasks" && strings.Contains(lower, "/create"):
			name, content := g.task(cmd)
			add(m.Task4698(at.Add(300*time.Millisecond), victim, session, name, content, tid()))
		case verb == "sc" && len(fields) > 2 && strings.EqualFold(fields[1], "create"):
			add(m.Service7045(at.Add(300*time.Millisecond), victim, fields[2], scBinPath(cmd), "demand start", "LocalSystem", tid()))
		case verb == "wevtutil" && len(fields) > 2 && (fields[1] == "cl" || fields[1] == "clear-log"):
			g.cleared(add, at.Add(300*time.Millisecond), victim, session, tid())
		}
	}
	if end := s.LastActivity.Add(r.dur(2*time.Minute, 25*time.Minute)); end.Before(g.now) {
		add(m.Logoff4634(end, victim, session, 10, tid()))
	}
	for ch := range out {
		slices.SortStableFunc(out[ch], func(a, b evtx.Event) int { return a.Time.Compare(b.Time) })
	}
	return out
}

func (g *hostGen) cleared(add func(evtx.Event), at time.Time, who Account, session uint64, tid uint32) {
	add(g.m.Cleared1102(at, who, session, tid))
	add(g.m.Cleared104(at, who, ChannelSecurity, tid))
}

// commandTimes places the commands between the shell's start and s.LastActivity (the last command).
// The Story does not carry each command's time, so anchors read from the tree pin the ones it reveals
// (the task file's registration date is the schtasks command, the payload's time is the download's
// end) and the others are spread evenly between anchors.
func (g *hostGen) commandTimes(shellAt time.Time) []time.Time {
	s := g.s
	n := len(s.Commands)
	fixed := map[int]time.Time{}
	if n > 0 {
		fixed[n-1] = s.LastActivity
	}
	for i, c := range s.Commands {
		switch {
		case strings.HasPrefix(strings.ToLower(c), "schtasks") && strings.Contains(c, "/create"):
			if t, ok := g.taskDate(); ok {
				fixed[i] = t
			}
		case strings.HasPrefix(c, "Invoke-WebRequest") && s.PayloadPath != "":
			if fi, err := g.r.Stat(winRel(s.PayloadPath)); err == nil {
				fixed[i] = fi.ModTime().UTC().Add(-2 * time.Second)
			}
		}
	}
	out := make([]time.Time, n)
	prevI, prevT := -1, shellAt
	for i := 0; i < n; i++ {
		t, ok := fixed[i]
		if !ok || !t.After(prevT) {
			continue
		}
		for j := prevI + 1; j <= i; j++ {
			out[j] = prevT.Add(t.Sub(prevT) * time.Duration(j-prevI) / time.Duration(i-prevI))
		}
		prevI, prevT = i, t
	}
	for j := prevI + 1; j < n; j++ { // anchors missing or out of order: keep going at a typing pace
		out[j] = prevT.Add(time.Duration(j-prevI) * 20 * time.Second)
	}
	return out
}

// winRel maps C:\x\y to its place in a simhost tree, C/x/y.
func winRel(p string) string {
	return "C/" + strings.ReplaceAll(strings.TrimPrefix(p, `C:\`), `\`, "/")
}

// taskXML reads the attacker's task file (UTF-16LE with a byte order mark, as Task Scheduler writes it).
func (g *hostGen) taskXML() string {
	if g.s.PersistencePath == "" || !strings.HasPrefix(g.s.PersistencePath, `C:\`) {
		return ""
	}
	b, err := g.r.ReadFile(winRel(g.s.PersistencePath))
	if err != nil || len(b) < 2 {
		return ""
	}
	b = bytes.TrimPrefix(b, []byte{0xff, 0xfe})
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
	}
	return string(utf16.Decode(u))
}

func (g *hostGen) taskDate() (time.Time, bool) {
	x := g.taskXML()
	var doc struct {
		Date string `xml:"RegistrationInfo>Date"`
	}
	// The XML declaration names UTF-16, which the decoder would try to convert again.
	x = strings.Replace(x, `encoding="UTF-16"`, `encoding="UTF-8"`, 1)
	if x == "" || xml.Unmarshal([]byte(x), &doc) != nil {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02T15:04:05", doc.Date)
	return t, err == nil
}

// task returns the TaskName and TaskContent of 4698 for a schtasks /create command.
func (g *hostGen) task(cmd string) (string, string) {
	name := ""
	if i := strings.Index(cmd, `/tn "`); i >= 0 {
		rest := cmd[i+5:]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			name = rest[:j]
		}
	} else if f := strings.Fields(cmd); len(f) > 0 {
		for i := range f[:len(f)-1] {
			if strings.EqualFold(f[i], "/tn") {
				name = f[i+1]
			}
		}
	}
	content := g.taskXML()
	if content == "" {
		content = `<?xml version="1.0" encoding="UTF-16"?>` + "\r\n" + `<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task"><RegistrationInfo><URI>\` +
			name + `</URI></RegistrationInfo></Task>`
	}
	// The event carries the XML after the declaration, the way Task Scheduler hands it to the audit.
	if i := strings.Index(content, "?>"); i >= 0 {
		content = strings.TrimLeft(content[i+2:], "\r\n")
	}
	return `\` + strings.TrimPrefix(name, `\`), content
}

func scBinPath(cmd string) string {
	i := strings.Index(strings.ToLower(cmd), "binpath=")
	if i < 0 {
		return ""
	}
	return strings.Trim(strings.Fields(cmd[i+8:] + " x")[0], `"`)
}

// decodeEnc returns the script of "powershell -enc <base64 of UTF-16LE>", "" if there is none.
func decodeEnc(fields []string) string {
	for i, f := range fields[:len(fields)-1] {
		switch strings.ToLower(f) {
		case "-enc", "-e", "-encodedcommand", "-ec":
			b, err := base64.StdEncoding.DecodeString(fields[i+1])
			if err != nil || len(b)%2 != 0 {
				return ""
			}
			u := make([]uint16, len(b)/2)
			for j := range u {
				u[j] = uint16(b[2*j]) | uint16(b[2*j+1])<<8
			}
			return string(utf16.Decode(u))
		}
	}
	return ""
}

// suspicious mirrors PowerShell's own list of suspicious script content, which raises a 4104 to Warning.
func suspicious(script string) bool {
	s := strings.ToLower(script)
	for _, k := range []string{"downloadstring", "iex", "invoke-expression", "net.webclient", "frombase64string",
		"set-mppreference", "-enc", "invoke-webrequest", "virtualalloc", "start-process"} {
		if strings.Contains(s, k) {
			return true
		}
	}
	return false
}
