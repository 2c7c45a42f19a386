package parse

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// Shell histories. Where the shell wrote times (bash with HISTTIMEFORMAT, zsh EXTENDED_HISTORY,
// fish) each command gets its own; otherwise the file's modification time stands for all of them
// and the line number keeps their order.

const histModDesc = "History File Modification Time"

var (
	reBashTS = regexp.MustCompile(`^#(\d{9,11})$`)
	reZshExt = regexp.MustCompile(`^: ?(\d{9,11}):(\d+);`)
)

var bashHistoryParser = Parser{
	Name: "bash_history",
	Sniff: func(head []byte, in Input) bool {
		n := strings.ToLower(baseName(in.HostPath))
		if strings.HasSuffix(n, "bash_history") || n == ".sh_history" {
			return isPrintableText(head) || len(head) == 0
		}
		// Without a name, only timestamp comments are distinctive.
		return isPrintableText(head) && reBashTS.Match(bytes.TrimRight(firstLine(head), "\r"))
	},
	Parse: parseBashHistory,
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

type histCmd struct {
	ts   time.Time
	line int
	cmd  string
	f    map[string]any
}

func emitHist(e *emitter, shell string, user string, c histCmd) error {
	if strings.TrimSpace(c.cmd) == "" {
		return nil
	}
	desc := "Command Time"
	if c.ts.IsZero() {
		c.ts = e.in.ModTime
		desc = histModDesc
	}
	f := c.f
	if f == nil {
		f = map[string]any{}
	}
	f["command"] = c.cmd
	f["line"] = int64(c.line)
	f["shell"] = shell
	msg := strings.ReplaceAll(c.cmd, "\n", " ⏎ ")
	return e.event(c.ts, desc, user, shell+": "+msg, f)
}

func parseBashHistory(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "bash_history", emit: emitFn, stats: &st}
	user := userFromPath(in.HostPath)
	lr := newLineReader(r, &st)
	var cur *histCmd // a command after a timestamp line: it runs until the next timestamp line
	for b := range lr.raw(ctx) {
		if m := reBashTS.FindSubmatch(b); m != nil {
			if cur != nil {
				if err := emitHist(e, "bash", user, *cur); err != nil {
					return st, err
				}
			}
			sec, _ := strconv.ParseInt(string(m[1]), 10, 64)
			cur = &histCmd{ts: time.Unix(sec, 0), line: lr.n + 1}
			continue
		}
		if cur != nil {
			if cur.cmd == "" {
				cur.cmd = string(b)
			} else {
				cur.cmd += "\n" + string(b)
			}
			continue
		}
		if err := emitHist(e, "bash", user, histCmd{line: lr.n, cmd: string(b)}); err != nil {
			return st, err
		}
	}
	if cur != nil {
		if err := emitHist(e, "bash", user, *cur); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}

var zshHistoryParser = Parser{
	Name: "zsh_history",
	Sniff: func(head []byte, in Input) bool {
		if strings.HasSuffix(strings.ToLower(baseName(in.HostPath)), "zsh_history") || baseName(in.HostPath) == ".zhistory" {
			return true
		}
		return isPrintableText(head) && reZshExt.Match(firstLine(head))
	},
	Parse: parseZshHistory,
}

// unmetafy undoes zsh's history encoding: a 0x83 byte marks the next byte XORed with 0x20.
func unmetafy(b []byte) []byte {
	if bytes.IndexByte(b, 0x83) < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == 0x83 && i+1 < len(b) {
			i++
			out = append(out, b[i]^0x20)
			continue
		}
		out = append(out, b[i])
	}
	return out
}

