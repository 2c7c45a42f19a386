// Package parse turns artifact files from an evidence package (Windows event logs through package
// evtx, Linux logs, login records, shell histories, scheduled jobs, package logs, web logs, Windows
// task and device-install files) into timeline events. Parsers stream: they read lines or fixed-size records and emit events as they go,
// so a multi-gigabyte log never sits in memory, and a corrupt line or record is counted and skipped.
package parse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
)

// Input describes one file to parse.
type Input struct {
	Path      string         // path inside the package (goes into Event.Path)
	HostPath  string         // the file's path on the host, e.g. /var/log/auth.log or C:\Users\x\...\ConsoleHost_history.txt
	Host      string         // host name (goes into Event.Host)
	ModTime   time.Time      // the file's modification time on the host
	Collected time.Time      // when it was collected (upper bound for year inference when ModTime is zero)
	TZ        *time.Location // host time zone for logs written in local time; nil means UTC
}

func (in Input) loc() *time.Location {
	if in.TZ == nil {
		return time.UTC
	}
	return in.TZ
}

// refTime is the newest time the file's content can plausibly have: its modification time, else the
// collection time, else now.
func (in Input) refTime() time.Time {
	switch {
	case !in.ModTime.IsZero():
		return in.ModTime
	case !in.Collected.IsZero():
		return in.Collected
	}
	return time.Now()
}

// Parser reads one kind of artifact.
type Parser struct {
	Name string // also the Event.Source of what it emits (utmp/wtmp/btmp share code, not names)
	// Sniff reports whether the file looks like this artifact from its first bytes (up to HeadSize) and
	// path. It must not panic on any input.
	Sniff func(head []byte, in Input) bool
	// Parse streams r and calls emit for each event. Corrupt lines or records are counted in Stats and
	// skipped; the error is only for what stops parsing: a read error, ctx, an error from emit
	// (returned as is), or a binary file that is not this artifact at all (wraps ErrFormat).
	Parse func(ctx context.Context, in Input, r io.Reader, emit func(*quarry.Event) error) (Stats, error)
}

// ErrFormat is wrapped by Parse errors for binary files in which no known record layout fits.
var ErrFormat = errors.New("not in this parser's format")

// HeadSize is how many leading bytes Sniff wants to see.
const HeadSize = 4096

// Stats counts what a Parse call read and skipped, for the pipeline to show per file and parser.
type Stats struct {
	Records   int    // lines or binary records read
	Events    int    // events emitted
	Skipped   int    // lines or records that could not be parsed
	Truncated int    // lines longer than the line limit, cut to it
	FirstSkip string // where and why the first skip happened, e.g. "line 12: no timestamp"
}

func (s *Stats) skip(format string, args ...any) {
	s.Skipped++
	if s.FirstSkip == "" {
		s.FirstSkip = fmt.Sprintf(format, args...)
	}
}

// String reads like "400 records, 388 events, 12 skipped (first: line 3: no timestamp)", for the
// pipeline's per-file report.
func (s Stats) String() string {
	out := fmt.Sprintf("%d records, %d events", s.Records, s.Events)
	if s.Truncated > 0 {
		out += fmt.Sprintf(", %d truncated", s.Truncated)
	}
	if s.Skipped > 0 {
		out += fmt.Sprintf(", %d skipped (first: %s)", s.Skipped, s.FirstSkip)
	}
	return out
}

var registry []Parser

// All returns every parser in sniffing order: specific artifacts first, generic syslog last.
func All() []Parser { return append([]Parser(nil), registry...) }

// Lookup returns the parser with the given name.
func Lookup(name string) (Parser, bool) {
	for _, p := range registry {
		if p.Name == name {
			return p, true
		}
	}
	return Parser{}, false
}

// Sniff returns the first parser, in All's order, that recognises the file.
func Sniff(head []byte, in Input) (Parser, bool) {
	if len(head) > HeadSize {
		head = head[:HeadSize]
	}
	for _, p := range registry {
		if p.Sniff(head, in) {
			return p, true
		}
	}
	return Parser{}, false
}

