package query

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
)

// Limits on a query, so that a hostile one costs little to reject.
const (
	MaxLength = 4096 // bytes
	MaxDepth  = 64   // nested parentheses and NOTs
)

// SyntaxError is why a query does not parse, and where. Its message is written for the analyst
// who typed the query.
type SyntaxError struct {
	Offset int    // byte offset into the query, 0-based
	Column int    // character (rune) position, 1-based; queries are one line
	Msg    string // what was wrong or expected
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("syntax error at column %d: %s", e.Column, e.Msg)
}

// Unwrap lets quarry.ErrorCode and quarry.ErrorMessage see a syntax error as an invalid request
// whose message may be shown to the user.
func (e *SyntaxError) Unwrap() error {
	return &quarry.Error{Code: quarry.EINVALID, Message: e.Error()}
}

// Parse parses a query. A blank query is an error ("empty query"): callers that treat an empty
// search box as "everything" check for it first. Errors are *SyntaxError.
func Parse(s string) (Node, error) {
	return parse(s, MaxLength, MaxDepth)
}

func parse(s string, maxLen, maxDepth int) (Node, error) {
	p := &parser{s: s, maxDepth: maxDepth}
	if len(s) > maxLen {
		off := maxLen
		for off > 0 && !utf8.RuneStart(s[off]) {
			off--
		}
		return nil, p.errAt(off, "the query is longer than %d bytes", maxLen)
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return nil, p.errAt(i, "the query is not valid UTF-8")
		}
		i += size
	}
	p.skipSpace()
	if p.pos == len(s) {
		return nil, p.errAt(p.pos, "empty query")
	}
	n, err := p.parseOr(0, "")
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(s) {
		// parseAnd stops only at the end, at ")" or at OR, and parseOr consumes every OR.
		return nil, p.errAt(p.pos, `unexpected ")" without a matching "("`)
	}
	return n, nil
}

type parser struct {
	s        string
	pos      int
	maxDepth int
}

func (p *parser) errAt(off int, format string, args ...any) *SyntaxError {
	return &SyntaxError{
		Offset: off,
		Column: utf8.RuneCountInString(p.s[:off]) + 1,
		Msg:    fmt.Sprintf(format, args...),
	}
}

func (p *parser) column(off int) int { return utf8.RuneCountInString(p.s[:off]) + 1 }

func (p *parser) peek() rune {
	if p.pos >= len(p.s) {
		return -1
	}
	r, _ := utf8.DecodeRuneInString(p.s[p.pos:])
	return r
}

