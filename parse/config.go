package parse

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"unicode"

	"github.com/quarry-dfir/quarry"
)

// Persistence configuration: crontabs and systemd units carry no times of their own, so each entry
// is an event at the file's modification time — the last moment it can have been added.

var reCronEnv = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\s*=`)

// isSystemCrontab reports whether lines of p have a user column: /etc/crontab and /etc/cron.d/*.
func isSystemCrontab(p string) bool {
	p = slashPath(p)
	return strings.HasSuffix(p, "/etc/crontab") || strings.Contains(p, "/etc/cron.d/") || p == "etc/crontab"
}

func crontabUser(p string) string {
	p = slashPath(p)
	for _, dir := range []string{"/var/spool/cron/crontabs/", "/var/spool/cron/", "/var/cron/tabs/", "/usr/lib/cron/tabs/"} {
		if i := strings.Index(p, dir); i >= 0 {
			u := p[i+len(dir):]
			if !strings.Contains(u, "/") {
				return u
			}
		}
	}
	return ""
}

var crontabParser = Parser{
	Name: "crontab",
	Sniff: func(head []byte, in Input) bool {
		if !isSystemCrontab(in.HostPath) && crontabUser(in.HostPath) == "" {
			return false
		}
		return len(head) == 0 || isPrintableText(head)
	},
	Parse: parseCrontab,
}

func parseCrontab(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "crontab", emit: emitFn, stats: &st}
	system := isSystemCrontab(in.HostPath)
	fileUser := crontabUser(in.HostPath)
	lr := newLineReader(r, &st)
	for b := range lr.raw(ctx) {
		s := strings.TrimSpace(string(b))
		if s == "" || s[0] == '#' || reCronEnv.MatchString(s) {
			continue
		}
		fields := strings.Fields(s)
		n := 5 // schedule fields
		if strings.HasPrefix(fields[0], "@") {
			n = 1
		}
		if system {
			n++
		}
		if len(fields) <= n {
			st.skip("line %d: too few fields for a crontab entry", lr.n)
			continue
		}
		sched := strings.Join(fields[:n-btoi(system)], " ")
		user := fileUser
		if system {
			user = fields[n-1]
		}
		// The command is the rest of the line as written, spacing kept.
		cmd := s
		for i := 0; i < n; i++ {
			cmd = strings.TrimLeftFunc(cmd, unicode.IsSpace)
			cmd = cmd[len(fields[i]):]
		}
		cmd = strings.TrimLeftFunc(cmd, unicode.IsSpace)
		f := map[string]any{"schedule": sched, "command": cmd, "line": int64(lr.n)}
		if user != "" {
			f["user"] = user
		}
		msg := "cron " + sched
		if user != "" {
			msg += " (" + user + ")"
		}
		if err := e.event(in.ModTime, "Crontab File Modification Time", user, msg+": "+cmd, f); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

var systemdUnitParser = Parser{
	Name: "systemd_unit",
	Sniff: func(head []byte, in Input) bool {
		n := strings.ToLower(baseName(in.HostPath))
		for _, ext := range []string{".service", ".timer", ".socket", ".path"} {
			if strings.HasSuffix(n, ext) {
				return isPrintableText(head) && bytes.Contains(head, []byte("["))
			}
		}
		return false
	},
	Parse: parseSystemdUnit,
}

var systemdKeys = map[string]string{
	"Unit.Description":         "description",
	"Service.ExecStart":        "exec_start",
	"Service.ExecStartPre":     "exec_start_pre",
	"Service.ExecStop":         "exec_stop",
	"Service.User":             "user",
	"Service.Group":            "group",
	"Service.Type":             "service_type",
	"Service.WorkingDirectory": "working_directory",
	"Service.Restart":          "restart",
	"Install.WantedBy":         "wanted_by",
	"Install.RequiredBy":       "required_by",
	"Timer.OnCalendar":         "on_calendar",
	"Timer.OnBootSec":          "on_boot_sec",
	"Timer.OnUnitActiveSec":    "on_unit_active_sec",
	"Timer.Unit":               "timer_unit",
	"Socket.ListenStream":      "listen_stream",
	"Path.PathChanged":         "path_changed",
}

// parseSystemdUnit reads an INI-style unit: [Section] headers, Key=Value lines, backslash
// continuations, # and ; comments. Repeated keys are joined with "; ".
func parseSystemdUnit(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "systemd_unit", emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	unit := baseName(in.HostPath)
	f := map[string]any{"unit": unit}
	section := ""
	var pending string // a value continued with a trailing backslash
	pendingKey := ""
	set := func(key, val string) {
		name, ok := systemdKeys[section+"."+key]
		if !ok || val == "" {
			return
		}
		if old, ok := f[name].(string); ok {
			val = old + "; " + val
		}
		if len(val) > 64*1024 {
			val = val[:64*1024]
		}
		f[name] = val
	}
	for b := range lr.raw(ctx) {
		s := strings.TrimSpace(string(b))
		if pendingKey != "" {
			if strings.HasSuffix(s, `\`) {
				pending += " " + strings.TrimSuffix(s, `\`)
				continue
			}
			set(pendingKey, strings.TrimSpace(pending+" "+s))
			pendingKey, pending = "", ""
			continue
		}
		switch {
		case s == "" || s[0] == '#' || s[0] == ';':
		case s[0] == '[' && s[len(s)-1] == ']':
			section = s[1 : len(s)-1]
		default:
			k, v, ok := strings.Cut(s, "=")
			if !ok {
				st.skip("line %d: neither a section nor key=value", lr.n)
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if strings.HasSuffix(v, `\`) {
				pendingKey, pending = k, strings.TrimSuffix(v, `\`)
				continue
			}
			set(k, v)
		}
	}
	if err := lr.error(); err != nil {
		return st, err
	}
	if pendingKey != "" {
		set(pendingKey, strings.TrimSpace(pending))
	}
	user, _ := f["user"].(string)
	if user == "" {
		// A user unit (~/.config/systemd/user/) runs as its owner.
		user = userFromPath(in.HostPath)
	}
	msg := "systemd unit " + unit
	if d, ok := f["description"].(string); ok {
		msg += " (" + d + ")"
	}
	if x, ok := f["exec_start"].(string); ok {
		msg += ": " + x
	} else if c, ok := f["on_calendar"].(string); ok {
		msg += ": on calendar " + c
	}
	return st, e.event(in.ModTime, "Unit File Modification Time", user, msg, f)
}