func parseZshHistory(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "zsh_history", emit: emitFn, stats: &st}
	user := userFromPath(in.HostPath)
	lr := newLineReader(r, &st)
	var cur *histCmd
	cont := false // the previous line ended in a backslash: this one belongs to the same command
	for b := range lr.raw(ctx) {
		b = unmetafy(b)
		if cont && cur != nil {
			cur.cmd += "\n" + string(b)
		} else {
			if cur != nil {
				if err := emitHist(e, "zsh", user, *cur); err != nil {
					return st, err
				}
			}
			cur = &histCmd{line: lr.n}
			if m := reZshExt.FindSubmatch(b); m != nil {
				sec, _ := strconv.ParseInt(string(m[1]), 10, 64)
				dur, _ := strconv.ParseInt(string(m[2]), 10, 64)
				cur.ts = time.Unix(sec, 0)
				cur.f = map[string]any{"duration": dur}
				cur.cmd = string(b[len(m[0]):])
			} else {
				cur.cmd = string(b)
			}
		}
		cont = bytes.HasSuffix(b, []byte{'\\'})
		if cont {
			cur.cmd = strings.TrimSuffix(cur.cmd, `\`)
		}
	}
	if cur != nil {
		if err := emitHist(e, "zsh", user, *cur); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}

var fishHistoryParser = Parser{
	Name: "fish_history",
	Sniff: func(head []byte, in Input) bool {
		if strings.HasSuffix(baseName(in.HostPath), "fish_history") {
			return true
		}
		return isPrintableText(head) && bytes.HasPrefix(head, []byte("- cmd: ")) && bytes.Contains(head, []byte("\n  when: "))
	},
	Parse: parseFishHistory,
}

// fishUnescape undoes fish's "\\" and "\n" escapes in the cmd value.
func fishUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func parseFishHistory(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "fish_history", emit: emitFn, stats: &st}
	user := userFromPath(in.HostPath)
	lr := newLineReader(r, &st)
	var cur *histCmd
	var paths []any
	flush := func() error {
		if cur == nil {
			return nil
		}
		if len(paths) > 0 {
			cur.f = map[string]any{"paths": paths}
		}
		c := *cur
		cur, paths = nil, nil
		return emitHist(e, "fish", user, c)
	}
	inPaths := false
	for b := range lr.raw(ctx) {
		s := string(b)
		switch {
		case strings.HasPrefix(s, "- cmd: "):
			if err := flush(); err != nil {
				return st, err
			}
			cur = &histCmd{line: lr.n, cmd: fishUnescape(s[len("- cmd: "):])}
			inPaths = false
		case cur != nil && strings.HasPrefix(s, "  when: "):
			sec, err := strconv.ParseInt(strings.TrimSpace(s[len("  when: "):]), 10, 64)
			if err != nil {
				st.skip("line %d: bad when %q", lr.n, s)
				continue
			}
			cur.ts = time.Unix(sec, 0)
		case cur != nil && strings.HasPrefix(s, "  paths:"):
			inPaths = true
		case cur != nil && inPaths && strings.HasPrefix(s, "    - "):
			if len(paths) < 64 {
				paths = append(paths, fishUnescape(s[len("    - "):]))
			}
		case strings.TrimSpace(s) == "":
		default:
			st.skip("line %d: not a fish history entry", lr.n)
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	return st, lr.error()
}

var powershellHistoryParser = Parser{
	Name: "powershell_history",
	Sniff: func(head []byte, in Input) bool {
		return strings.EqualFold(baseName(in.HostPath), "ConsoleHost_history.txt")
	},
	Parse: parsePowerShellHistory,
}

// PSReadLine writes one command per line; a command spanning lines ends each but the last in a
// backtick. It records no times.
func parsePowerShellHistory(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "powershell_history", emit: emitFn, stats: &st}
	user := userFromPath(in.HostPath)
	lr := newLineReader(r, &st)
	var cur *histCmd
	for b := range lr.raw(ctx) {
		s := string(b)
		if cur == nil {
			cur = &histCmd{line: lr.n, cmd: s}
		} else {
			cur.cmd += "\n" + s
		}
		if !strings.HasSuffix(s, "`") {
			if err := emitHist(e, "powershell", user, *cur); err != nil {
				return st, err
			}
			cur = nil
		}
	}
	if cur != nil {
		if err := emitHist(e, "powershell", user, *cur); err != nil {
			return st, err
		}
	}
	return st, lr.error()
}
