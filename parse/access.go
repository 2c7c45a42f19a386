package parse

import (
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// Web server access logs in the Common and Combined formats that Apache and nginx share:
// client ident user [02/Jan/2006:15:04:05 -0700] "GET /path HTTP/1.1" status bytes "referer" "agent"

var accessLogParser = Parser{
	Name: "access_log",
	Sniff: func(head []byte, in Input) bool {
		return mostLines(head, func(l []byte) bool { _, ok := parseAccessLine(string(l)); return ok })
	},
	Parse: parseAccessLog,
}

type accessLine struct {
	vhost               string
	client, ident, user string
	ts                  time.Time
	request             string
	status              int64
	bytes               int64 // -1 for "-"
	referer, agent      string
	hasCombined         bool
}

// quoted reads a "..." value at the start of s, where \" and \\ are escapes (Apache escapes quotes
// in the request line and headers); it returns the value and what follows.
func quoted(s string) (string, string, bool) {
	if !strings.HasPrefix(s, `"`) {
		return "", s, false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", s, false
}

// statusAfter reports whether s is " STATUS BYTES" followed by a space or the end.
func statusAfter(s string) bool {
	if len(s) < 6 || s[0] != ' ' {
		return false
	}
	for _, c := range s[1:4] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s[4] == ' '
}

func parseAccessLine(s string) (accessLine, bool) {
	var a accessLine
	i := strings.Index(s, " [")
	if i < 0 {
		return a, false
	}
	// client ident user, or vhost:port client ident user (Apache's vhost_combined).
	pre := strings.Split(s[:i], " ")
	switch {
	case len(pre) == 3:
		a.client, a.ident, a.user = pre[0], pre[1], pre[2]
	case len(pre) == 4 && strings.Contains(pre[0], ":"):
		a.vhost, a.client, a.ident, a.user = pre[0], pre[1], pre[2], pre[3]
	case len(pre) > 3:
		a.client, a.ident, a.user = pre[0], pre[1], strings.Join(pre[2:], " ")
	default:
		return a, false
	}
	if a.client == "" {
		return a, false
	}
	s = s[i+2:]
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return a, false
	}
	t, err := time.Parse("02/Jan/2006:15:04:05 -0700", s[:end])
	if err != nil {
		return a, false
	}
	a.ts = t
	s = strings.TrimPrefix(s[end+1:], " ")
	if req, rest, ok := quoted(s); ok && statusAfter(rest) {
		a.request, s = req, rest
	} else {
		// Older Apache and nginx do not escape quotes in the request line: the request ends at the
		// first quote that a status code follows.
		if !strings.HasPrefix(s, `"`) {
			return a, false
		}
		j := 1
		for {
			k := strings.IndexByte(s[j:], '"')
			if k < 0 {
				return a, false
			}
			j += k
			if statusAfter(s[j+1:]) {
				break
			}
			j++
		}
		a.request, s = s[1:j], s[j+1:]
	}
	fields := strings.SplitN(strings.TrimLeft(s, " "), " ", 3)
	if len(fields) < 2 {
		return a, false
	}
	a.status, err = strconv.ParseInt(fields[0], 10, 64)
	if err != nil || a.status < 100 || a.status > 999 {
		return a, false
	}
	a.bytes = -1
	if fields[1] != "-" {
		a.bytes, err = strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return a, false
		}
	}
	if len(fields) == 3 {
		if ref, rest, ok := quoted(fields[2]); ok {
			a.referer = ref
			a.hasCombined = true
			if ua, _, ok := quoted(strings.TrimLeft(rest, " ")); ok {
				a.agent = ua
			}
		}
	}
	return a, true
}

func parseAccessLog(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "access_log", emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	for line := range lr.lines(ctx) {
		a, ok := parseAccessLine(line)
		if !ok {
			st.skip("line %d: not in common or combined log format", lr.n)
			continue
		}
		f := map[string]any{"client_ip": a.client, "status": a.status, "request": a.request}
		if a.bytes >= 0 {
			f["bytes"] = a.bytes
		}
		parts := strings.SplitN(a.request, " ", 3)
		if len(parts) >= 2 {
			f["method"], f["path"] = parts[0], parts[1]
			if len(parts) == 3 {
				f["protocol"] = parts[2]
			}
		}
		user := ""
		if a.user != "-" && a.user != "" {
			user = a.user
			f["remote_user"] = a.user
		}
		if a.vhost != "" {
			f["vhost"] = a.vhost
		}
		if a.ident != "-" {
			f["ident"] = a.ident
		}
		if a.hasCombined {
			if a.referer != "-" && a.referer != "" {
				f["referer"] = a.referer
			}
			if a.agent != "-" && a.agent != "" {
				f["user_agent"] = a.agent
			}
		}
		msg := a.client + " \"" + a.request + "\" " + strconv.FormatInt(a.status, 10)
		if a.bytes >= 0 {
			msg += " " + strconv.FormatInt(a.bytes, 10)
		}
		if err := e.event(a.ts, "Request Time", user, msg, f); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}
