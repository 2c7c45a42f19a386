package parse

import (
	"context"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// Package manager logs: dpkg.log, apt's history.log, yum.log, dnf.log and dnf.rpm.log.

var dpkgParser = Parser{
	Name: "dpkg",
	Sniff: func(head []byte, in Input) bool {
		return mostLines(head, func(l []byte) bool {
			_, rest, ok := dpkgTime(string(l), in.loc())
			w, _, _ := strings.Cut(rest, " ")
			return ok && dpkgWords[w]
		})
	},
	Parse: parseDpkg,
}

var dpkgWords = map[string]bool{"startup": true, "status": true, "install": true, "upgrade": true,
	"remove": true, "purge": true, "configure": true, "trigproc": true, "conffile": true}

// dpkgTime reads the "2006-01-02 15:04:05 " prefix of a dpkg.log line (local time).
func dpkgTime(s string, loc *time.Location) (time.Time, string, bool) {
	if len(s) < 20 || s[4] != '-' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, "", false
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s[:19], loc)
	if err != nil {
		return time.Time{}, "", false
	}
	return t, s[20:], true
}

func parseDpkg(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "dpkg", emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	for line := range lr.lines(ctx) {
		ts, rest, ok := dpkgTime(line, in.loc())
		if !ok {
			st.skip("line %d: no dpkg timestamp", lr.n)
			continue
		}
		w := strings.Fields(rest)
		f := map[string]any{}
		if len(w) > 0 {
			f["action"] = w[0]
		}
		setPkg := func(p string) {
			name, arch, ok := strings.Cut(p, ":")
			f["package"] = name
			if ok {
				f["arch"] = arch
			}
		}
		switch {
		case len(w) == 4 && (w[0] == "install" || w[0] == "upgrade" || w[0] == "remove" || w[0] == "purge" || w[0] == "configure" || w[0] == "trigproc"):
			setPkg(w[1])
			if w[2] != "<none>" {
				f["old_version"] = w[2]
			}
			if w[3] != "<none>" {
				f["version"] = w[3]
			}
		case len(w) == 4 && w[0] == "status":
			f["status"] = w[1]
			setPkg(w[2])
			f["version"] = w[3]
		case len(w) >= 2 && w[0] == "startup":
			f["action"] = "startup " + strings.Join(w[1:], " ")
		}
		if err := e.event(ts, "Event Time", "", "dpkg: "+rest, f); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}

var aptHistoryParser = Parser{
	Name: "apt_history",
	Sniff: func(head []byte, in Input) bool {
		lines := firstLines(head, 1)
		return isPrintableText(head) && len(lines) == 1 && strings.HasPrefix(string(lines[0]), "Start-Date: ")
	},
	Parse: parseAptHistory,
}

var aptListKeys = map[string]string{"Install": "install", "Upgrade": "upgrade", "Remove": "remove",
	"Purge": "purge", "Downgrade": "downgrade", "Reinstall": "reinstall"}

var reAptRequested = regexp.MustCompile(`^(.*?) \((\d+)\)$`)

// splitAptPackages splits "a:amd64 (1.0, 1.1), b:amd64 (2.0, automatic)" at the commas between
// packages, not those inside the parentheses.
func splitAptPackages(s string) []any {
	var out []any
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				if p := strings.TrimSpace(s[start:i]); p != "" {
					out = append(out, p)
				}
				start = i + 1
			}
		}
	}
	if p := strings.TrimSpace(s[start:]); p != "" {
		out = append(out, p)
	}
	return out
}

