package evtxgen

import (
	"container/heap"
	"fmt"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry/evtx"
	w "github.com/quarry-dfir/quarry/evtx/evtxwriter"
	"github.com/quarry-dfir/quarry/internal/splitmix"
)

// rng is the generator of the simulations (internal/splitmix) with the helpers events need.
type rng struct{ splitmix.RNG }

func newRNG(seed int64, stream string) *rng { return &rng{splitmix.New(seed, stream)} }

// dur returns a duration in [lo, hi] with microsecond resolution: event times are never round.
func (r *rng) dur(lo, hi time.Duration) time.Duration {
	us := int64(hi-lo) / 1000
	return lo + time.Duration(int64(r.Next()%uint64(us+1)))*time.Microsecond
}

func (r *rng) pid() uint32 { return uint32(r.Between(100, 16000) * 4) }

func (r *rng) guid() string {
	a, b := r.Next(), r.Next()
	return fmt.Sprintf("%08X-%04X-%04X-%04X-%012X", uint32(a>>32), uint16(a>>16), uint16(a)&0x0fff|0x4000,
		uint16(b>>48)&0x3fff|0x8000, b&0xffffffffffff)
}

func pick[T any](r *rng, xs []T) T { return xs[r.Intn(len(xs))] }

// eventHeap orders pending events by time, then by the order they were queued.
type queued struct {
	e   evtx.Event
	seq uint64
}

type eventHeap []queued

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].e.Time.Equal(h[j].e.Time) {
		return h[i].e.Time.Before(h[j].e.Time)
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(queued)) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Noise produces the background events of one channel of one machine, in time order: what the log of
// an ordinary day holds. Activities (a service logon, a user's session, a service restart) are drawn
// one after another and their events queued, so that follow-ups such as a logoff hours after its logon
// come out in their place. Memory stays bounded by the number of open sessions.
type Noise struct {
	m       Machine
	users   []Account
	admins  map[string]bool
	channel string
	r       *rng
	t       time.Time // time of the next activity
	gap     [2]time.Duration
	q       eventHeap
	seq     uint64
	logonID uint64
}

// NewNoise returns the noise of channel (ChannelSecurity, ChannelSystem, ChannelApp or
// ChannelPowerShell) starting at start. users are the machine's interactive accounts, admins the names
// among them in the local Administrators group. The same arguments give the same events.
func NewNoise(m Machine, users []Account, admins []string, seed int64, start time.Time, channel string) *Noise {
	n := &Noise{m: m, users: users, admins: map[string]bool{}, channel: channel, r: newRNG(seed, "noise-"+channel),
		t: start.UTC(), logonID: 0x30000 + uint64(seed&0xffff)<<4}
	for _, a := range admins {
		n.admins[a] = true
	}
	// Mean gaps give about 330 Security, 80 System, 40 Application and 50 PowerShell events a day.
	switch channel {
	case ChannelSecurity:
		n.gap = [2]time.Duration{2 * time.Second, 14 * time.Minute}
	case ChannelSystem:
		n.gap = [2]time.Duration{time.Minute, 60 * time.Minute}
	case ChannelApp:
		n.gap = [2]time.Duration{time.Minute, 90 * time.Minute}
	default:
		n.gap = [2]time.Duration{10 * time.Minute, 6 * time.Hour}
	}
	return n
}

// SetRate changes the spacing of activities to a uniform gap in [lo, hi]: the benchmark packs years of
// a busy server into one file.
func (n *Noise) SetRate(lo, hi time.Duration) { n.gap = [2]time.Duration{lo, hi} }

// Next returns the next event.
func (n *Noise) Next() evtx.Event {
	for len(n.q) == 0 || n.q[0].e.Time.After(n.t) {
		n.activity()
		n.t = n.t.Add(n.r.dur(n.gap[0], n.gap[1]))
	}
	return heap.Pop(&n.q).(queued).e
}

// Until returns the events before end.
func (n *Noise) Until(end time.Time) []evtx.Event {
	var out []evtx.Event
	for {
		e := n.Next()
		if !e.Time.Before(end) {
			n.push(e) // keep it for a later call
			return out
		}
		out = append(out, e)
	}
}

