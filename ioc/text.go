package ioc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
)

// Options steer ParseText and ParseMISP. The zero value is usable: default limits, types
// detected per value, MISP attributes without to_ids skipped.
type Options struct {
	// DefaultType is the type of text lines without a type prefix; "" detects it per value.
	DefaultType Type
	// IncludeNonIDS keeps MISP attributes whose to_ids flag is false. MISP marks with to_ids
	// what is fit for automatic detection; the rest is context — the victim's own addresses,
	// legitimate services the malware talks to — and would flood a timeline with false hits.
	IncludeNonIDS bool

	MaxBytes      int64 // input size; 0 is DefaultMaxBytes
	MaxLine       int   // bytes in one text line; 0 is DefaultMaxLine
	MaxIndicators int   // indicators kept; 0 is DefaultMaxIndicators
	MaxProblems   int   // problems listed (the rest are counted); 0 is DefaultMaxProblems
}

// Defaults of Options' limits.
const (
	DefaultMaxBytes      = 64 << 20
	DefaultMaxLine       = 4096
	DefaultMaxIndicators = 1_000_000
	DefaultMaxProblems   = 1000
)

func (o *Options) limits() Options {
	l := *o
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxLine <= 0 {
		l.MaxLine = DefaultMaxLine
	}
	if l.MaxIndicators <= 0 {
		l.MaxIndicators = DefaultMaxIndicators
	}
	if l.MaxProblems <= 0 {
		l.MaxProblems = DefaultMaxProblems
	}
	return l
}

// Result is what an import read: the indicators to keep, each entry not taken with its line,
// and counts of entries left out on purpose (duplicates, MISP attributes without to_ids or of
// a type this package does not match) by reason.
type Result struct {
	Indicators   []Indicator    `json:"indicators"`
	Problems     []Problem      `json:"problems,omitempty"`
	MoreProblems int            `json:"more_problems,omitempty"` // problems beyond Options.MaxProblems, counted only
	Skipped      map[string]int `json:"skipped,omitempty"`
}

// ErrLimit is wrapped by the *quarry.Error (code EINVALID) that ParseText and ParseMISP return
// when the input exceeds Options.MaxBytes or holds more than Options.MaxIndicators indicators.
// The Result returned with it holds what was read up to the limit, for a preview; importing it
// as the list would lose the rest without a word.
var ErrLimit = errors.New("ioc: import limit exceeded")

func limitError(format string, args ...any) error {
	return &quarry.Error{Code: quarry.EINVALID, Message: fmt.Sprintf(format, args...), Err: ErrLimit}
}

// collector gathers a Result within the limits.
type collector struct {
	opt  Options
	res  *Result
	seen map[Indicator]struct{} // Type and Value only
}

func newCollector(opt Options) *collector {
	return &collector{opt: opt.limits(), res: &Result{Indicators: []Indicator{}}, seen: map[Indicator]struct{}{}}
}

func (c *collector) problem(line int, value, reason string) {
	if len(c.res.Problems) >= c.opt.MaxProblems {
		c.res.MoreProblems++
		return
	}
	c.res.Problems = append(c.res.Problems, Problem{Line: line, Value: cut(strings.ToValidUTF8(value, "\uFFFD"), 120), Reason: reason})
}

func (c *collector) skip(reason string) {
	if c.res.Skipped == nil {
		c.res.Skipped = map[string]int{}
	}
	c.res.Skipped[reason]++
}

// add keeps ind unless it is a duplicate; it fails when the indicator limit is reached.
func (c *collector) add(ind Indicator) error {
	k := Indicator{Type: ind.Type, Value: ind.Value}
	if _, dup := c.seen[k]; dup {
		c.skip("duplicate")
		return nil
	}
	if len(c.res.Indicators) >= c.opt.MaxIndicators {
		return limitError("the list holds more than %d indicators; split it into several lists", c.opt.MaxIndicators)
	}
	c.seen[k] = struct{}{}
	c.res.Indicators = append(c.res.Indicators, ind)
	return nil
}

// reasonOf is the user-facing message of a validation error.
func reasonOf(err error) string {
	var qe *quarry.Error
	if errors.As(err, &qe) {
		return qe.Message
	}
	return err.Error()
}

// countingReader fails once more than max bytes were read.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, limitError("the list is larger than %d MiB; split it into smaller files", c.max>>20)
	}
	if int64(len(p)) > c.max-c.n+1 {
		p = p[:c.max-c.n+1]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, limitError("the list is larger than %d MiB; split it into smaller files", c.max>>20)
	}
	return n, err
}

