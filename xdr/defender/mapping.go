package defender

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	mde "github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/xdr"
)

// onlineWindow is how old a machine's lastSeen may be for the machine to count as online. lastSeen is
// the time of the last full device report, which Defender sends about daily (mde-api.md §3.2), so a
// tighter window would call healthy machines offline. Active health already means the sensor spoke
// within days; the window catches an Active machine whose reports stopped.
const onlineWindow = 48 * time.Hour

// hostOf maps a machine. Online is healthStatus Active with a lastSeen inside onlineWindow of now;
// Defender has no live presence signal in the API, and Live Response queues requests for offline
// machines anyway, so Online is a hint for the UI rather than a promise.
func hostOf(m *mde.Machine, now time.Time) xdr.Host {
	tags := m.MachineTags
	if tags == nil {
		tags = []string{}
	}
	return xdr.Host{
		ID:        m.ID,
		Name:      m.ComputerDNSName,
		OS:        osFamily(m.OSPlatform),
		OSVersion: osVersion(m),
		Arch:      arch(m.OSArchitecture, m.OSProcessor),
		Online:    m.HealthStatus == mde.HealthActive && !m.LastSeen.IsZero() && now.Sub(m.LastSeen.Time) <= onlineWindow,
		LastSeen:  m.LastSeen.Time,
		IP:        m.LastIPAddress,
		Health:    m.HealthStatus,
		Risk:      m.RiskScore,
		Tags:      append([]string{}, tags...),
	}
}

// osFamily maps osPlatform (Windows10, WindowsServer2022, Linux, macOS, ...) to an xdr OS family.
func osFamily(platform string) string {
	p := strings.ToLower(platform)
	switch {
	case strings.HasPrefix(p, "windows"):
		return "windows"
	case p == "linux" || strings.Contains(p, "ubuntu") || strings.Contains(p, "rhel") ||
		strings.Contains(p, "centos") || strings.Contains(p, "debian") || strings.Contains(p, "suse"):
		return "linux"
	case p == "macos" || p == "mac os" || p == "macosx" || p == "os x":
		return "macos"
	}
	return "other"
}

// osVersion is osVersion when the service sends it (often null), else version (22H2, 14.5), with the
// Windows build appended when known: "22H2 (build 19045)".
func osVersion(m *mde.Machine) string {
	v := strings.TrimSpace(m.OSVersion)
	if v == "" {
		v = strings.TrimSpace(m.Version)
	}
	if m.OSBuild != nil && *m.OSBuild > 0 {
		b := strconv.FormatInt(*m.OSBuild, 10)
		if v == "" {
			return "build " + b
		}
		if !strings.Contains(v, b) {
			return v + " (build " + b + ")"
		}
	}
	return v
}

// arch maps osArchitecture (32-bit / 64-bit) and the deprecated but more precise osProcessor (x64,
// ARM64, x86) to Go's names. "" when neither says.
func arch(architecture, processor string) string {
	p := strings.ToLower(processor)
	switch {
	case strings.Contains(p, "arm64") || strings.Contains(p, "aarch64"):
		return "arm64"
	case p == "x64" || p == "amd64" || p == "x86_64":
		return "amd64"
	case p == "x86" || p == "i386" || p == "i686":
		return "386"
	}
	switch strings.ToLower(architecture) {
	case "64-bit":
		return "amd64"
	case "32-bit":
		return "386"
	}
	return ""
}

// statuses maps Defender's action statuses to xdr's.
var statuses = map[mde.ActionStatus]string{
	mde.ActionPending:    xdr.ActionPending,
	mde.ActionInProgress: xdr.ActionInProgress,
	mde.ActionSucceeded:  xdr.ActionSucceeded,
	mde.ActionFailed:     xdr.ActionFailed,
	mde.ActionTimeOut:    xdr.ActionTimedOut,
	mde.ActionCancelled:  xdr.ActionCancelled,
}

// markerRE matches the request tag the API client appends to every runliveresponse comment (to find
// an action whose answer was lost); it is the client's bookkeeping, not the user's words.
var markerRE = regexp.MustCompile(`\s*\[quarry-req:[0-9a-f]+\]$`)

