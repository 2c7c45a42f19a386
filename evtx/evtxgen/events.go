// Package evtxgen builds realistic Windows events — the ones a triage looks at first, with the
// providers, GUIDs, channels, task, opcode and keyword values and the data fields (names, order and
// types) that Windows writes — and background noise at any scale, deterministic from a seed. It also
// gives simulated Windows hosts their event logs (WriteHostLogs).
package evtxgen

import (
	"fmt"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry/evtx"
	w "github.com/quarry-dfir/quarry/evtx/evtxwriter"
)

// Providers, as registered on Windows 10/11 and Server 2016+.
const (
	SecurityAuditing     = "Microsoft-Windows-Security-Auditing"
	SecurityAuditingGUID = "54849625-5478-4994-A5BA-3E3B0328C30D"
	Eventlog             = "Microsoft-Windows-Eventlog"
	EventlogGUID         = "FC65DDD8-D6EF-4962-83D5-6E5CFE9CE148"
	SCM                  = "Service Control Manager"
	SCMGUID              = "555908D1-A6D7-4695-8E1E-26931D2012F4"
	PowerShell           = "Microsoft-Windows-PowerShell"
	PowerShellGUID       = "A0C1853B-5C40-4B15-8766-3CF1C58F985A"
	Sysmon               = "Microsoft-Windows-Sysmon"
	SysmonGUID           = "5770385F-C22A-43E0-BF4C-06F5698FFBD9"

	ChannelSecurity   = "Security"
	ChannelSystem     = "System"
	ChannelPowerShell = "Microsoft-Windows-PowerShell/Operational"
	ChannelSysmon     = "Microsoft-Windows-Sysmon/Operational"
	ChannelApp        = "Application"
)

// Keywords of the Security log: audit success and audit failure (plus the classic bit Windows sets).
const (
	kwAuditSuccess = 0x8020000000000000
	kwAuditFailure = 0x8010000000000000
)

// Well-known SIDs.
const (
	SIDSystem   = "S-1-5-18"
	SIDNull     = "S-1-0-0"
	SIDAdmins   = "S-1-5-32-544"
	sidLocalSvc = "S-1-5-19"
)

// Machine is the computer events are logged on.
type Machine struct {
	Computer string // DNS name as Windows logs it: "WS-FIN-012.contoso.local" or "WS-FIN-012"
	Short    string // NetBIOS computer name, upper case, at most 15 characters
	Domain   string // NetBIOS domain, or Short for a workgroup machine
	SID      string // machine (local account domain) SID, "S-1-5-21-a-b-c"
	LsassPID uint32 // process id of lsass.exe, which logs the Security channel
	SvcPID   uint32 // process id of services.exe, which logs 7045/7036
	LogPID   uint32 // process id of the svchost.exe running the EventLog service (1102, 104)
}

// Account is a user as events name it.
type Account struct {
	Name   string
	Domain string
	SID    string
}

// computerAccount is the machine's own account (NAME$), the subject of most system-initiated events.
func (m Machine) computerAccount() Account {
	return Account{Name: m.Short + "$", Domain: m.Domain, SID: SIDSystem}
}

func (m Machine) base(t time.Time, provider, guid string, id uint16, channel string) evtx.Event {
	return evtx.Event{Time: t.UTC(), Provider: provider, ProviderGUID: guid, EventID: id, Channel: channel,
		Computer: m.Computer, DataKind: "EventData"}
}

func (m Machine) security(t time.Time, id uint16, version uint8, task uint16, kw uint64, tid uint32) evtx.Event {
	e := m.base(t, SecurityAuditing, SecurityAuditingGUID, id, ChannelSecurity)
	e.Version, e.Task, e.Keywords = version, task, kw
	e.ProcessID, e.ThreadID = m.LsassPID, tid
	return e
}

func f(name string, v any) evtx.Field { return evtx.Field{Name: name, Value: v} }

// Logon is what a 4624 or 4625 says about a logon.
type Logon struct {
	Time        time.Time
	Target      Account
	Type        uint32 // 2 interactive, 3 network, 5 service, 7 unlock, 10 remote interactive, 11 cached
	LogonID     uint64 // the new session's id (4624)
	IP          string // source address, "-" or "" for local logons
	Port        uint16
	Workstation string // the client's name, "-" when unknown
	ProcessID   uint64 // the process that asked for the logon (winlogon, svchost for RDP, services)
	ProcessName string
	Elevated    bool
	NTLM        bool   // authenticated with NTLM (network logons from outside the domain)
	LogonGUID   string // Kerberos logon GUID, zero GUID for NTLM
	ThreadID    uint32
}

