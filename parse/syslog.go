package parse

import (
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

var syslogParser = Parser{
	Name: "syslog",
	Sniff: func(head []byte, in Input) bool {
		return mostLines(head, func(l []byte) bool { _, ok := parseSyslogLine(string(l), in); return ok })
	},
	Parse: func(ctx context.Context, in Input, r io.Reader, emit func(*quarry.Event) error) (Stats, error) {
		return parseSyslog(ctx, in, r, emit, "syslog")
	},
}

var authLogParser = Parser{
	Name: "auth.log",
	Sniff: func(head []byte, in Input) bool {
		switch logName(in.HostPath) {
		case "auth.log", "secure":
		default:
			return false
		}
		return mostLines(head, func(l []byte) bool { _, ok := parseSyslogLine(string(l), in); return ok })
	},
	Parse: func(ctx context.Context, in Input, r io.Reader, emit func(*quarry.Event) error) (Stats, error) {
		return parseSyslog(ctx, in, r, emit, "auth.log")
	},
}

// sysLine is one parsed syslog line in any of the three formats.
type sysLine struct {
	ts       time.Time
	inferred bool // the year was not in the line
	pri      int  // -1 when absent
	host     string
	prog     string
	pid      int64 // -1 when absent
	msgID    string
	sd       string
	msg      string
}

func parseSyslog(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error, src string) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: src, emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	var pending *quarry.Event
	flush := func() error {
		if pending == nil {
			return nil
		}
		ev := pending
		pending = nil
		return e.send(ev)
	}
	for b := range lr.raw(ctx) {
		line := string(b)
		sl, ok := parseSyslogLine(line, in)
		if !ok {
			trimmed := strings.TrimSpace(line)
			switch {
			case trimmed == "":
			case pending != nil && (line[0] == ' ' || line[0] == '\t'):
				// A continuation of a multi-line message.
				pending.Message += " " + trimmed
				if m, ok := pending.Fields["body"].(string); ok {
					pending.Fields["body"] = m + "\n" + trimmed
				}
			default:
				st.skip("line %d: no syslog timestamp", lr.n)
			}
			continue
		}
		if err := flush(); err != nil {
			return st, err
		}
		pending = sysEvent(e, sl)
	}
	if err := flush(); err != nil {
		return st, err
	}
	return st, lr.error()
}

var facilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3",
	"local4", "local5", "local6", "local7"}
var severities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// sysEvent builds the event of one line. Authentication messages get their typed fields in syslog
// too, not only in auth.log: several distributions log them to syslog or messages.
func sysEvent(e *emitter, sl sysLine) *quarry.Event {
	f := map[string]any{"body": sl.msg}
	msg := sl.msg
	if sl.prog != "" {
		f["program"] = sl.prog
		if sl.pid >= 0 {
			f["pid"] = sl.pid
			msg = sl.prog + "[" + strconv.FormatInt(sl.pid, 10) + "]: " + sl.msg
		} else {
			msg = sl.prog + ": " + sl.msg
		}
	}
	if sl.host != "" {
		f["hostname"] = sl.host
	}
	if sl.pri >= 0 {
		f["facility"] = facilities[sl.pri/8]
		f["severity"] = severities[sl.pri%8]
	}
	if sl.msgID != "" {
		f["msg_id"] = sl.msgID
	}
	if sl.sd != "" {
		f["structured_data"] = sl.sd
	}
	if sl.inferred {
		f["year_inferred"] = true
	}
	user := ""
	if sl.prog != "" {
		user = authFields(sl.prog, sl.msg, f)
	}
	return e.make(sl.ts, "Event Time", user, msg, f)
}

