//go:build windows

package livestate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	iphlpapi                = windows.NewLazySystemDLL("iphlpapi.dll")
	procGetExtendedTCPTable = iphlpapi.NewProc("GetExtendedTcpTable")
	procGetExtendedUDPTable = iphlpapi.NewProc("GetExtendedUdpTable")

	wtsapi32                        = windows.NewLazySystemDLL("wtsapi32.dll")
	procWTSQuerySessionInformationW = wtsapi32.NewProc("WTSQuerySessionInformationW")
)

const (
	afInet            = 2
	afInet6           = 23
	tcpTableOwnerPID  = 5 // TCP_TABLE_OWNER_PID_ALL
	udpTableOwnerPID  = 1 // UDP_TABLE_OWNER_PID
	wtsUserName       = 5
	wtsDomainName     = 7
	wtsClientName     = 10
	wtsActive         = 0
	wtsDisconnected   = 4
	commandLineBufLen = 8200 // uint64 words: 32767 UTF-16 units plus the UNICODE_STRING header
)

func processes(ctx context.Context, h *hasher) ([]Process, error) {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		return nil, fmt.Errorf("process snapshot: %w", err)
	}
	defer windows.CloseHandle(snap)
	accounts := map[string]string{}
	var out []Process
	var e windows.ProcessEntry32
	e.Size = uint32(unsafe.Sizeof(e))
	for err = windows.Process32First(snap, &e); err == nil; err = windows.Process32Next(snap, &e) {
		p := Process{PID: int(e.ProcessID), PPID: int(e.ParentProcessID), Name: windows.UTF16ToString(e.ExeFile[:])}
		details(&p, accounts)
		if exe := p.Exe; exe != "" {
			p.ExeSHA256, p.ExeError = h.hash(ctx, strings.ToLower(exe), func() (*os.File, error) { return os.Open(exe) })
		}
		out = append(out, p)
	}
	if !errors.Is(err, windows.ERROR_NO_MORE_FILES) {
		return out, fmt.Errorf("process snapshot: %w", err)
	}
	return out, nil
}

// details fills what needs a process handle. Protected and other users'
// processes refuse it without SeDebugPrivilege; they keep pid and name.
func details(p *Process, accounts map[string]string) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(p.PID))
	if err != nil {
		return
	}
	defer windows.CloseHandle(h)
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(buf))
	if windows.QueryFullProcessImageName(h, 0, &buf[0], &n) == nil {
		p.Exe = windows.UTF16ToString(buf[:n])
	}
	var created, exited, kernel, user windows.Filetime
	if windows.GetProcessTimes(h, &created, &exited, &kernel, &user) == nil && created.Nanoseconds() > 0 {
		p.StartTime = time.Unix(0, created.Nanoseconds()).UTC()
	}
	p.CommandLine = commandLine(h)
	p.User = processUser(h, accounts)
}

// commandLine asks for ProcessCommandLineInformation, which needs only
// PROCESS_QUERY_LIMITED_INFORMATION (Windows 8.1 and later), instead of
// reading the PEB of the other process.
func commandLine(h windows.Handle) string {
	buf := make([]uint64, commandLineBufLen) // uint64 keeps the UNICODE_STRING aligned
	var n uint32
	size := uint32(len(buf) * 8)
	if err := windows.NtQueryInformationProcess(h, windows.ProcessCommandLineInformation, unsafe.Pointer(&buf[0]), size, &n); err != nil {
		return ""
	}
	return (*windows.NTUnicodeString)(unsafe.Pointer(&buf[0])).String()
}

// processUser returns DOMAIN\name of the process token, caching lookups by
// SID because LookupAccountSid may ask a domain controller.
func processUser(h windows.Handle, accounts map[string]string) string {
	var tok windows.Token
	if windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok) != nil {
		return ""
	}
	defer tok.Close()
	tu, err := tok.GetTokenUser()
	if err != nil {
		return ""
	}
	sid := tu.User.Sid.String()
	if name, ok := accounts[sid]; ok {
		return name
	}
	name := sid
	if account, domain, _, err := tu.User.Sid.LookupAccount(""); err == nil {
		name = domain + `\` + account
	}
	accounts[sid] = name
	return name
}

func connections(context.Context) ([]Connection, error) {
	var out []Connection
	var errs []error
	for _, t := range []struct {
		proto         string
		proc          *windows.LazyProc
		family, class uint32
	}{
		{"tcp", procGetExtendedTCPTable, afInet, tcpTableOwnerPID},
		{"tcp6", procGetExtendedTCPTable, afInet6, tcpTableOwnerPID},
		{"udp", procGetExtendedUDPTable, afInet, udpTableOwnerPID},
		{"udp6", procGetExtendedUDPTable, afInet6, udpTableOwnerPID},
	} {
		b, err := ownerTable(t.proc, t.family, t.class)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.proto, err))
			continue
		}
		conns, err := parseWinTable(t.proto, b)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, conns...)
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// ownerTable calls GetExtendedTcpTable or GetExtendedUdpTable, growing the
// buffer while connections appear between the calls.
func ownerTable(proc *windows.LazyProc, family, class uint32) ([]byte, error) {
	size := uint32(64 * 1024)
	for range 8 {
		buf := make([]byte, size)
		r, _, _ := proc.Call(uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0, uintptr(family), uintptr(class), 0)
		switch windows.Errno(r) {
		case 0:
			return buf, nil
		case windows.ERROR_INSUFFICIENT_BUFFER:
			size += 16 * 1024
		default:
			return nil, windows.Errno(r)
		}
	}
	return nil, errors.New("connection table keeps growing")
}

func users(context.Context) ([]User, error) {
	var sessions *windows.WTS_SESSION_INFO
	var count uint32
	if err := windows.WTSEnumerateSessions(0, 0, 1, &sessions, &count); err != nil {
		return nil, fmt.Errorf("enumerate sessions: %w", err)
	}
	defer windows.WTSFreeMemory(uintptr(unsafe.Pointer(sessions)))
	out := []User{}
	for _, s := range unsafe.Slice(sessions, count) {
		if s.State != wtsActive && s.State != wtsDisconnected {
			continue
		}
		name := sessionString(s.SessionID, wtsUserName)
		if name == "" {
			continue // services and listener sessions have no user
		}
		if domain := sessionString(s.SessionID, wtsDomainName); domain != "" {
			name = domain + `\` + name
		}
		out = append(out, User{
			Name:     name,
			Terminal: windows.UTF16PtrToString(s.WindowStationName),
			Host:     sessionString(s.SessionID, wtsClientName),
			Session:  int(s.SessionID),
		})
	}
	return out, nil
}

// sessionString queries one string property of a terminal services session.
func sessionString(session uint32, class uint32) string {
	var p *uint16
	var n uint32
	r, _, _ := procWTSQuerySessionInformationW.Call(0, uintptr(session), uintptr(class), uintptr(unsafe.Pointer(&p)), uintptr(unsafe.Pointer(&n)))
	if r == 0 || p == nil {
		return ""
	}
	defer windows.WTSFreeMemory(uintptr(unsafe.Pointer(p)))
	return windows.UTF16PtrToString(p)
}