func (l Logon) subject(m Machine) (Account, uint64) {
	if l.Type == 3 {
		return Account{Name: "-", Domain: "-", SID: SIDNull}, 0
	}
	return m.computerAccount(), 0x3e7
}

func (l Logon) processes() (uint64, string, string, string) {
	pid, name := l.ProcessID, l.ProcessName
	if name == "" {
		pid, name = 0, "-"
	}
	lproc, auth := "User32 ", "Negotiate"
	switch l.Type {
	case 3:
		lproc, auth = "NtLmSsp ", "NTLM"
		if !l.NTLM {
			lproc, auth = "Kerberos", "Kerberos"
		}
	case 5:
		lproc = "Advapi  "
	}
	return pid, name, lproc, auth
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Logon4624 is "An account was successfully logged on" (version 2, Windows 10 and later).
func (m Machine) Logon4624(l Logon) evtx.Event {
	e := m.security(l.Time, 4624, 2, 12544, kwAuditSuccess, l.ThreadID)
	subj, subjLogon := l.subject(m)
	pid, pname, lproc, auth := l.processes()
	lm, keyLen := "-", uint32(0)
	if l.Type == 3 && l.NTLM {
		lm, keyLen = "NTLM V2", 128
	}
	guid := l.LogonGUID
	if guid == "" {
		guid = "00000000-0000-0000-0000-000000000000"
	}
	elevated := "%%1843" // No
	if l.Elevated {
		elevated = "%%1842" // Yes
	}
	restricted := "-"
	if l.Type == 10 {
		restricted = "%%1843"
	}
	port := "-"
	if l.IP != "" && l.IP != "-" {
		port = fmt.Sprint(l.Port)
	}
	e.Data = []evtx.Field{
		f("SubjectUserSid", w.SID(subj.SID)), f("SubjectUserName", subj.Name), f("SubjectDomainName", subj.Domain),
		f("SubjectLogonId", w.HexInt64(subjLogon)),
		f("TargetUserSid", w.SID(l.Target.SID)), f("TargetUserName", l.Target.Name), f("TargetDomainName", l.Target.Domain),
		f("TargetLogonId", w.HexInt64(l.LogonID)),
		f("LogonType", l.Type), f("LogonProcessName", lproc), f("AuthenticationPackageName", auth),
		f("WorkstationName", dash(l.Workstation)), f("LogonGuid", w.GUID(guid)), f("TransmittedServices", "-"),
		f("LmPackageName", lm), f("KeyLength", keyLen), f("ProcessId", w.HexInt64(pid)), f("ProcessName", pname),
		f("IpAddress", dash(l.IP)), f("IpPort", port), f("ImpersonationLevel", "%%1833"),
		f("RestrictedAdminMode", restricted), f("TargetOutboundUserName", "-"), f("TargetOutboundDomainName", "-"),
		f("VirtualAccount", "%%1843"), f("TargetLinkedLogonId", w.HexInt64(0)), f("ElevatedToken", elevated),
	}
	return e
}

// Failure reasons of 4625: Status, SubStatus and the FailureReason message.
const (
	StatusLogonFailure = 0xc000006d
	SubBadPassword     = 0xc000006a
	SubNoSuchUser      = 0xc0000064
)

// Logon4625 is "An account failed to log on". sub is SubBadPassword or SubNoSuchUser.
func (m Machine) Logon4625(l Logon, sub uint32) evtx.Event {
	e := m.security(l.Time, 4625, 0, 12544, kwAuditFailure, l.ThreadID)
	subj, subjLogon := l.subject(m)
	pid, pname, lproc, auth := l.processes()
	port := "-"
	if l.IP != "" && l.IP != "-" {
		port = fmt.Sprint(l.Port)
	}
	e.Data = []evtx.Field{
		f("SubjectUserSid", w.SID(subj.SID)), f("SubjectUserName", subj.Name), f("SubjectDomainName", subj.Domain),
		f("SubjectLogonId", w.HexInt64(subjLogon)),
		f("TargetUserSid", w.SID(SIDNull)), f("TargetUserName", l.Target.Name), f("TargetDomainName", l.Target.Domain),
		f("Status", w.HexInt32(StatusLogonFailure)), f("FailureReason", "%%2313"), f("SubStatus", w.HexInt32(sub)),
		f("LogonType", l.Type), f("LogonProcessName", lproc), f("AuthenticationPackageName", auth),
		f("WorkstationName", dash(l.Workstation)), f("TransmittedServices", "-"), f("LmPackageName", "-"),
		f("KeyLength", uint32(0)), f("ProcessId", w.HexInt64(pid)), f("ProcessName", pname),
		f("IpAddress", dash(l.IP)), f("IpPort", port),
	}
	return e
}

// Logoff4634 is "An account was logged off".
func (m Machine) Logoff4634(t time.Time, target Account, logonID uint64, logonType uint32, tid uint32) evtx.Event {
	e := m.security(t, 4634, 0, 12545, kwAuditSuccess, tid)
	e.Data = []evtx.Field{
		f("TargetUserSid", w.SID(target.SID)), f("TargetUserName", target.Name), f("TargetDomainName", target.Domain),
		f("TargetLogonId", w.HexInt64(logonID)), f("LogonType", logonType),
	}
	return e
}

// AdminPrivileges is the privilege list 4672 shows for an administrator's logon.
var AdminPrivileges = []string{"SeSecurityPrivilege", "SeTakeOwnershipPrivilege", "SeLoadDriverPrivilege",
	"SeBackupPrivilege", "SeRestorePrivilege", "SeDebugPrivilege", "SeSystemEnvironmentPrivilege",
	"SeImpersonatePrivilege", "SeDelegateSessionUserImpersonatePrivilege"}

// SystemPrivileges is what 4672 lists for SYSTEM's service logons.
var SystemPrivileges = []string{"SeAssignPrimaryTokenPrivilege", "SeTcbPrivilege", "SeSecurityPrivilege",
	"SeTakeOwnershipPrivilege", "SeLoadDriverPrivilege", "SeBackupPrivilege", "SeRestorePrivilege",
	"SeDebugPrivilege", "SeAuditPrivilege", "SeSystemEnvironmentPrivilege", "SeImpersonatePrivilege",
	"SeDelegateSessionUserImpersonatePrivilege"}

// privList formats privileges the way the Security log does: one per line, continuation lines indented.
func privList(p []string) string { return strings.Join(p, "\r\n\t\t\t") }

// Special4672 is "Special privileges assigned to new logon".
func (m Machine) Special4672(t time.Time, subject Account, logonID uint64, privs []string, tid uint32) evtx.Event {
	e := m.security(t, 4672, 0, 12548, kwAuditSuccess, tid)
	e.Data = []evtx.Field{
		f("SubjectUserSid", w.SID(subject.SID)), f("SubjectUserName", subject.Name), f("SubjectDomainName", subject.Domain),
		f("SubjectLogonId", w.HexInt64(logonID)), f("PrivilegeList", privList(privs)),
	}
	return e
}

// Process is what 4688 says about a new process.
type Process struct {
	Time        time.Time
	Subject     Account
	LogonID     uint64
	PID         uint64
	Image       string // full path of the new process
	CommandLine string
	ParentPID   uint64
	ParentImage string
	Elevated    bool // TokenElevationType full (%%1937) rather than default (%%1936)
	ThreadID    uint32
}

// Process4688 is "A new process has been created" (version 2, with command line auditing on).
func (m Machine) Process4688(p Process) evtx.Event {
	e := m.security(p.Time, 4688, 2, 13312, kwAuditSuccess, p.ThreadID)
	elev, label := "%%1938", "S-1-16-8192" // limited token, medium integrity
	if p.Elevated {
		elev, label = "%%1937", "S-1-16-12288"
	}
	if p.Subject.SID == SIDSystem {
		elev, label = "%%1936", "S-1-16-16384"
	}
	e.Data = []evtx.Field{
		f("SubjectUserSid", w.SID(p.Subject.SID)), f("SubjectUserName", p.Subject.Name), f("SubjectDomainName", p.Subject.Domain),
		f("SubjectLogonId", w.HexInt64(p.LogonID)), f("NewProcessId", w.HexInt64(p.PID)), f("NewProcessName", p.Image),
		f("TokenElevationType", elev), f("ProcessId", w.HexInt64(p.ParentPID)), f("CommandLine", p.CommandLine),
		f("TargetUserSid", w.SID(SIDNull)), f("TargetUserName", "-"), f("TargetDomainName", "-"),
		f("TargetLogonId", w.HexInt64(0)), f("ParentProcessName", p.ParentImage), f("MandatoryLabel", w.SID(label)),
	}
	return e
}

// Task4698 is "A scheduled task was created"; content is the task's XML as Task Scheduler stores it.
func (m Machine) Task4698(t time.Time, subject Account, logonID uint64, name, content string, tid uint32) evtx.Event {
	e := m.security(t, 4698, 1, 12804, kwAuditSuccess, tid)
	e.Data = []evtx.Field{
		f("SubjectUserSid", w.SID(subject.SID)), f("SubjectUserName", subject.Name), f("SubjectDomainName", subject.Domain),
		f("SubjectLogonId", w.HexInt64(logonID)), f("TaskName", name), f("TaskContent", content),
		f("ClientProcessStartKey", uint64(0x2000000000000000|logonID)), f("ClientProcessId", uint32(0)),
		f("ParentProcessId", uint32(0)), f("RpcCallClientLocality", uint32(0)), f("FQDN", m.Computer),
	}
	return e
}

// User4720 is "A user account was created".
func (m Machine) User4720(t time.Time, subject Account, logonID uint64, target Account, tid uint32) evtx.Event {
	e := m.security(t, 4720, 0, 13824, kwAuditSuccess, tid)
	e.Data = []evtx.Field{
		f("TargetUserName", target.Name), f("TargetDomainName", target.Domain), f("TargetSid", w.SID(target.SID)),
		f("SubjectUserSid", w.SID(subject.SID)), f("SubjectUserName", subject.Name), f("SubjectDomainName", subject.Domain),
		f("SubjectLogonId", w.HexInt64(logonID)), f("PrivilegeList", "-"), f("SamAccountName", target.Name),
		f("DisplayName", "%%1793"), f("UserPrincipalName", "-"), f("HomeDirectory", "%%1793"), f("HomePath", "%%1793"),
		f("ScriptPath", "%%1793"), f("ProfilePath", "%%1793"), f("UserWorkstations", "%%1793"),
		f("PasswordLastSet", "%%1794"), f("AccountExpires", "%%1794"), f("PrimaryGroupId", "513"),
		f("AllowedToDelegateTo", "-"), f("OldUacValue", "0x0"), f("NewUacValue", "0x15"),
		f("UserAccountControl", "\r\n\t\t%%2080\r\n\t\t%%2082\r\n\t\t%%2084"), f("UserParameters", "%%1793"),
		f("SidHistory", "-"), f("LogonHours", "%%1797"),
	}
	return e
}

// Group4732 is "A member was added to a security-enabled local group".
func (m Machine) Group4732(t time.Time, subject Account, logonID uint64, member Account, group, groupSID string, tid uint32) evtx.Event {
	e := m.security(t, 4732, 0, 13826, kwAuditSuccess, tid)
	e.Data = []evtx.Field{
		f("MemberName", "-"), f("MemberSid", w.SID(member.SID)), f("TargetUserName", group), f("TargetDomainName", "Builtin"),
		f("TargetSid", w.SID(groupSID)), f("SubjectUserSid", w.SID(subject.SID)), f("SubjectUserName", subject.Name),
		f("SubjectDomainName", subject.Domain), f("SubjectLogonId", w.HexInt64(logonID)), f("PrivilegeList", "-"),
	}
	return e
}

// Cleared1102 is "The audit log was cleared" in the Security channel.
func (m Machine) Cleared1102(t time.Time, subject Account, logonID uint64, tid uint32) evtx.Event {
	e := m.base(t, Eventlog, EventlogGUID, 1102, ChannelSecurity)
	e.Level, e.Task, e.Keywords = 4, 104, 0x4020000000000000
	e.ProcessID, e.ThreadID = m.LogPID, tid
	e.DataKind, e.UserDataName = "UserData", "LogFileCleared"
	e.Data = []evtx.Field{
		f("SubjectUserSid", w.SID(subject.SID)), f("SubjectUserName", subject.Name),
		f("SubjectDomainName", subject.Domain), f("SubjectLogonId", w.HexInt64(logonID)),
	}
	return e
}

// Cleared104 is "The <channel> log file was cleared", logged in the System channel.
func (m Machine) Cleared104(t time.Time, subject Account, channel string, tid uint32) evtx.Event {
	e := m.base(t, Eventlog, EventlogGUID, 104, ChannelSystem)
	e.Level, e.Task, e.Keywords = 4, 104, 0x8000000000000000
	e.ProcessID, e.ThreadID = m.LogPID, tid
	e.UserID = subject.SID
	e.DataKind, e.UserDataName = "UserData", "LogFileCleared"
	e.Data = []evtx.Field{
		f("SubjectUserName", subject.Name), f("SubjectDomainName", subject.Domain), f("Channel", channel), f("BackupPath", ""),
	}
	return e
}

func (m Machine) scm(t time.Time, id uint16, tid uint32) evtx.Event {
	e := m.base(t, SCM, SCMGUID, id, ChannelSystem)
	e.EventSourceName, e.HasQualifiers, e.Qualifiers = SCM, true, 16384
	e.Level, e.Keywords = 4, 0x8080000000000000
	e.ProcessID, e.ThreadID = m.SvcPID, tid
	return e
}

// Service7045 is "A service was installed in the system". startType is "auto start", "demand start"...
func (m Machine) Service7045(t time.Time, installer Account, name, image, startType, account string, tid uint32) evtx.Event {
	e := m.scm(t, 7045, tid)
	e.UserID = installer.SID
	e.Data = []evtx.Field{
		f("ServiceName", name), f("ImagePath", image), f("ServiceType", "user mode service"),
		f("StartType", startType), f("AccountName", account),
	}
	return e
}

// Service7036 is "The <service> service entered the <state> state."
func (m Machine) Service7036(t time.Time, display, state, key string, tid uint32) evtx.Event {
	e := m.scm(t, 7036, tid)
	e.Data = []evtx.Field{f("param1", display), f("param2", state), f("", []byte(utf16z(key)))}
	return e
}

// utf16z is the service key name as 7036's binary data carries it: UTF-16LE with a terminator.
func utf16z(s string) string {
	var b strings.Builder
	for _, r := range s + "\x00" {
		b.WriteByte(byte(r))
		b.WriteByte(byte(r >> 8))
	}
	return b.String()
}

// ScriptBlock is one 4104 event: a script block PowerShell compiled.
type ScriptBlock struct {
	Time       time.Time
	User       Account
	Text       string
	ID         string // ScriptBlockId, a lower-case GUID
	Path       string // script file, "" for interactive input
	Suspicious bool   // logged at Warning level, as PowerShell does for blocks that match its suspicious list
	PID, TID   uint32
	ActivityID string
}

// ScriptBlock4104 is "Creating Scriptblock text (1 of 1)".
func (m Machine) ScriptBlock4104(s ScriptBlock) evtx.Event {
	e := m.base(s.Time, PowerShell, PowerShellGUID, 4104, ChannelPowerShell)
	e.Version, e.Level, e.Task, e.Opcode, e.Keywords = 1, 5, 2, 15, 0
	if s.Suspicious {
		e.Level = 3
	}
	e.ProcessID, e.ThreadID = s.PID, s.TID
	e.UserID = s.User.SID
	e.ActivityID = s.ActivityID
	e.Data = []evtx.Field{
		f("MessageNumber", int32(1)), f("MessageTotal", int32(1)), f("ScriptBlockText", s.Text),
		f("ScriptBlockId", s.ID), f("Path", s.Path),
	}
	return e
}

// SysmonProcess is a Sysmon event 1, "Process Create" (schema 4.90, event version 5).
type SysmonProcess struct {
	Time                       time.Time
	ProcessGUID, ParentGUID    string
	PID, ParentPID             uint32
	Image, CommandLine, Dir    string
	ParentImage, ParentCmdLine string
	User, ParentUser           string // DOMAIN\name
	LogonGUID                  string
	LogonID                    uint64
	Session                    uint32
	Integrity                  string // Low, Medium, High, System
	FileVersion, Description   string
	Product, Company, Original string
	Hashes                     string
	SysmonPID, SysmonTID       uint32
	RuleName                   string
}

// Sysmon1 is Sysmon's process creation event.
func (m Machine) Sysmon1(p SysmonProcess) evtx.Event {
	e := m.base(p.Time, Sysmon, SysmonGUID, 1, ChannelSysmon)
	e.Version, e.Level, e.Task, e.Keywords = 5, 4, 1, 0x8000000000000000
	e.ProcessID, e.ThreadID, e.UserID = p.SysmonPID, p.SysmonTID, SIDSystem
	e.Data = []evtx.Field{
		f("RuleName", dash(p.RuleName)), f("UtcTime", p.Time.UTC().Format("2006-01-02 15:04:05.000")),
		f("ProcessGuid", w.GUID(p.ProcessGUID)), f("ProcessId", p.PID), f("Image", p.Image),
		f("FileVersion", dash(p.FileVersion)), f("Description", dash(p.Description)), f("Product", dash(p.Product)),
		f("Company", dash(p.Company)), f("OriginalFileName", dash(p.Original)), f("CommandLine", p.CommandLine),
		f("CurrentDirectory", p.Dir), f("User", p.User), f("LogonGuid", w.GUID(p.LogonGUID)),
		f("LogonId", w.HexInt64(p.LogonID)), f("TerminalSessionId", p.Session), f("IntegrityLevel", p.Integrity),
		f("Hashes", p.Hashes), f("ParentProcessGuid", w.GUID(p.ParentGUID)), f("ParentProcessId", p.ParentPID),
		f("ParentImage", p.ParentImage), f("ParentCommandLine", p.ParentCmdLine), f("ParentUser", p.ParentUser),
	}
	return e
}

// SysmonFile is a Sysmon event 11, "File created" (event version 2).
type SysmonFile struct {
	Time                 time.Time
	ProcessGUID          string
	PID                  uint32
	Image, Target, User  string // User is DOMAIN\name
	Created              time.Time
	SysmonPID, SysmonTID uint32
	RuleName             string
}

// Sysmon11 is Sysmon's file creation event.
func (m Machine) Sysmon11(p SysmonFile) evtx.Event {
	e := m.base(p.Time, Sysmon, SysmonGUID, 11, ChannelSysmon)
	e.Version, e.Level, e.Task, e.Keywords = 2, 4, 11, 0x8000000000000000
	e.ProcessID, e.ThreadID, e.UserID = p.SysmonPID, p.SysmonTID, SIDSystem
	const layout = "2006-01-02 15:04:05.000"
	e.Data = []evtx.Field{
		f("RuleName", dash(p.RuleName)), f("UtcTime", p.Time.UTC().Format(layout)), f("ProcessGuid", w.GUID(p.ProcessGUID)),
		f("ProcessId", p.PID), f("Image", p.Image), f("TargetFilename", p.Target),
		f("CreationUtcTime", p.Created.UTC().Format(layout)), f("User", p.User),
	}
	return e
}

// SysmonNet is a Sysmon event 3, "Network connection detected" (event version 5).
type SysmonNet struct {
	Time                 time.Time
	ProcessGUID          string
	PID                  uint32
	Image, User          string
	Protocol             string // "tcp" or "udp"
	Initiated            bool
	SrcIP, DstIP         string
	SrcHost, DstHost     string
	SrcPort, DstPort     uint16
	DstPortName          string
	SysmonPID, SysmonTID uint32
	RuleName             string
}

// Sysmon3 is Sysmon's network connection event.
func (m Machine) Sysmon3(p SysmonNet) evtx.Event {
	e := m.base(p.Time, Sysmon, SysmonGUID, 3, ChannelSysmon)
	e.Version, e.Level, e.Task, e.Keywords = 5, 4, 3, 0x8000000000000000
	e.ProcessID, e.ThreadID, e.UserID = p.SysmonPID, p.SysmonTID, SIDSystem
	e.Data = []evtx.Field{
		f("RuleName", dash(p.RuleName)), f("UtcTime", p.Time.UTC().Format("2006-01-02 15:04:05.000")),
		f("ProcessGuid", w.GUID(p.ProcessGUID)), f("ProcessId", p.PID), f("Image", p.Image), f("User", p.User),
		f("Protocol", p.Protocol), f("Initiated", p.Initiated), f("SourceIsIpv6", strings.Contains(p.SrcIP, ":")),
		f("SourceIp", p.SrcIP), f("SourceHostname", dash(p.SrcHost)), f("SourcePort", p.SrcPort), f("SourcePortName", "-"),
		f("DestinationIsIpv6", strings.Contains(p.DstIP, ":")), f("DestinationIp", p.DstIP),
		f("DestinationHostname", dash(p.DstHost)), f("DestinationPort", p.DstPort), f("DestinationPortName", dash(p.DstPortName)),
	}
	return e
}