func (n *Noise) push(e evtx.Event) {
	n.seq++
	heap.Push(&n.q, queued{e, n.seq})
}

func (n *Noise) newLogonID() uint64 {
	n.logonID += uint64(n.r.Between(0x100, 0x9000))
	return n.logonID
}

func (n *Noise) activity() {
	switch n.channel {
	case ChannelSecurity:
		n.security()
	case ChannelSystem:
		n.system()
	case ChannelApp:
		n.application()
	default:
		n.powershell()
	}
}

// systemProcesses are started by SYSTEM all day long on any Windows 10/11 machine.
var systemProcesses = []struct{ image, cmd, parent string }{
	{`C:\Windows\System32\svchost.exe`, `C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule`, `C:\Windows\System32\services.exe`},
	{`C:\Windows\System32\svchost.exe`, `C:\Windows\System32\svchost.exe -k wsappx -p -s ClipSVC`, `C:\Windows\System32\services.exe`},
	{`C:\Windows\System32\svchost.exe`, `C:\Windows\system32\svchost.exe -k LocalServiceNetworkRestricted -p -s wscsvc`, `C:\Windows\System32\services.exe`},
	{`C:\Windows\System32\taskhostw.exe`, `taskhostw.exe -RegisterDevice -ProtectionStateChanged -FreeNetworkOnly`, `C:\Windows\System32\svchost.exe`},
	{`C:\Windows\System32\wbem\WmiPrvSE.exe`, `C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding`, `C:\Windows\System32\svchost.exe`},
	{`C:\Windows\System32\sppsvc.exe`, `C:\Windows\system32\sppsvc.exe`, `C:\Windows\System32\services.exe`},
	{`C:\Windows\System32\SearchProtocolHost.exe`, `"C:\Windows\system32\SearchProtocolHost.exe" Global\UsGthrFltPipeMssGthrPipe1_ Global\UsGthrCtrlFltPipeMssGthrPipe1 1 -2147483646 "Software\Microsoft\Windows Search" "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT; MS Search 4.0 Robot)" "C:\ProgramData\Microsoft\Search\Data\Temp\usgthrsvc" "DownLevelDaemon"`, `C:\Windows\System32\SearchIndexer.exe`},
	{`C:\Windows\System32\MpSigStub.exe`, `C:\Windows\system32\MpSigStub.exe /stub 1.1.24090.11 /payload 1.419.210.0 /program C:\Windows\SoftwareDistribution\Download\Install\AM_Delta_Patch_1.419.210.0.exe`, `C:\Windows\System32\wuauclt.exe`},
	{`C:\Windows\System32\conhost.exe`, `\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1`, `C:\Windows\System32\cmd.exe`},
	{`C:\Windows\System32\CompatTelRunner.exe`, `C:\Windows\system32\compattelrunner.exe -maintenance`, `C:\Windows\System32\svchost.exe`},
	{`C:\Program Files\Windows Defender\MpCmdRun.exe`, `"C:\Program Files\Windows Defender\MpCmdRun.exe" -IdleTask -TaskName WdCacheMaintenance`, `C:\Windows\System32\svchost.exe`},
	{`C:\Windows\System32\usocoreworker.exe`, `C:\Windows\System32\usocoreworker.exe -Embedding`, `C:\Windows\System32\svchost.exe`},
}