var months = map[string]time.Month{"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6, "Jul": 7,
	"Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12}

func atoi2(s string) (int, bool) {
	if len(s) != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

// parseBSDTime reads "Mmm dd hh:mm:ss[.frac]" (day space- or zero-padded) from the start of s.
func parseBSDTime(s string) (mon time.Month, day, hh, mm, ss, ns int, rest string, ok bool) {
	if len(s) < 15 || s[3] != ' ' {
		return
	}
	mon, ok = months[s[:3]]
	if !ok {
		return
	}
	ok = false
	ds := s[4:6]
	if ds[0] == ' ' {
		ds = "0" + ds[1:]
	}
	var ok1, ok2, ok3, ok4 bool
	day, ok1 = atoi2(ds)
	if s[6] != ' ' || s[9] != ':' || s[12] != ':' {
		return
	}
	hh, ok2 = atoi2(s[7:9])
	mm, ok3 = atoi2(s[10:12])
	ss, ok4 = atoi2(s[13:15])
	if !ok1 || !ok2 || !ok3 || !ok4 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 {
		return
	}
	rest = s[15:]
	if len(rest) > 1 && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		frac := rest[1:i]
		if len(frac) > 9 {
			frac = frac[:9]
		}
		n, _ := strconv.Atoi(frac)
		for k := len(frac); k < 9; k++ {
			n *= 10
		}
		ns = n
		rest = rest[i:]
	}
	return mon, day, hh, mm, ss, ns, rest, true
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// inferYear places a year-less local time in the latest year that does not put it more than a day
// after ref (the file's modification time): log lines are written before the file's last change, so
// a December line in a file last modified in January belongs to the year before. Feb 29 only
// exists in leap years, so it goes back to the nearest one. ok is false for impossible dates (Feb 30).
func inferYear(mon time.Month, day, hh, mm, ss, ns int, loc *time.Location, ref time.Time) (time.Time, bool) {
	limit := ref.Add(24 * time.Hour)
	y0 := ref.In(loc).Year()
	for y := y0 + 1; y >= y0-8; y-- {
		t := time.Date(y, mon, day, hh, mm, ss, ns, loc)
		if t.Month() != mon || t.Day() != day {
			continue // Feb 29 in a common year, or Apr 31
		}
		if !t.After(limit) {
			return t, true
		}
	}
	return time.Time{}, false
}

// parseSyslogLine recognises RFC 3164 (optionally with <PRI>), RFC 5424 and the RFC 3339 form that
// rsyslog writes with its high-precision template.
func parseSyslogLine(s string, in Input) (sysLine, bool) {
	sl := sysLine{pri: -1, pid: -1}
	if len(s) > 2 && s[0] == '<' {
		end := strings.IndexByte(s, '>')
		if end < 2 || end > 4 {
			return sl, false
		}
		p, err := strconv.Atoi(s[1:end])
		if err != nil || p < 0 || p > 191 {
			return sl, false
		}
		sl.pri = p
		s = s[end+1:]
		if strings.HasPrefix(s, "1 ") {
			return parse5424(s[2:], sl)
		}
	}
	if len(s) >= 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T' {
		sp := strings.IndexByte(s, ' ')
		if sp < 0 {
			sp = len(s)
		}
		t, err := time.Parse(time.RFC3339Nano, s[:sp])
		if err != nil {
			return sl, false
		}
		sl.ts = t
		parseTagged(strings.TrimLeft(s[sp:], " "), &sl)
		return sl, true
	}
	mon, day, hh, mm, ss, ns, rest, ok := parseBSDTime(s)
	if !ok {
		return sl, false
	}
	t, ok := inferYear(mon, day, hh, mm, ss, ns, in.loc(), in.refTime())
	if !ok {
		return sl, false
	}
	sl.ts, sl.inferred = t, true
	switch {
	case strings.HasPrefix(rest, ": "), rest == ":":
		// "Nov 18 01:15:43: --- last message repeated 5 times ---": no host, no tag.
		sl.msg = strings.TrimSpace(rest[1:])
	case strings.HasPrefix(rest, " "):
		parseTagged(strings.TrimLeft(rest, " "), &sl)
	case rest == "":
	default:
		return sl, false
	}
	return sl, true
}

// parseTagged splits "host prog[pid]: msg", where host, or host and tag, may be missing.
func parseTagged(s string, sl *sysLine) {
	first, after, _ := strings.Cut(s, " ")
	if isTag(first) {
		setTag(first, sl)
		sl.msg = strings.TrimLeft(after, " ")
		return
	}
	sl.host = first
	tag, after2, _ := strings.Cut(after, " ")
	if isTag(tag) {
		setTag(tag, sl)
		sl.msg = strings.TrimLeft(after2, " ")
		return
	}
	sl.msg = after
}

// isTag reports whether w looks like "prog:" or "prog[pid]:".
func isTag(w string) bool {
	if len(w) < 2 || w[len(w)-1] != ':' {
		return false
	}
	w = w[:len(w)-1]
	if i := strings.IndexByte(w, '['); i >= 0 {
		if i == 0 || w[len(w)-1] != ']' {
			return false
		}
		for _, c := range w[i+1 : len(w)-1] {
			if c < '0' || c > '9' {
				return false
			}
		}
		w = w[:i]
	}
	return !strings.ContainsAny(w, "[]:")
}

func setTag(w string, sl *sysLine) {
	w = w[:len(w)-1]
	if i := strings.IndexByte(w, '['); i >= 0 {
		if pid, err := strconv.ParseInt(w[i+1:len(w)-1], 10, 64); err == nil {
			sl.pid = pid
		}
		w = w[:i]
	}
	sl.prog = w
}

// parse5424 reads "TIMESTAMP HOST APP PROCID MSGID SD MSG" after "<PRI>1 ".
func parse5424(s string, sl sysLine) (sysLine, bool) {
	parts := strings.SplitN(s, " ", 6)
	if len(parts) < 5 {
		return sl, false
	}
	t, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return sl, false
	}
	sl.ts = t
	nil5424 := func(v string) string {
		if v == "-" {
			return ""
		}
		return v
	}
	sl.host = nil5424(parts[1])
	sl.prog = nil5424(parts[2])
	if pid, err := strconv.ParseInt(parts[3], 10, 64); err == nil {
		sl.pid = pid
	}
	sl.msgID = nil5424(parts[4])
	if len(parts) == 6 {
		rest := parts[5]
		if strings.HasPrefix(rest, "-") {
			rest = strings.TrimPrefix(rest[1:], " ")
		} else if strings.HasPrefix(rest, "[") {
			n := sdLen(rest)
			sl.sd = rest[:n]
			rest = strings.TrimPrefix(rest[n:], " ")
		}
		sl.msg = strings.TrimPrefix(rest, "\ufeff")
	}
	return sl, true
}

// sdLen is the length of the structured-data elements at the start of s: "[id k="v"]..." where a
// quoted value may contain an escaped quote or bracket.
func sdLen(s string) int {
	i := 0
	for i < len(s) && s[i] == '[' {
		inQ := false
		j := i + 1
		for ; j < len(s); j++ {
			c := s[j]
			if c == '\\' && inQ {
				j++
				continue
			}
			if c == '"' {
				inQ = !inQ
			}
			if c == ']' && !inQ {
				break
			}
		}
		if j >= len(s) {
			return len(s)
		}
		i = j + 1
	}
	return i
}