// ParseText reads a plain-text list: one indicator a line, optionally followed by a
// description. Blank lines and lines starting with # or // are skipped. A line is
//
//	[type:]value[<sep>description]
//
// where type is a Type or an alias (sha256:, ip-dst:, hostname:, filename:), and the value
// ends at the first tab when the line has one (so a tab-separated file name may hold spaces),
// else at the first space or comma; a value may also be "double-quoted". A # before the
// description is dropped. Values may be defanged (evil[.]com, hxxp://). Without a prefix the
// type is opt.DefaultType, or detected (Detect) when that is "".
//
// Every line that is not an indicator becomes a Problem with its line number; the others are
// kept. The error is a read error or, wrapping ErrLimit, a limit (see Options).
func ParseText(r io.Reader, opt Options) (*Result, error) {
	c := newCollector(opt)
	if opt.DefaultType != "" && !opt.DefaultType.Valid() {
		return c.res, quarry.FieldError("type", "unknown indicator type %q", opt.DefaultType)
	}
	br := bufio.NewReaderSize(&countingReader{r: r, max: c.opt.MaxBytes}, c.opt.MaxLine+2)
	for line := 1; ; line++ {
		raw, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			c.problem(line, string(raw[:min(len(raw), 120)]), fmt.Sprintf("line longer than %d bytes", c.opt.MaxLine))
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return c.res, nil
			} else if err != nil {
				return c.res, fmt.Errorf("ioc: read list: %w", err)
			}
			continue
		}
		if err != nil && err != io.EOF {
			// The line read before a failure may be cut anywhere: it is not taken.
			if errors.Is(err, ErrLimit) {
				return c.res, err
			}
			return c.res, fmt.Errorf("ioc: read list: %w", err)
		}
		if len(raw) > 0 {
			if perr := c.textLine(line, raw); perr != nil {
				return c.res, perr
			}
		}
		if err == io.EOF {
			return c.res, nil
		}
	}
}

var utf8BOM = []byte("\xEF\xBB\xBF")

func (c *collector) textLine(line int, raw []byte) error {
	if line == 1 {
		raw = bytes.TrimPrefix(raw, utf8BOM)
	}
	raw = bytes.TrimRight(raw, "\r\n")
	if len(raw) > c.opt.MaxLine {
		c.problem(line, string(raw[:min(len(raw), 120)]), fmt.Sprintf("line longer than %d bytes", c.opt.MaxLine))
		return nil
	}
	if !utf8.Valid(raw) {
		c.problem(line, string(raw), "not UTF-8 text")
		return nil
	}
	// Trailing whitespace stays until splitLine: a tab there still says "the value may hold spaces".
	s := strings.TrimLeft(string(raw), " \t")
	if strings.TrimSpace(s) == "" || s[0] == '#' || strings.HasPrefix(s, "//") || s[0] == ';' {
		return nil
	}
	t, value, desc, ok := splitLine(s)
	if !ok {
		c.problem(line, s, "unterminated quote")
		return nil
	}
	if t == "" {
		t = c.opt.DefaultType
	}
	ind, err := NewIndicator(t, value, desc)
	if err != nil {
		c.problem(line, value, reasonOf(err))
		return nil
	}
	return c.add(ind)
}

// splitLine takes a line apart into an optional type prefix, the value and the description.
func splitLine(s string) (t Type, value, desc string, ok bool) {
	if i := strings.IndexByte(s, ':'); i > 0 && i <= 10 {
		if tt, known := ParseType(s[:i]); known && !strings.HasPrefix(s[i+1:], "//") {
			t, s = tt, strings.TrimLeft(s[i+1:], " ")
		}
	}
	switch {
	case strings.HasPrefix(s, `"`):
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return "", "", "", false
		}
		value, desc = s[1:1+end], separatedDescription(s[2+end:])
	case strings.Contains(s, "\t"):
		// After a tab the rest is the description as it stands, so FormatText's lines read back.
		value, desc, _ = strings.Cut(s, "\t")
		desc = strings.TrimSpace(desc)
	default:
		end := strings.IndexAny(s, " ,")
		if end < 0 {
			end = len(s)
		}
		value, desc = s[:end], separatedDescription(s[end:])
	}
	return t, strings.TrimSpace(value), desc, true
}

// separatedDescription drops the comma or # that may separate a description from its value.
func separatedDescription(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimSpace(strings.TrimPrefix(s, ","))
	return strings.TrimSpace(strings.TrimPrefix(s, "#"))
}

// FormatText writes indicators as a text list ParseText reads back unchanged: one
// "type:value<TAB>description" line each.
func FormatText(w io.Writer, indicators []Indicator) error {
	bw := bufio.NewWriter(w)
	for _, ind := range indicators {
		bw.WriteString(string(ind.Type))
		bw.WriteByte(':')
		bw.WriteString(ind.Value)
		bw.WriteByte('\t')
		bw.WriteString(cleanDescription(ind.Description))
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("ioc: write list: %w", err)
	}
	return nil
}