func (p *parser) skipSpace() {
	for p.pos < len(p.s) {
		r, size := utf8.DecodeRuneInString(p.s[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += size
	}
}

// atKeyword reports whether the unescaped word kw starts at the current position.
func (p *parser) atKeyword(kw string) bool {
	if !strings.HasPrefix(p.s[p.pos:], kw) {
		return false
	}
	end := p.pos + len(kw)
	if end == len(p.s) {
		return true
	}
	r, _ := utf8.DecodeRuneInString(p.s[end:])
	return isSpecial(r) && r != '\\'
}

// atAnd and atOr return the operator at the current position ("AND" or "&&", "OR" or "||"), or "".
func (p *parser) atAnd() string {
	for _, op := range []string{"AND", "&&"} {
		if p.atKeyword(op) {
			return op
		}
	}
	return ""
}

func (p *parser) atOr() string {
	for _, op := range []string{"OR", "||"} {
		if p.atKeyword(op) {
			return op
		}
	}
	return ""
}

// found describes what is at the current position, for error messages.
func (p *parser) found() string {
	if p.pos >= len(p.s) {
		return "the end of the query"
	}
	r, size := utf8.DecodeRuneInString(p.s[p.pos:])
	if unicode.IsSpace(r) {
		return "a space"
	}
	if isSpecial(r) && r != '\\' {
		return fmt.Sprintf("%q", p.s[p.pos:p.pos+size])
	}
	end, n := p.pos, 0
	for end < len(p.s) && n < 20 {
		r, size := utf8.DecodeRuneInString(p.s[end:])
		if isSpecial(r) && r != '\\' {
			break
		}
		end += size
		n++
	}
	return fmt.Sprintf("%q", p.s[p.pos:end])
}

// parseOr parses or_expr. group is the field of an enclosing field group, or "".
func (p *parser) parseOr(depth int, group string) (Node, error) {
	first, err := p.parseAnd(depth, group, "")
	if err != nil {
		return nil, err
	}
	list := []Node{first}
	for {
		p.skipSpace()
		op := p.atOr()
		if op == "" {
			break
		}
		p.pos += len(op)
		n, err := p.parseAnd(depth, group, fmt.Sprintf(" after %q", op))
		if err != nil {
			return nil, err
		}
		list = append(list, n)
	}
	if len(list) == 1 {
		return first, nil
	}
	return &Or{Children: list}, nil
}

func (p *parser) parseAnd(depth int, group, after string) (Node, error) {
	first, err := p.parseUnary(depth, group, after)
	if err != nil {
		return nil, err
	}
	list := []Node{first}
	for {
		p.skipSpace()
		if p.pos == len(p.s) || p.peek() == ')' || p.atOr() != "" {
			break
		}
		after := ""
		if op := p.atAnd(); op != "" {
			p.pos += len(op)
			after = fmt.Sprintf(" after %q", op)
		}
		n, err := p.parseUnary(depth, group, after)
		if err != nil {
			return nil, err
		}
		list = append(list, n)
	}
	if len(list) == 1 {
		return first, nil
	}
	return &And{Children: list}, nil
}

func (p *parser) parseUnary(depth int, group, after string) (Node, error) {
	p.skipSpace()
	start := p.pos
	switch {
	case p.atKeyword("NOT"):
		p.pos += len("NOT")
		after = ` after "NOT"`
	case p.peek() == '-':
		p.pos++
		if r := p.peek(); r == -1 || unicode.IsSpace(r) {
			return nil, p.errAt(p.pos, `expected a term right after "-", found %s`, p.found())
		}
		after = ` after "-"`
	default:
		return p.parsePrimary(depth, group, after)
	}
	if depth+1 > p.maxDepth {
		return nil, p.errAt(start, "the query nests deeper than %d levels", p.maxDepth)
	}
	c, err := p.parseUnary(depth+1, group, after)
	if err != nil {
		return nil, err
	}
	return &Not{Child: c}, nil
}

func (p *parser) parsePrimary(depth int, group, after string) (Node, error) {
	p.skipSpace()
	start := p.pos
	switch r := p.peek(); {
	case r == -1, r == ')', r == ']', r == '}', p.atAnd() != "", p.atOr() != "":
		return nil, p.errAt(p.pos, "expected a term%s, found %s", after, p.found())
	case r == '(':
		return p.parseGroup(depth, group)
	case r == '[' || r == '{':
		if group == "" {
			return nil, p.errAt(p.pos, "a range needs a field, as in timestamp:[2024-01-01 TO 2024-01-31]")
		}
		return p.parseRange(group)
	case r == '"':
		v, err := p.parsePhrase()
		if err != nil {
			return nil, err
		}
		return p.checkTerm(&Term{Field: group, Value: v, Phrase: true}, start)
	case r == ':' && group == "":
		return nil, p.errAt(p.pos, `expected a field name before ":"`)
	}
	w, err := p.scanWord(group == "")
	if err != nil {
		return nil, err
	}
	if group != "" || p.peek() != ':' {
		return p.checkTerm(w.term(group), start)
	}
	if w.wild {
		return nil, p.errAt(start, "a field name cannot contain wildcards (escape * and ? with a backslash)")
	}
	p.pos++ // ":"
	return p.parseFieldValue(depth, w.lit, start)
}

// parseGroup parses "(" or_expr ")".
func (p *parser) parseGroup(depth int, group string) (Node, error) {
	open := p.pos
	if depth+1 > p.maxDepth {
		return nil, p.errAt(open, "the query nests deeper than %d levels", p.maxDepth)
	}
	p.pos++
	n, err := p.parseOr(depth+1, group)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.peek() != ')' {
		return nil, p.errAt(p.pos, `expected ")" to close the "(" at column %d, found %s`, p.column(open), p.found())
	}
	p.pos++
	return n, nil
}

// parseFieldValue parses what follows "field:".
func (p *parser) parseFieldValue(depth int, field string, fieldStart int) (Node, error) {
	start := p.pos
	switch r := p.peek(); {
	case r == -1, unicode.IsSpace(r), r == ')', r == ']', r == '}':
		return nil, p.errAt(p.pos, "expected a value after %q, found %s", p.s[fieldStart:p.pos], p.found())
	case r == '(':
		return p.parseGroup(depth, field)
	case r == '[' || r == '{':
		return p.parseRange(field)
	case r == '"':
		v, err := p.parsePhrase()
		if err != nil {
			return nil, err
		}
		return p.checkTerm(&Term{Field: field, Value: v, Phrase: true}, start)
	}
	w, err := p.scanWord(false)
	if err != nil {
		return nil, err
	}
	return p.checkTerm(w.term(field), start)
}

// checkTerm rejects a timestamp value that is not a time, since it could never match; start is
// where the value begins. Wildcard values match the RFC 3339 text and are not checked.
func (p *parser) checkTerm(t *Term, start int) (Node, error) {
	if !t.Wildcard && isTimestampField(t.Field) {
		if _, _, ok := parseTime(t.Value); !ok {
			return nil, p.errAt(start, "expected a date (2024-01-31) or an RFC 3339 time (2024-01-31T12:00:00Z), found %q", t.Value)
		}
	}
	return t, nil
}

func (p *parser) parseRange(field string) (Node, error) {
	open := p.pos
	rg := &Range{Field: field, IncLo: p.s[p.pos] == '['}
	p.pos++
	p.skipSpace()
	lo, err := p.parseBound(field)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.atKeyword("TO") {
		return nil, p.errAt(p.pos, `expected "TO" after the lower bound of the range at column %d, found %s`, p.column(open), p.found())
	}
	p.pos += len("TO")
	p.skipSpace()
	hi, err := p.parseBound(field)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	switch p.peek() {
	case ']':
		rg.IncHi = true
	case '}':
	default:
		return nil, p.errAt(p.pos, `expected "]" or "}" to close the range at column %d, found %s`, p.column(open), p.found())
	}
	p.pos++
	rg.Lo, rg.Hi = lo, hi
	return rg, nil
}

// parseBound returns a range bound; "" is an open end.
func (p *parser) parseBound(field string) (string, error) {
	start := p.pos
	var v string
	switch r := p.peek(); {
	case r == '"':
		var err error
		if v, err = p.parsePhrase(); err != nil {
			return "", err
		}
	case r == -1, isSpecial(r) && r != '\\', p.atKeyword("TO"):
		return "", p.errAt(p.pos, `expected a range bound (a value, or * for an open end), found %s`, p.found())
	default:
		w, err := p.scanWord(false)
		if err != nil {
			return "", err
		}
		if w.wild {
			if w.pat != "*" {
				return "", p.errAt(start, "wildcards are not allowed in range bounds; * alone is an open end")
			}
			return "", nil
		}
		v = w.lit
	}
	if isTimestampField(field) {
		if _, _, ok := parseTime(v); !ok {
			return "", p.errAt(start, "expected a date (2024-01-31) or an RFC 3339 time (2024-01-31T12:00:00Z), found %q", v)
		}
	}
	return v, nil
}

// parsePhrase parses a quoted string and returns its unescaped text.
func (p *parser) parsePhrase() (string, error) {
	open := p.pos
	p.pos++
	var b strings.Builder
	for {
		r, size := utf8.DecodeRuneInString(p.s[p.pos:])
		if p.pos >= len(p.s) {
			return "", p.errAt(p.pos, `expected '"' to close the phrase at column %d, found the end of the query`, p.column(open))
		}
		p.pos += size
		switch r {
		case '"':
			if b.Len() == 0 {
				return "", p.errAt(open, "empty phrase")
			}
			return b.String(), nil
		case '\\':
			if p.pos >= len(p.s) {
				return "", p.errAt(p.pos, `expected '"' to close the phrase at column %d, found the end of the query`, p.column(open))
			}
			r, size = utf8.DecodeRuneInString(p.s[p.pos:])
			p.pos += size
		}
		b.WriteRune(r)
	}
}

// word is an unquoted word: lit is its text without escapes, pat the same as a glob pattern
// (escapes kept for \, * and ?), and wild whether it has an unescaped * or ?.
type word struct {
	lit, pat string
	wild     bool
}

func (w word) term(field string) *Term {
	if w.wild {
		return &Term{Field: field, Value: w.pat, Wildcard: true}
	}
	return &Term{Field: field, Value: w.lit}
}

// scanWord reads a non-empty word; colonEnds says whether ":" ends it.
func (p *parser) scanWord(colonEnds bool) (word, error) {
	var lit, pat strings.Builder
	var w word
	for p.pos < len(p.s) {
		r, size := utf8.DecodeRuneInString(p.s[p.pos:])
		if (isSpecial(r) && r != '\\') || (r == ':' && colonEnds) {
			break
		}
		p.pos += size
		switch r {
		case '\\':
			if p.pos >= len(p.s) {
				return word{}, p.errAt(p.pos-size, `expected a character after "\"`)
			}
			r, size = utf8.DecodeRuneInString(p.s[p.pos:])
			p.pos += size
			if r == '*' || r == '?' || r == '\\' {
				pat.WriteByte('\\')
			}
		case '*', '?':
			w.wild = true
		}
		lit.WriteRune(r)
		pat.WriteRune(r)
	}
	w.lit, w.pat = lit.String(), pat.String()
	return w, nil
}
