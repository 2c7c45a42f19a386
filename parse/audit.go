package parse

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// Linux audit.log: one event per record. Records of one audit event share the serial in
// msg=audit(TIME:SERIAL), kept as a field so they can be grouped later.

var auditParser = Parser{
	Name: "audit",
	Sniff: func(head []byte, in Input) bool {
		return mostLines(head, func(l []byte) bool {
			_, _, _, _, ok := auditHeader(string(l))
			return ok
		})
	},
	Parse: parseAudit,
}

// auditNumeric are the keys whose decimal values become numbers; everything else stays a string so a
// key has one type across records.
var auditNumeric = map[string]bool{"pid": true, "ppid": true, "uid": true, "gid": true, "auid": true,
	"euid": true, "suid": true, "fsuid": true, "egid": true, "sgid": true, "fsgid": true, "ses": true,
	"syscall": true, "exit": true, "items": true, "argc": true, "ouid": true, "ogid": true}

// auditHex are the keys the kernel hex-encodes when the value has spaces, quotes or control bytes.
var auditHex = map[string]bool{"proctitle": true, "exe": true, "comm": true, "cwd": true, "cmd": true,
	"name": true, "data": true, "acct": true, "path": true, "old-path": true}

// auditHeader splits "[node=N ]type=T msg=audit(SEC.MS:SERIAL): rest".
func auditHeader(s string) (typ string, ts time.Time, serial int64, rest string, ok bool) {
	if strings.HasPrefix(s, "node=") {
		_, s, _ = strings.Cut(s, " ")
	}
	return auditHeaderNoNode(s)
}

func auditHeaderNoNode(s string) (typ string, ts time.Time, serial int64, rest string, ok bool) {
	if !strings.HasPrefix(s, "type=") {
		return
	}
	typ, s, _ = strings.Cut(s[5:], " ")
	if !strings.HasPrefix(s, "msg=audit(") {
		return
	}
	s = s[len("msg=audit("):]
	end := strings.Index(s, "):")
	if end < 0 {
		return
	}
	stamp, ser, _ := strings.Cut(s[:end], ":")
	sec, frac, _ := strings.Cut(stamp, ".")
	si, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || si < 0 {
		return
	}
	ms := int64(0)
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		v, err := strconv.ParseInt(frac, 10, 64)
		if err != nil {
			return
		}
		for k := len(frac); k < 9; k++ {
			v *= 10
		}
		ms = v
	}
	serial, err = strconv.ParseInt(ser, 10, 64)
	if err != nil {
		return
	}
	return typ, time.Unix(si, ms), serial, strings.TrimLeft(s[end+2:], " "), true
}

type kv struct{ k, v string }

// auditPairs splits key=value pairs; values are bare, "double-quoted" or 'single-quoted' (which holds
// more pairs, as in USER_* records' msg='...').
func auditPairs(s string, out []kv) []kv {
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			break
		}
		k := s[:eq]
		if sp := strings.IndexByte(k, ' '); sp >= 0 {
			// A word without a value: skip it.
			s = s[sp+1:]
			continue
		}
		s = s[eq+1:]
		var v string
		switch {
		case strings.HasPrefix(s, `"`):
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				v, s = s[1:], ""
			} else {
				v, s = s[1:end+1], s[end+2:]
			}
		case strings.HasPrefix(s, `'`):
			end := strings.IndexByte(s[1:], '\'')
			inner := ""
			if end < 0 {
				inner, s = s[1:], ""
			} else {
				inner, s = s[1:end+1], s[end+2:]
			}
			out = auditPairs(inner, out)
			continue
		default:
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			v, s = s[:end], s[end:]
			if decoded, ok := auditUnhex(k, v); ok {
				v = decoded
			}
		}
		out = append(out, kv{k, v})
	}
	return out
}

func isHexArg(k string) bool {
	if len(k) < 2 || k[0] != 'a' {
		return false
	}
	for _, c := range k[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// auditUnhex decodes a bare hex value of a key that is hex-encoded when unsafe. NULs (proctitle's
// argument separators) become spaces.
func auditUnhex(k, v string) (string, bool) {
	if !auditHex[k] || len(v) < 2 || len(v)%2 != 0 || v == "(null)" {
		return "", false
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return "", false
	}
	b = bytes.TrimRight(b, "\x00")
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), true
}

func parseAudit(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "audit", emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	var pairs []kv
	for line := range lr.lines(ctx) {
		node := ""
		if strings.HasPrefix(line, "node=") {
			node, line, _ = strings.Cut(line[len("node="):], " ")
		}
		typ, ts, serial, rest, ok := auditHeaderNoNode(line)
		if !ok {
			st.skip("line %d: no type=… msg=audit(…) header", lr.n)
			continue
		}
		// Enriched logs (log_format=ENRICHED) append the names of ids after a 0x1d byte.
		raw, enriched, _ := strings.Cut(rest, "\x1d")
		pairs = auditPairs(raw, pairs[:0])
		f := map[string]any{"type": typ, "serial": serial}
		if node != "" {
			f["node"] = node
		}
		var msg strings.Builder
		msg.WriteString(typ)
		msg.WriteString(":")
		var args []string
		for _, p := range pairs {
			v := p.v
			if typ == "EXECVE" && isHexArg(p.k) {
				if d, err := hex.DecodeString(v); err == nil && len(v) >= 2 {
					v = string(d)
				}
				if len(args) < 256 {
					args = append(args, v)
				}
			}
			if auditNumeric[p.k] {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					f[p.k] = n
				} else {
					f[p.k] = v
				}
			} else if _, dup := f[p.k]; !dup {
				f[p.k] = v
			}
			if typ != "EXECVE" && msg.Len() < 1024 {
				msg.WriteString(" " + p.k + "=" + v)
			}
		}
		if typ == "EXECVE" {
			msg.WriteString(" " + strings.Join(args, " "))
			f["command_line"] = strings.Join(args, " ")
		}
		for _, p := range auditPairs(enriched, nil) {
			f[strings.ToLower(p.k)+"_name"] = p.v
		}
		user := ""
		for _, k := range []string{"auid_name", "acct", "uid_name"} {
			if u, ok := f[k].(string); ok && u != "" && u != "unset" && u != "(null)" && u != "?" {
				user = u
				break
			}
		}
		if err := e.event(ts, "Event Time", user, msg.String(), f); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}
