package processing

import (
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/collector"
)

// TestRoutesFile checks routes.yaml: it parses, every parser exists (ParseRoutes) and every target
// it names is one of the collector's.
func TestRoutesFile(t *testing.T) {
	rs, err := DefaultRoutes()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := collector.DefaultTargets()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range rs.targetNames() {
		if ts.Get(name) == nil {
			t.Errorf("routes.yaml names target %q, which the collector does not have", name)
		}
	}
}

func TestRoute(t *testing.T) {
	rs, err := DefaultRoutes()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ target, path, want string }{
		{"windows.eventlogs", `C:\Windows\System32\winevt\Logs\Security.evtx`, "evtx"},
		{"", `D:\Windows\System32\winevt\Logs\Security.evtx`, "evtx"},
		{"", `C:\Users\bob\Desktop\saved.EVTX`, "evtx"},
		{"", `C:\Windows\System32\Tasks\Microsoft\Windows\UpdateCheck`, "scheduled_task"},
		{"", `C:\Users\mallory\AppData\Roaming\Microsoft\Windows\PowerShell\PSReadLine\ConsoleHost_history.txt`, "powershell_history"},
		{"windows.registry.system", `C:\Windows\System32\config\SYSTEM`, "-"},
		{"", `C:\$MFT`, "-"},
		{"linux.logs", "/var/log/auth.log", "auth.log"},
		{"linux.logs", "/var/log/auth.log.2", "auth.log"}, // .gz is stripped by the caller
		{"linux.logs", "/var/log/secure-20240301", "auth.log"},
		{"linux.logs", "/var/log/syslog.3", "syslog"},
		{"linux.logs", "/var/log/wtmp.1", "wtmp"},
		{"linux.utmp", "/run/utmp", "utmp"},
		{"linux.logs", "/var/log/journal/abc/system.journal", "-"},
		{"linux.logs", "/var/log/nginx/access.log.1", "access_log"},
		{"linux.logs", "/var/log/unknown.log", ""}, // left to sniffing
		{"unix.shell_history", "/home/alice/.bash_history", "bash_history"},
		{"unix.shell_history", "/root/.zsh_history", "zsh_history"},
		{"linux.cron", "/etc/cron.daily/logrotate", ""}, // a script, not a crontab
		{"linux.cron", "/var/spool/cron/crontabs/alice", "crontab"},
		{"linux.systemd", "/etc/systemd/system/evil.service", "systemd_unit"},
		{"linux.systemd", "/etc/systemd/journald.conf", ""},
	}
	for _, tc := range tests {
		if got := rs.Route(tc.target, tc.path); got != tc.want {
			t.Errorf("Route(%q, %q) = %q, want %q", tc.target, tc.path, got, tc.want)
		}
	}
}

func TestParseRoutesErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"UnknownParser": "routes:\n  - parser: nope\n    globs: [/x]\n",
		"NoMatch":       "routes:\n  - parser: syslog\n",
		"UnknownField":  "routes:\n  - parser: syslog\n    glob: [/x]\n",
		"NoParser":      "routes:\n  - globs: [/x]\n",
	} {
		if _, err := ParseRoutes([]byte(doc)); err == nil {
			t.Errorf("%s: ParseRoutes accepted %q", name, doc)
		}
	}
}

func TestHostZone(t *testing.T) {
	tests := []struct {
		tz     string
		off    int
		want   string // zone name at a winter instant
		offset int
	}{
		{"Europe/Berlin", 3600, "CET", 3600},
		{"W. Europe Standard Time", 3600, "UTC+01:00", 3600}, // a Windows name: the offset stands in
		{"", -5 * 3600, "UTC-05:00", -5 * 3600},
		{"", 0, "UTC", 0},
		{"Local", 0, "UTC", 0}, // the server's own zone is never the host's
		{"UTC", 0, "UTC", 0},
	}
	winter := time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		loc := hostZone(collector.HostInfo{Timezone: tc.tz, UTCOffsetSeconds: tc.off})
		if loc == nil {
			loc = time.UTC
		}
		name, off := winter.In(loc).Zone()
		if name != tc.want || off != tc.offset {
			t.Errorf("hostZone(%q, %d) = %s %d, want %s %d", tc.tz, tc.off, name, off, tc.want, tc.offset)
		}
	}
}