func actionOf(a *mde.MachineAction) *xdr.Action {
	st, ok := statuses[a.Status]
	if !ok {
		// An unknown status is not final: callers keep polling rather than act on a guess.
		st = xdr.ActionPending
	}
	out := &xdr.Action{
		ID:        a.ID,
		HostID:    a.MachineID,
		Status:    st,
		Requestor: a.Requestor,
		Comment:   markerRE.ReplaceAllString(a.RequestorComment, ""),
		CreatedAt: a.CreationDateTimeUTC.Time,
		UpdatedAt: a.LastUpdateDateTimeUTC.Time,
	}
	switch a.Status {
	case mde.ActionFailed:
		var msgs []string
		for _, c := range a.Commands {
			if c.CommandStatus == mde.CommandFailed {
				msgs = append(msgs, c.ErrorText()...)
			}
		}
		out.Error = strings.Join(msgs, "; ")
		if out.Error == "" {
			out.Error = "the action failed"
		}
	case mde.ActionTimeOut:
		out.Error = "the action timed out"
		if !a.Started() {
			out.Error = "the host never picked the request up; it was probably offline"
		}
	}
	return out
}

func alertOf(a *mde.Alert) xdr.Alert {
	out := xdr.Alert{
		ID:          a.ID,
		HostID:      a.MachineID,
		HostName:    a.ComputerDNSName,
		Title:       a.Title,
		Description: a.Description,
		Severity:    strings.ToLower(a.Severity),
		Status:      a.Status,
		Category:    a.Category,
		Techniques:  append([]string{}, a.MitreTechniques...),
		CreatedAt:   a.AlertCreationTime.Time,
		UpdatedAt:   a.LastUpdateTime.Time,
		Evidence:    make([]xdr.Evidence, 0, len(a.Evidence)),
	}
	for i := range a.Evidence {
		if e, ok := evidenceOf(&a.Evidence[i]); ok {
			out.Evidence = append(out.Evidence, e)
		}
	}
	return out
}

// evidenceOf maps one evidence entity to its type and the value an analyst searches for. Entities
// that carry no value are dropped.
func evidenceOf(e *mde.Evidence) (xdr.Evidence, bool) {
	out := xdr.Evidence{Type: strings.ToLower(e.EntityType), SHA256: e.SHA256}
	switch out.Type {
	case "file":
		out.Value = joinPath(e.FilePath, e.FileName)
	case "process":
		out.Value = e.ProcessCommandLine
		if out.Value == "" {
			out.Value = joinPath(e.FilePath, e.FileName)
		}
	case "ip":
		out.Value = e.IPAddress
	case "url":
		out.Value = e.URL
	case "user":
		switch {
		case e.UserPrincipalName != "":
			out.Value = e.UserPrincipalName
		case e.DomainName != "" && e.AccountName != "":
			out.Value = e.DomainName + `\` + e.AccountName
		default:
			out.Value = e.AccountName
		}
	case "registry":
		out.Value = e.RegistryKey
		if e.RegistryHive != "" && !strings.HasPrefix(strings.ToUpper(e.RegistryKey), strings.ToUpper(e.RegistryHive)) {
			out.Value = strings.TrimRight(e.RegistryHive, `\`) + `\` + strings.TrimLeft(e.RegistryKey, `\`)
		}
		if e.RegistryValue != "" {
			out.Value += " = " + e.RegistryValue
		}
	default:
		for _, v := range []string{e.FileName, e.IPAddress, e.URL, e.AccountName, e.RegistryKey} {
			if v != "" {
				out.Value = v
				break
			}
		}
	}
	if out.Type == "" || (out.Value == "" && out.SHA256 == "") {
		return xdr.Evidence{}, false
	}
	return out, true
}

// joinPath joins a folder and a name with the separator the folder already uses.
func joinPath(dir, name string) string {
	switch {
	case dir == "":
		return name
	case name == "":
		return dir
	}
	sep := "/"
	if strings.Contains(dir, `\`) {
		sep = `\`
	}
	return strings.TrimRight(dir, `\/`) + sep + name
}
