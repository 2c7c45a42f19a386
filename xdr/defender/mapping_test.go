package defender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	mde "github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/xdr"
)

// The sentinels the emulator cannot be made to return (Live Response switched off, an offline device
// timing out after days) are checked here on errors shaped as the API client wraps them.
func TestTranslate(t *testing.T) {
	tests := []struct {
		name string
		err  error
		kind error // nil: not an *xdr.Error
		msg  string
	}{
		{"Busy", fmt.Errorf("run: %w", mde.ErrActiveRequestAlreadyExists), xdr.ErrBusy, ""},
		{"LiveResponseOff", fmt.Errorf("x: %w", mde.ErrLiveResponseDisabled), xdr.ErrLiveResponseOff, "Advanced features"},
		{"Offline", fmt.Errorf("%w: %w: never picked up", mde.ErrDeviceOffline, mde.ErrActionTimedOut), xdr.ErrOffline, "offline"},
		{"OutcomeUnknown", fmt.Errorf("x: %w", mde.ErrOutcomeUnknown), xdr.ErrOutcomeUnknown, "active action"},
		{"Unauthorized", fmt.Errorf("x: %w", mde.ErrUnauthorized), xdr.ErrUnauthorized, ""},
		{"NotFound", fmt.Errorf("x: %w", mde.ErrNotFound), xdr.ErrNotFound, ""},
		{"Server", fmt.Errorf("x: %w", mde.ErrServer), xdr.ErrUnavailable, ""},
		{"BadRequest", fmt.Errorf("x: %w", mde.ErrBadRequest), nil, ""},
		{"Canceled", fmt.Errorf("x: %w", context.Canceled), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := translate("op", tt.err)
			var xe *xdr.Error
			isX := errors.As(got, &xe)
			switch {
			case tt.kind == nil && isX:
				t.Fatalf("translate(%v) = %v (%v), want a plain error", tt.err, got, xe.Kind)
			case tt.kind != nil && (!isX || !errors.Is(got, tt.kind)):
				t.Fatalf("translate(%v) = %v, want kind %v", tt.err, got, tt.kind)
			case !errors.Is(got, tt.err):
				t.Errorf("translate(%v) = %v does not wrap the original", tt.err, got)
			case isX && (xe.Message == "" || !strings.Contains(xe.Message, tt.msg)):
				t.Errorf("translate(%v).Message = %q, want it to contain %q", tt.err, xe.Message, tt.msg)
			}
		})
	}
	if translate("op", nil) != nil {
		t.Error("translate(nil) != nil")
	}
}

func TestCheckStepLiveResponseOff(t *testing.T) {
	msg := stepMessage(fmt.Errorf("list library: %w", mde.ErrLiveResponseDisabled))
	if !strings.Contains(msg, "Live Response is not enabled") || !strings.Contains(msg, "Advanced features") {
		t.Errorf("stepMessage(live response disabled) = %q", msg)
	}
}

func TestActionOf(t *testing.T) {
	created := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		status  mde.ActionStatus
		cmd     mde.ActionCommand
		want    string
		wantErr string
	}{
		{mde.ActionPending, mde.ActionCommand{CommandStatus: mde.CommandCreated}, xdr.ActionPending, ""},
		{mde.ActionInProgress, mde.ActionCommand{CommandStatus: mde.CommandCreated}, xdr.ActionInProgress, ""},
		{mde.ActionSucceeded, mde.ActionCommand{CommandStatus: mde.CommandCompleted}, xdr.ActionSucceeded, ""},
		{mde.ActionFailed, mde.ActionCommand{CommandStatus: mde.CommandFailed, Errors: []json.RawMessage{json.RawMessage(`"script execution timed out"`)}},
			xdr.ActionFailed, "script execution timed out"},
		{mde.ActionTimeOut, mde.ActionCommand{CommandStatus: mde.CommandCreated}, xdr.ActionTimedOut, "offline"},
		{mde.ActionTimeOut, mde.ActionCommand{CommandStatus: mde.CommandCreated, StartTime: mde.Time{Time: created}}, xdr.ActionTimedOut, "timed out"},
		{mde.ActionCancelled, mde.ActionCommand{CommandStatus: mde.CommandCreated}, xdr.ActionCancelled, ""},
		{"SomethingNew", mde.ActionCommand{}, xdr.ActionPending, ""},
	}
	for _, tt := range tests {
		a := actionOf(&mde.MachineAction{
			ID: "a1", MachineID: "m1", Status: tt.status, Requestor: "app",
			RequestorComment:    "Quarry acquisition 42 [quarry-req:0123abcd]",
			CreationDateTimeUTC: mde.Time{Time: created}, LastUpdateDateTimeUTC: mde.Time{Time: created.Add(time.Minute)},
			Commands: []mde.ActionCommand{tt.cmd},
		})
		if a.Status != tt.want || !strings.Contains(a.Error, tt.wantErr) || (tt.wantErr == "" && a.Error != "") {
			t.Errorf("actionOf(%s) = status %s error %q, want %s with %q", tt.status, a.Status, a.Error, tt.want, tt.wantErr)
		}
		if a.Comment != "Quarry acquisition 42" || a.HostID != "m1" || !a.CreatedAt.Equal(created) || a.UpdatedAt.Sub(a.CreatedAt) != time.Minute {
			t.Errorf("actionOf(%s) = %+v", tt.status, a)
		}
	}
}