func init() {
	registry = []Parser{
		livestateParser,
		evtxParser,
		windowsTaskParser,
		setupapiParser,
		btmpParser, wtmpParser, utmpParser,
		lastlogParser,
		auditParser,
		aptHistoryParser,
		dpkgParser,
		yumParser,
		dnfParser,
		accessLogParser,
		fishHistoryParser,
		zshHistoryParser,
		powershellHistoryParser,
		bashHistoryParser,
		systemdUnitParser,
		crontabParser,
		authLogParser,
		syslogParser,
	}
}

// emitter wraps the caller's emit with the fields every event shares and the counting.
type emitter struct {
	in    Input
	src   string
	emit  func(*quarry.Event) error
	stats *Stats
}

func (e *emitter) event(ts time.Time, desc, user, msg string, fields map[string]any) error {
	return e.send(e.make(ts, desc, user, msg, fields))
}

// make builds an event without emitting it, for parsers that hold one back (continuation lines).
func (e *emitter) make(ts time.Time, desc, user, msg string, fields map[string]any) *quarry.Event {
	if !utf8.ValidString(user) {
		user = strings.ToValidUTF8(user, "\uFFFD")
	}
	ev := &quarry.Event{
		Timestamp:     ts.UTC(),
		TimestampDesc: desc,
		Source:        e.src,
		Host:          e.in.Host,
		User:          user,
		Message:       msg,
		Path:          e.in.Path,
		Fields:        fields,
	}
	return ev
}

func (e *emitter) send(ev *quarry.Event) error {
	ev.Message = oneLine(ev.Message)
	e.stats.Events++
	return e.emit(ev)
}

// oneLine makes msg valid UTF-8 on one line: control characters become spaces.
func oneLine(msg string) string {
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "\uFFFD")
	}
	for i := 0; i < len(msg); i++ {
		if msg[i] < 0x20 || msg[i] == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return ' '
				}
				return r
			}, msg)
		}
	}
	return msg
}

// maxLine bounds one line; longer lines are cut to it (and counted) and the rest is discarded.
const maxLine = 1 << 20

// lineReader yields lines without their end-of-line bytes, bounded in length.
type lineReader struct {
	r     io.Reader
	buf   []byte
	start int
	end   int
	eof   bool
	err   error
	// ctxErr is the context error that ended lines.
	ctxErr error
	n      int // line number of the line last returned, 1-based
	first  bool
	stats  *Stats
}

func newLineReader(r io.Reader, st *Stats) *lineReader {
	return &lineReader{r: r, buf: make([]byte, 64*1024), first: true, stats: st}
}

func (lr *lineReader) fill() {
	if lr.start > 0 {
		copy(lr.buf, lr.buf[lr.start:lr.end])
		lr.end -= lr.start
		lr.start = 0
	}
	for lr.end < len(lr.buf) && !lr.eof {
		n, err := lr.r.Read(lr.buf[lr.end:])
		lr.end += n
		if err == io.EOF {
			lr.eof = true
		} else if err != nil {
			lr.err = err
			lr.eof = true
		}
		if n > 0 {
			return
		}
	}
}

// next returns the next line; the slice is valid until the following call. ok is false at the end
// (check err()).
func (lr *lineReader) next() (line []byte, ok bool) {
	var long []byte
	overflow := false
	for {
		if i := bytes.IndexByte(lr.buf[lr.start:lr.end], '\n'); i >= 0 {
			line = lr.buf[lr.start : lr.start+i]
			lr.start += i + 1
			break
		}
		if lr.eof {
			if lr.start == lr.end && long == nil {
				return nil, false
			}
			line = lr.buf[lr.start:lr.end]
			lr.start = lr.end
			break
		}
		if lr.start == 0 && lr.end == len(lr.buf) {
			// No newline in a full buffer: keep up to maxLine, drop the rest.
			if !overflow {
				long = append(long, lr.buf[:lr.end]...)
				if len(long) >= maxLine {
					long = long[:maxLine]
					overflow = true
				}
			}
			lr.start, lr.end = 0, 0
		}
		lr.fill()
	}
	if long != nil {
		if !overflow {
			long = append(long, line...)
			if len(long) > maxLine {
				long = long[:maxLine]
				overflow = true
			}
		}
		line = long
	}
	if overflow {
		lr.stats.Truncated++
	}
	lr.n++
	lr.stats.Records++
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if lr.first {
		lr.first = false
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	return line, true
}

// raw yields every line of the reader (valid until the next), checking ctx every 1024 lines; a
// cancelled ctx ends them and error reports it.
func (lr *lineReader) raw(ctx context.Context) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for {
			b, ok := lr.next()
			if !ok {
				return
			}
			if err := ctxErr(ctx, lr.n); err != nil {
				lr.ctxErr = err
				return
			}
			if !yield(b) {
				return
			}
		}
	}
}