// userProcesses are what people start during a working day.
var userProcesses = []struct{ image, cmd, parent string }{
	{`C:\Program Files\Google\Chrome\Application\chrome.exe`, `"C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer --lang=en-US --renderer-client-id=%d`, `C:\Program Files\Google\Chrome\Application\chrome.exe`},
	{`C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE`, `"C:\Program Files\Microsoft Office\Root\Office16\OUTLOOK.EXE" `, `C:\Windows\explorer.exe`},
	{`C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE`, `"C:\Program Files\Microsoft Office\Root\Office16\EXCEL.EXE" "C:\Users\%s\Documents\Budget.xlsx"`, `C:\Windows\explorer.exe`},
	{`C:\Windows\System32\notepad.exe`, `"C:\Windows\system32\notepad.exe" `, `C:\Windows\explorer.exe`},
	{`C:\Windows\System32\RuntimeBroker.exe`, `C:\Windows\System32\RuntimeBroker.exe -Embedding`, `C:\Windows\System32\svchost.exe`},
	{`C:\Windows\System32\backgroundTaskHost.exe`, `"C:\Windows\system32\backgroundTaskHost.exe" -ServerName:BackgroundTaskHost.WebAccountProvider`, `C:\Windows\System32\svchost.exe`},
	{`C:\Windows\System32\cmd.exe`, `"C:\Windows\system32\cmd.exe" `, `C:\Windows\explorer.exe`},
	{`C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, `"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe" `, `C:\Windows\explorer.exe`},
	{`C:\Users\%s\AppData\Local\Microsoft\Teams\current\Teams.exe`, `"C:\Users\%s\AppData\Local\Microsoft\Teams\current\Teams.exe" --type=gpu-process`, `C:\Users\%s\AppData\Local\Microsoft\Teams\current\Teams.exe`},
	{`C:\Windows\System32\dllhost.exe`, `C:\Windows\system32\DllHost.exe /Processid:{AB8902B4-09CA-4BB6-B78D-A8F59079A8D5}`, `C:\Windows\System32\svchost.exe`},
}

func (n *Noise) security() {
	r, m, t := n.r, n.m, n.t
	tid := uint32(r.Between(50, 4000) * 4)
	switch k := r.Intn(100); {
	case k < 30: // a service starting under SYSTEM
		id := uint64(0x3e7)
		sys := Account{Name: "SYSTEM", Domain: "NT AUTHORITY", SID: SIDSystem}
		n.push(m.Logon4624(Logon{Time: t, Target: sys, Type: 5, LogonID: id, ProcessID: uint64(m.SvcPID),
			ProcessName: `C:\Windows\System32\services.exe`, Elevated: true, ThreadID: tid}))
		n.push(m.Special4672(t, sys, id, SystemPrivileges, tid))
	case k < 65: // a process
		p := pick(r, systemProcesses)
		subj, logon, elevated := m.computerAccount(), uint64(0x3e7), false
		if len(n.users) > 0 && r.Intn(2) == 0 {
			u := pick(r, n.users)
			up := pick(r, userProcesses)
			p.image = strings.ReplaceAll(up.image, "%s", u.Name)
			p.cmd = strings.ReplaceAll(up.cmd, "%s", u.Name)
			p.cmd = strings.ReplaceAll(p.cmd, "%d", fmt.Sprint(r.Between(4, 400)))
			p.parent = strings.ReplaceAll(up.parent, "%s", u.Name)
			subj, logon, elevated = u, n.logonID, false
		}
		n.push(m.Process4688(Process{Time: t, Subject: subj, LogonID: logon, PID: uint64(r.pid()), Image: p.image,
			CommandLine: p.cmd, ParentPID: uint64(r.pid()), ParentImage: p.parent, Elevated: elevated, ThreadID: tid}))
	case k < 80: // a network logon from a neighbour (file share, management), then its logoff
		if len(n.users) == 0 {
			return
		}
		u := pick(r, n.users)
		id := n.newLogonID()
		n.push(m.Logon4624(Logon{Time: t, Target: u, Type: 3, LogonID: id, IP: fmt.Sprintf("10.%d.%d.%d", 20+r.Intn(3), r.Intn(255), 2+r.Intn(250)),
			Port: uint16(r.Between(49152, 65535)), Workstation: "-", LogonGUID: r.guid(), ThreadID: tid}))
		n.push(m.Logoff4634(t.Add(r.dur(time.Second, 5*time.Minute)), u, id, 3, tid))
	case k < 88: // a user's interactive logon, unlock or cached logon, with the session's end later
		if len(n.users) == 0 {
			return
		}
		u := pick(r, n.users)
		typ := pick(r, []uint32{2, 7, 7, 7, 11})
		id := n.newLogonID()
		winlogon := uint64(r.pid())
		n.push(m.Logon4624(Logon{Time: t, Target: u, Type: typ, LogonID: id, IP: "127.0.0.1", Port: 0,
			Workstation: m.Short, ProcessID: winlogon, ProcessName: `C:\Windows\System32\svchost.exe`,
			Elevated: n.admins[u.Name], LogonGUID: r.guid(), ThreadID: tid}))
		if n.admins[u.Name] {
			n.push(m.Special4672(t, u, id, AdminPrivileges, tid))
		}
		n.push(m.Logoff4634(t.Add(r.dur(10*time.Minute, 9*time.Hour)), u, id, typ, tid))
	default: // group membership enumerated by a management agent
		n.push(m.Group4799(t, m.computerAccount(), 0x3e7, "Administrators", SIDAdmins, uint64(r.pid()),
			`C:\Windows\System32\svchost.exe`, tid))
	}
}

// Group4799 is "A security-enabled local group membership was enumerated".
func (m Machine) Group4799(t time.Time, subject Account, logonID uint64, group, groupSID string, callerPID uint64, caller string, tid uint32) evtx.Event {
	e := m.security(t, 4799, 0, 13826, kwAuditSuccess, tid)
	e.Data = []evtx.Field{
		f("TargetUserName", group), f("TargetDomainName", "Builtin"), f("TargetSid", w.SID(groupSID)),
		f("SubjectUserSid", w.SID(subject.SID)), f("SubjectUserName", subject.Name), f("SubjectDomainName", subject.Domain),
		f("SubjectLogonId", w.HexInt64(logonID)), f("CallerProcessId", w.HexInt64(callerPID)), f("CallerProcessName", caller),
	}
	return e
}

var services = []struct{ display, key string }{
	{"Windows Update", "wuauserv"}, {"Background Intelligent Transfer Service", "BITS"},
	{"Windows Modules Installer", "TrustedInstaller"}, {"Microsoft Store Install Service", "InstallService"},
	{"Software Protection", "sppsvc"}, {"WinHTTP Web Proxy Auto-Discovery Service", "WinHttpAutoProxySvc"},
	{"Device Setup Manager", "DsmSvc"}, {"Windows Error Reporting Service", "WerSvc"},
	{"Update Orchestrator Service", "UsoSvc"}, {"Microsoft Edge Update Service (edgeupdate)", "edgeupdate"},
	{"Delivery Optimization", "DoSvc"}, {"Network Setup Service", "NetSetupSvc"},
}

func (n *Noise) system() {
	r, m, t := n.r, n.m, n.t
	tid := uint32(r.Between(50, 4000) * 4)
	switch k := r.Intn(100); {
	case k < 80: // a demand-start service runs for a while
		s := pick(r, services)
		n.push(m.Service7036(t, s.display, "running", s.key, tid))
		n.push(m.Service7036(t.Add(r.dur(20*time.Second, 30*time.Minute)), s.display, "stopped", s.key, tid))
	case k < 92: // a name that did not resolve
		e := m.base(t, "Microsoft-Windows-DNS-Client", "1C95126E-7EEA-49A9-A3FE-A378B03DDB4D", 1014, ChannelSystem)
		e.Level, e.Task, e.Keywords = 3, 1014, 0x4000000000000000
		e.ProcessID, e.ThreadID, e.UserID = r.pid(), tid, "S-1-5-20"
		e.Data = []evtx.Field{f("QueryName", pick(r, []string{"wpad", "wpad.localdomain", "fileserver01", "_ldap._tcp.dc._msdcs.corp",
			"settings-win.data.microsoft.com", "printer-3f.local"})), f("AddressLength", uint32(128)), f("Address", make([]byte, 128))}
		n.push(e)
	default: // the daily uptime report of the EventLog service
		e := m.base(t, "EventLog", "", 6013, ChannelSystem)
		e.HasQualifiers, e.Qualifiers, e.Level, e.Keywords = true, 32768, 4, 0x80000000000000
		up := int(t.Sub(t.Truncate(30*24*time.Hour)) / time.Second)
		e.Data = []evtx.Field{f("", ""), f("", ""), f("", ""), f("", ""), f("", fmt.Sprint(up)), f("", "60"),
			f("", "0 Coordinated Universal Time")}
		n.push(e)
	}
}

func (n *Noise) application() {
	r, m, t := n.r, n.m, n.t
	switch k := r.Intn(100); {
	case k < 55:
		e := m.base(t, "Microsoft-Windows-Security-SPP", "E23B33B0-C8C9-472C-A5F9-F2BDFEA0F156", 16384, ChannelApp)
		e.EventSourceName, e.HasQualifiers, e.Qualifiers = "Software Protection Platform Service", true, 16384
		e.Level, e.Keywords = 4, 0x80000000000000
		e.Data = []evtx.Field{f("", t.Add(r.dur(time.Hour, 30*time.Hour)).Format("2006-01-02T15:04:05Z")), f("", "RulesEngine")}
		n.push(e)
	case k < 85: // Restart Manager sessions of installers and updaters
		id := uint32(r.Intn(4))
		for i, ev := range []uint16{10000, 10001} {
			e := m.base(t.Add(time.Duration(i)*r.dur(time.Second, 40*time.Second)), "Microsoft-Windows-RestartManager", "0888E5EF-9B98-4695-979D-E92CE4247224", ev, ChannelApp)
			e.Level, e.Keywords = 4, 0x8000000000000000
			e.ProcessID, e.ThreadID = r.pid(), uint32(r.Between(50, 4000)*4)
			e.UserID = SIDSystem
			e.Data = []evtx.Field{f("RmSessionId", id), f("UTCStartTime", t)}
			n.push(e)
		}
	default:
		e := m.base(t, "Windows Error Reporting", "", 1001, ChannelApp)
		e.HasQualifiers, e.Level, e.Keywords = true, 4, 0x80000000000000
		bucket := fmt.Sprintf("%d", r.Next()%1e18)
		e.Data = []evtx.Field{f("", bucket), f("", "5"), f("", "StoreAgentScanForUpdatesFailure0"), f("", "Not available"),
			f("", "0"), f("", "Update;"), f("", "8024500c"), f("", ""), f("", ""), f("", ""), f("", ""),
			f("", `C:\ProgramData\Microsoft\Windows\WER\ReportArchive\NonCritical_Update;_`+bucket[:10])}
		n.push(e)
	}
}

// benignScripts are script blocks an admin or a management agent runs.
var benignScripts = []string{
	"Get-Service | Where-Object Status -eq Running",
	"Get-ChildItem -Path $env:TEMP -Recurse | Measure-Object -Property Length -Sum",
	"Import-Module Microsoft.PowerShell.Management",
	"prompt",
	"$global:?",
	"Get-ComputerInfo | Select-Object OsName, OsVersion",
	"{ Set-StrictMode -Version 1; $_.PSMessageDetails }",
	"Test-NetConnection fileserver01 -Port 445",
	"Get-NetIPAddress",
}

func (n *Noise) powershell() {
	r, m, t := n.r, n.m, n.t
	u := Account{Name: "SYSTEM", Domain: "NT AUTHORITY", SID: SIDSystem} // a management agent
	if len(n.users) > 0 {
		u = pick(r, n.users)
	}
	pid, tid := r.pid(), uint32(r.Between(50, 4000)*4)
	act := r.guid()
	for i, id := range []uint16{40961, 53504, 40962} {
		e := m.base(t.Add(time.Duration(i)*300*time.Millisecond), PowerShell, PowerShellGUID, id, ChannelPowerShell)
		e.Level, e.Keywords, e.ProcessID, e.ThreadID, e.UserID, e.ActivityID = 4, 0, pid, tid, u.SID, act
		switch id {
		case 40961:
			e.Task, e.Opcode = 4, 1
		case 40962:
			e.Task, e.Opcode = 4, 2
		case 53504:
			e.Task, e.Opcode = 111, 10
			e.Data = []evtx.Field{f("param1", fmt.Sprint(pid)), f("param2", "DefaultAppDomain")}
		}
		n.push(e)
	}
	at := t.Add(time.Second)
	for range r.Between(1, 4) {
		at = at.Add(r.dur(time.Second, 3*time.Minute))
		n.push(m.ScriptBlock4104(ScriptBlock{Time: at, User: u, Text: pick(r, benignScripts), ID: strings.ToLower(r.guid()),
			PID: pid, TID: tid, ActivityID: act}))
	}
}