func TestHostFields(t *testing.T) {
	tests := []struct {
		platform, arch, proc, wantOS, wantArch string
	}{
		{"Windows11", "64-bit", "x64", "windows", "amd64"},
		{"WindowsServer2022", "64-bit", "", "windows", "amd64"},
		{"Windows10", "32-bit", "x86", "windows", "386"},
		{"Windows11", "64-bit", "ARM64", "windows", "arm64"},
		{"Linux", "64-bit", "x64", "linux", "amd64"},
		{"Ubuntu", "", "", "linux", ""},
		{"macOS", "64-bit", "ARM64", "macos", "arm64"},
		{"iOS", "", "", "other", ""},
		{"", "", "", "other", ""},
	}
	for _, tt := range tests {
		if got := osFamily(tt.platform); got != tt.wantOS {
			t.Errorf("osFamily(%q) = %q, want %q", tt.platform, got, tt.wantOS)
		}
		if got := arch(tt.arch, tt.proc); got != tt.wantArch {
			t.Errorf("arch(%q, %q) = %q, want %q", tt.arch, tt.proc, got, tt.wantArch)
		}
	}

	now := time.Date(2026, 5, 3, 12, 0, 0, 0, time.UTC)
	build := int64(22631)
	online := []struct {
		health string
		seen   time.Time
		want   bool
	}{
		{"Active", now.Add(-10 * time.Hour), true},
		{"Active", now.Add(-3 * 24 * time.Hour), false},
		{"Active", time.Time{}, false},
		{"Inactive", now.Add(-time.Minute), false},
		{"ImpairedCommunication", now.Add(-time.Minute), false},
	}
	for _, tt := range online {
		h := hostOf(&mde.Machine{ID: "m", HealthStatus: tt.health, LastSeen: mde.Time{Time: tt.seen}, Version: "23H2", OSBuild: &build}, now)
		if h.Online != tt.want {
			t.Errorf("hostOf(%s, last seen %v).Online = %v, want %v", tt.health, tt.seen, h.Online, tt.want)
		}
		if h.OSVersion != "23H2 (build 22631)" || h.Tags == nil {
			t.Errorf("hostOf: OSVersion %q, Tags %v", h.OSVersion, h.Tags)
		}
	}
	if v := osVersion(&mde.Machine{OSVersion: "10.0.22631", Version: "23H2", OSBuild: &build}); v != "10.0.22631" {
		t.Errorf("osVersion with osVersion set = %q", v)
	}
}

func TestEvidenceOf(t *testing.T) {
	tests := []struct {
		in   mde.Evidence
		want xdr.Evidence
		ok   bool
	}{
		{mde.Evidence{EntityType: "File", FilePath: `C:\Users\x\AppData`, FileName: "evil.exe", SHA256: "ab"},
			xdr.Evidence{Type: "file", Value: `C:\Users\x\AppData\evil.exe`, SHA256: "ab"}, true},
		{mde.Evidence{EntityType: "Process", ProcessCommandLine: "bash -i", FilePath: "/bin", FileName: "bash"},
			xdr.Evidence{Type: "process", Value: "bash -i"}, true},
		{mde.Evidence{EntityType: "Process", FilePath: "/usr/bin/", FileName: "curl"}, xdr.Evidence{Type: "process", Value: "/usr/bin/curl"}, true},
		{mde.Evidence{EntityType: "Ip", IPAddress: "198.51.100.7"}, xdr.Evidence{Type: "ip", Value: "198.51.100.7"}, true},
		{mde.Evidence{EntityType: "Url", URL: "https://x.test/a"}, xdr.Evidence{Type: "url", Value: "https://x.test/a"}, true},
		{mde.Evidence{EntityType: "User", AccountName: "bob", DomainName: "CONTOSO"}, xdr.Evidence{Type: "user", Value: `CONTOSO\bob`}, true},
		{mde.Evidence{EntityType: "User", AccountName: "bob", UserPrincipalName: "bob@contoso.com"}, xdr.Evidence{Type: "user", Value: "bob@contoso.com"}, true},
		{mde.Evidence{EntityType: "Registry", RegistryHive: "HKEY_LOCAL_MACHINE", RegistryKey: `SOFTWARE\Run`, RegistryValue: "x.exe"},
			xdr.Evidence{Type: "registry", Value: `HKEY_LOCAL_MACHINE\SOFTWARE\Run = x.exe`}, true},
		{mde.Evidence{EntityType: "Ip"}, xdr.Evidence{}, false},
		{mde.Evidence{}, xdr.Evidence{}, false},
	}
	for _, tt := range tests {
		got, ok := evidenceOf(&tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("evidenceOf(%+v) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzValidate feeds arbitrary settings to Open: it must never panic, and every refusal must be a
// *xdr.ConfigError naming a field.
func FuzzValidate(f *testing.F) {
	f.Add("0f0e0d0c-0b0a-0908-0706-050403020100", "11111111-2222-3333-4444-555555555555", "s", "", "", "", []byte(nil))
	f.Add("emulator", "app", "s", "custom", "https://127.0.0.1:1", "https://127.0.0.1:1/", []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add("t", "c", "s", "CUSTOM", "https://[::1", "%zz", []byte{0x30, 0x82})
	f.Fuzz(func(t *testing.T, tenant, client, secret, cloud, api, authority string, ca []byte) {
		c, err := Open(xdr.Config{TenantID: tenant, ClientID: client, ClientSecret: secret, Cloud: cloud,
			APIURL: api, AuthorityURL: authority, CACertPEM: ca}, mde.Limits{})
		var ce *xdr.ConfigError
		switch {
		case err == nil && c == nil:
			t.Fatal("Open returned neither a client nor an error")
		case err != nil && (!errors.As(err, &ce) || ce.Field == "" || ce.Message == ""):
			t.Fatalf("Open error %v is not a ConfigError naming a field", err)
		}
	})
}