// lines yields the lines that are not blank, as text, as raw does.
func (lr *lineReader) lines(ctx context.Context) iter.Seq[string] {
	return func(yield func(string) bool) {
		for b := range lr.raw(ctx) {
			line := string(b)
			if strings.TrimSpace(line) == "" {
				continue
			}
			if !yield(line) {
				return
			}
		}
	}
}

func (lr *lineReader) error() error {
	if lr.ctxErr != nil {
		return lr.ctxErr
	}
	if lr.err != nil {
		return fmt.Errorf("read after line %d: %w", lr.n, lr.err)
	}
	return nil
}

// baseName is the last element of a host path in either OS's syntax.
func baseName(p string) string {
	p = strings.ReplaceAll(p, `\`, "/")
	return path.Base(p)
}

var rotSuffix = regexp.MustCompile(`(\.\d+|-\d{8}|\.old)$`)

// logName is the base name without a rotation suffix: auth.log.1 and secure-20240301 become auth.log
// and secure.
func logName(p string) string {
	return rotSuffix.ReplaceAllString(strings.ToLower(baseName(p)), "")
}

// slashPath is a host path with forward slashes, for matching Windows and Unix paths alike.
func slashPath(p string) string { return strings.ReplaceAll(p, `\`, "/") }

// userFromPath finds the account a file belongs to from its host path: /home/<u>/..., /root/...,
// /Users/<u>/... and C:\Users\<u>\...
func userFromPath(p string) string {
	p = slashPath(p)
	parts := strings.Split(p, "/")
	for i, part := range parts {
		switch {
		case part == "root" && i == 1:
			return "root"
		case (part == "home" || strings.EqualFold(part, "Users")) && i+1 < len(parts)-1 && i == 1:
			return parts[i+1]
		}
	}
	return ""
}

// isPrintableText reports whether b is mostly text: no NULs and few control bytes.
func isPrintableText(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	bad := 0
	for _, c := range b {
		if c == 0 {
			return false
		}
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' {
			bad++
		}
	}
	return bad*100 < len(b)
}

// firstLines returns up to n non-empty lines of head. When head fills HeadSize its last line is
// probably cut off, so it is dropped.
func firstLines(head []byte, n int) [][]byte {
	if len(head) >= HeadSize {
		if i := bytes.LastIndexByte(head, '\n'); i >= 0 {
			head = head[:i]
		}
	}
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	var out [][]byte
	for _, l := range bytes.Split(head, []byte{'\n'}) {
		l = bytes.TrimRight(l, "\r")
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		out = append(out, l)
		if len(out) == n {
			break
		}
	}
	return out
}

// mostLines reports whether at least half (and at least one) of the first lines of head satisfy ok.
func mostLines(head []byte, ok func([]byte) bool) bool {
	if !isPrintableText(head) {
		return false
	}
	lines := firstLines(head, 10)
	if len(lines) == 0 {
		return false
	}
	good := 0
	for _, l := range lines {
		if ok(l) {
			good++
		}
	}
	return good*2 >= len(lines)
}

func ctxErr(ctx context.Context, n int) error {
	if n&1023 == 0 {
		return ctx.Err()
	}
	return nil
}
