package simhost

import (
	"slices"
	"strings"
	"time"
)

// logBook collects log lines from several generators and renders each file in time order, so that the
// generators can work per topic (sessions, cron, packages) while the files stay sorted like real logs.
type logBook struct {
	lines []logLine
}

type logLine struct {
	t    time.Time
	file string
	tag  string // "sshd[123]"; empty for a raw line that carries its own time, such as audit.log's
	msg  string
	seq  int
}

func (b *logBook) add(t time.Time, file, tag, msg string) {
	b.lines = append(b.lines, logLine{t: t.UTC(), file: file, tag: tag, msg: msg, seq: len(b.lines)})
}

// render returns each file's text and the time of its last line. Lines after the anchor are dropped: they
// have not happened yet on the host.
func (b *logBook) render(host string, now time.Time, format func(time.Time) string) map[string]rendered {
	ls := slices.Clone(b.lines)
	slices.SortStableFunc(ls, func(x, y logLine) int {
		if c := x.t.Compare(y.t); c != 0 {
			return c
		}
		return x.seq - y.seq
	})
	out := map[string]rendered{}
	builders := map[string]*strings.Builder{}
	for _, l := range ls {
		if l.t.After(now) {
			continue
		}
		sb := builders[l.file]
		if sb == nil {
			sb = &strings.Builder{}
			builders[l.file] = sb
		}
		if l.tag == "" {
			sb.WriteString(l.msg)
		} else {
			sb.WriteString(format(l.t))
			sb.WriteByte(' ')
			sb.WriteString(host)
			sb.WriteByte(' ')
			sb.WriteString(l.tag)
			sb.WriteString(": ")
			sb.WriteString(l.msg)
		}
		sb.WriteByte('\n')
		r := out[l.file]
		r.last = l.t
		out[l.file] = r
	}
	for f, sb := range builders {
		r := out[f]
		r.text = sb.String()
		out[f] = r
	}
	return out
}

type rendered struct {
	text string
	last time.Time
}

// rfc3164 is the traditional syslog time stamp: no year, no zone, day padded with a space.
func rfc3164(t time.Time) string { return t.UTC().Format(time.Stamp) }