// parseAptHistory makes one event per Start-Date … End-Date block, at its start.
func parseAptHistory(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "apt_history", emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	var (
		start  time.Time
		f      map[string]any
		user   string
		counts []string
	)
	flush := func() error {
		if f == nil {
			return nil
		}
		msg := "apt"
		if c, ok := f["command_line"].(string); ok {
			msg += ": " + c
		}
		if len(counts) > 0 {
			msg += " (" + strings.Join(counts, ", ") + ")"
		}
		err := e.event(start, "Start Time", user, msg, f)
		f, user, counts = nil, "", nil
		return err
	}
	parseT := func(v string) (time.Time, bool) {
		t, err := time.ParseInLocation("2006-01-02  15:04:05", strings.TrimSpace(v), in.loc())
		if err != nil {
			t, err = time.ParseInLocation("2006-01-02 15:04:05", strings.TrimSpace(v), in.loc())
		}
		return t, err == nil
	}
	for line := range lr.lines(ctx) {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			st.skip("line %d: not a Key: value line", lr.n)
			continue
		}
		if k == "Start-Date" {
			if err := flush(); err != nil {
				return st, err
			}
			t, ok := parseT(v)
			if !ok {
				st.skip("line %d: bad Start-Date %q", lr.n, v)
				continue
			}
			start, f = t, map[string]any{}
			continue
		}
		if f == nil {
			st.skip("line %d: %s outside a Start-Date block", lr.n, k)
			continue
		}
		switch k {
		case "End-Date":
			if t, ok := parseT(v); ok {
				f["end_time"] = t.UTC()
			}
			if err := flush(); err != nil {
				return st, err
			}
		case "Commandline":
			f["command_line"] = v
		case "Requested-By":
			f["requested_by"] = v
			user = v
			if m := reAptRequested.FindStringSubmatch(v); m != nil {
				user = m[1]
				f["requested_by"] = m[1]
				if n, err := strconv.ParseInt(m[2], 10, 64); err == nil {
					f["requested_by_uid"] = n
				}
			}
		case "Error":
			f["error"] = v
		default:
			if name, ok := aptListKeys[k]; ok {
				pkgs := splitAptPackages(v)
				f[name] = pkgs
				counts = append(counts, strconv.Itoa(len(pkgs))+" "+name)
			} else {
				f[strings.ToLower(strings.ReplaceAll(k, "-", "_"))] = v
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	return st, lr.error()
}

var yumParser = Parser{
	Name: "yum",
	Sniff: func(head []byte, in Input) bool {
		return logName(in.HostPath) == "yum.log" && mostLines(head, func(l []byte) bool {
			_, _, _, _, _, _, _, ok := parseBSDTime(string(l))
			return ok
		})
	},
	Parse: parseYum,
}

// parseYum reads "Jan 02 10:11:12 Installed: name-1.0-1.el7.x86_64": no year, so it is inferred as
// for syslog.
func parseYum(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "yum", emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	for line := range lr.lines(ctx) {
		mon, day, hh, mm, ss, ns, rest, ok := parseBSDTime(line)
		if !ok {
			st.skip("line %d: no timestamp", lr.n)
			continue
		}
		ts, ok := inferYear(mon, day, hh, mm, ss, ns, in.loc(), in.refTime())
		if !ok {
			st.skip("line %d: impossible date", lr.n)
			continue
		}
		rest = strings.TrimSpace(rest)
		f := map[string]any{"year_inferred": true}
		if a, p, ok := strings.Cut(rest, ": "); ok && !strings.Contains(a, " ") {
			f["action"] = strings.ToLower(a)
			f["package"] = strings.TrimSpace(p)
		}
		if err := e.event(ts, "Event Time", "", "yum: "+rest, f); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}

var dnfParser = Parser{
	Name: "dnf",
	Sniff: func(head []byte, in Input) bool {
		n := logName(in.HostPath)
		if !strings.HasPrefix(n, "dnf") && !strings.HasPrefix(n, "hawkey") {
			return false
		}
		return mostLines(head, func(l []byte) bool { _, _, ok := dnfTime(string(l)); return ok })
	},
	Parse: parseDnf,
}

// dnfTime reads the RFC 3339-like stamp dnf writes: 2023-01-02T10:11:12Z, …+0000 or …+00:00.
func dnfTime(s string) (time.Time, string, bool) {
	ts, rest, _ := strings.Cut(s, " ")
	if len(ts) < 20 || ts[10] != 'T' {
		return time.Time{}, "", false
	}
	for _, layout := range []string{"2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05Z0700"} {
		if t, err := time.Parse(layout, ts); err == nil {
			return t, rest, true
		}
	}
	return time.Time{}, "", false
}

var dnfActions = map[string]string{"Installed": "installed", "Installing": "installed", "Upgraded": "upgraded",
	"Upgrade": "upgrade", "Upgrading": "upgrade", "Erase": "erase", "Erased": "erase", "Removed": "removed",
	"Downgrade": "downgrade", "Downgraded": "downgraded", "Reinstall": "reinstall", "Reinstalled": "reinstalled",
	"Cleanup": "cleanup"}

func parseDnf(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "dnf", emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	for line := range lr.lines(ctx) {
		ts, rest, ok := dnfTime(line)
		if !ok {
			st.skip("line %d: no timestamp", lr.n)
			continue
		}
		f := map[string]any{}
		level, msg, _ := strings.Cut(rest, " ")
		switch level {
		case "DDEBUG", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "SUBDEBUG", "TRACE":
			f["level"] = level
		default:
			msg = rest
		}
		if a, p, ok := strings.Cut(msg, ": "); ok {
			if action, ok := dnfActions[a]; ok {
				f["action"], f["package"] = action, strings.TrimSpace(p)
			} else if a == "Command" {
				f["command_line"] = p
			}
		}
		if err := e.event(ts, "Event Time", "", "dnf: "+msg, f); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}
