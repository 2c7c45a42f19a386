// Package odata parses and evaluates the subset of OData v4 `$filter` expressions that the Defender for
// Endpoint API accepts, so the emulator can filter machines, machine actions and alerts the way the
// real service does and reject everything else with a clear message.
//
// Supported: comparisons `eq ne gt ge lt le` between a property and a literal, `and`, `or`, `not`,
// parentheses, `prop in ('a','b')`, `startswith/endswith/contains(prop,'x')` and, on collection
// properties, `prop/any(t: t eq 'x')`. Literals: single-quoted strings (” escapes a quote), numbers,
// `true`/`false`, `null` and unquoted ISO-8601 dates (`2024-05-01T00:00:00Z`, `2018-08-01Z`).
// Operators and function names are matched case-insensitively because clients send `AND` and the
// service accepts it; property names are case-sensitive as in OData.
package odata

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of a filterable property.
type Kind int

// Property kinds.
const (
	String     Kind = iota // string (enums included); nil when unset
	Number                 // float64 (integers included)
	Bool                   // bool
	Time                   // time.Time
	StringList             // []string, usable only with any()
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Number:
		return "number"
	case Bool:
		return "boolean"
	case Time:
		return "datetime"
	case StringList:
		return "collection"
	}
	return "unknown"
}

// Schema lists the properties a collection may be filtered on.
type Schema map[string]Kind

// Getter returns a record's value for a property: string, float64, bool, time.Time, []string or nil.
type Getter func(prop string) any

// Error is a filter the service would reject; the API layer reports it as 400 ODataError.
type Error struct {
	Pos int // byte offset in the filter text
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("invalid filter at position %d: %s", e.Pos, e.Msg) }

// Filter is a parsed `$filter` expression.
type Filter struct{ root node }

// Match reports whether the record passes the filter. A nil Filter matches everything.
func (f *Filter) Match(get Getter) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.eval(get)
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

// maxLen bounds the filter text; real filters are a few hundred bytes.
const maxLen = 16 << 10

// Parse parses a `$filter` value against schema.
func Parse(text string, schema Schema) (*Filter, error) {
	if len(text) > maxLen {
		return nil, &Error{Pos: maxLen, Msg: "filter is too long"}
	}
	toks, err := lex(text)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, schema: schema}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf("unexpected %q", t.text)}
	}
	return &Filter{root: n}, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tDate
	tLParen
	tRParen
	tComma
	tColon
	tSlash
)

type token struct {
	kind tokKind
	text string // identifier or raw literal text
	str  string // decoded string literal
	pos  int
}

func lex(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			toks = append(toks, token{kind: tLParen, text: "(", pos: i})
			i++
		case c == ')':
			toks = append(toks, token{kind: tRParen, text: ")", pos: i})
			i++
		case c == ',':
			toks = append(toks, token{kind: tComma, text: ",", pos: i})
			i++
		case c == ':':
			toks = append(toks, token{kind: tColon, text: ":", pos: i})
			i++
		case c == '/':
			toks = append(toks, token{kind: tSlash, text: "/", pos: i})
			i++
		case c == '\'':
			start := i
			i++
			var b strings.Builder
			closed := false
			for i < len(s) {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, &Error{Pos: start, Msg: "unterminated string literal"}
			}
			toks = append(toks, token{kind: tString, text: s[start:i], str: b.String(), pos: start})
		case c == '-' || (c >= '0' && c <= '9'):
			start := i
			i++
			for i < len(s) && strings.IndexByte("0123456789.:-+TZtze", s[i]) >= 0 {
				// A '-' or '+' inside a number is only valid as a date separator or exponent sign;
				// classify afterwards.
				i++
			}
			raw := s[start:i]
			kind, err := classifyNumeric(raw)
			if err != nil {
				return nil, &Error{Pos: start, Msg: err.Error()}
			}
			toks = append(toks, token{kind: kind, text: raw, pos: start})
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdentPart(s[i]) {
				i++
			}
			toks = append(toks, token{kind: tIdent, text: s[start:i], pos: start})
		default:
			return nil, &Error{Pos: i, Msg: fmt.Sprintf("unexpected character %q", c)}
		}
	}
	toks = append(toks, token{kind: tEOF, pos: len(s)})
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c == '.' || (c >= '0' && c <= '9') }

// classifyNumeric tells a number from an unquoted date literal.
func classifyNumeric(raw string) (tokKind, error) {
	if _, err := strconv.ParseFloat(raw, 64); err == nil {
		return tNumber, nil
	}
	if _, ok := parseTime(raw); ok {
		return tDate, nil
	}
	return 0, fmt.Errorf("%q is neither a number nor a date", raw)
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05",
	"2006-01-02Z07:00",
	"2006-01-02",
}

func parseTime(s string) (time.Time, bool) {
	u := strings.ToUpper(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, u); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

type parser struct {
	toks   []token
	i      int
	schema Schema
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) isKeyword(word string) bool {
	t := p.peek()
	return t.kind == tIdent && strings.EqualFold(t.text, word)
}

func (p *parser) expect(k tokKind, what string) (token, error) {
	t := p.next()
	if t.kind != k {
		return t, &Error{Pos: t.pos, Msg: fmt.Sprintf("expected %s, found %q", what, t.text)}
	}
	return t, nil
}

func (p *parser) or(depth int) (node, error) {
	left, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.isKeyword("or") {
		p.next()
		right, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		left = orNode{left, right}
	}
	return left, nil
}

func (p *parser) and(depth int) (node, error) {
	left, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.isKeyword("and") {
		p.next()
		right, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		left = andNode{left, right}
	}
	return left, nil
}

func (p *parser) unary(depth int) (node, error) {
	if depth > maxDepth {
		return nil, &Error{Pos: p.peek().pos, Msg: "expression is nested too deeply"}
	}
	if p.isKeyword("not") {
		p.next()
		n, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	}
	return p.primary(depth)
}

func (p *parser) primary(depth int) (node, error) {
	t := p.peek()
	switch t.kind {
	case tLParen:
		p.next()
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, "')'"); err != nil {
			return nil, err
		}
		return n, nil
	case tIdent:
		p.next()
		if p.peek().kind == tLParen {
			return p.function(t)
		}
		kind, ok := p.schema[t.text]
		if !ok {
			return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf("could not find a property named '%s' that can be filtered", t.text)}
		}
		if kind == StringList {
			return p.any(t)
		}
		if p.isKeyword("in") {
			return p.in(t, kind)
		}
		return p.comparison(t, kind)
	}
	return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf("expected a property, function or '(', found %q", t.text)}
}

var compareOps = map[string]bool{"eq": true, "ne": true, "gt": true, "ge": true, "lt": true, "le": true}

func (p *parser) operator() (string, error) {
	t := p.next()
	op := strings.ToLower(t.text)
	if t.kind != tIdent || !compareOps[op] {
		return "", &Error{Pos: t.pos, Msg: fmt.Sprintf("expected a comparison operator (eq, ne, gt, ge, lt, le), found %q", t.text)}
	}
	return op, nil
}

func (p *parser) comparison(prop token, kind Kind) (node, error) {
	op, err := p.operator()
	if err != nil {
		return nil, err
	}
	v, err := p.literal(kind)
	if err != nil {
		return nil, err
	}
	if v == nil && op != "eq" && op != "ne" {
		return nil, &Error{Pos: prop.pos, Msg: "null can only be compared with eq or ne"}
	}
	if kind == Bool && op != "eq" && op != "ne" {
		return nil, &Error{Pos: prop.pos, Msg: "booleans can only be compared with eq or ne"}
	}
	return cmpNode{prop: prop.text, op: op, val: v}, nil
}

// literal reads a literal and converts it to the property's kind.
func (p *parser) literal(kind Kind) (any, error) {
	t := p.next()
	if t.kind == tIdent && strings.EqualFold(t.text, "null") {
		return nil, nil
	}
	bad := &Error{Pos: t.pos, Msg: fmt.Sprintf("%q is not a valid %s literal", t.text, kind)}
	switch kind {
	case String:
		if t.kind == tString {
			return t.str, nil
		}
	case Number:
		if t.kind == tNumber {
			f, err := strconv.ParseFloat(t.text, 64)
			if err == nil {
				return f, nil
			}
		}
	case Bool:
		if t.kind == tIdent && (strings.EqualFold(t.text, "true") || strings.EqualFold(t.text, "false")) {
			return strings.EqualFold(t.text, "true"), nil
		}
	case Time:
		raw := t.text
		if t.kind == tString {
			raw = t.str
		} else if t.kind == tIdent && strings.HasPrefix(strings.ToLower(t.text), "datetime") {
			// Old-style datetime'2024-01-01T00:00:00Z' literal.
			s, err := p.expect(tString, "a quoted date")
			if err != nil {
				return nil, err
			}
			raw = s.str
		} else if t.kind != tDate && t.kind != tNumber {
			return nil, bad
		}
		if tm, ok := parseTime(raw); ok {
			return tm, nil
		}
	}
	return nil, bad
}

func (p *parser) in(prop token, kind Kind) (node, error) {
	p.next() // in
	if _, err := p.expect(tLParen, "'('"); err != nil {
		return nil, err
	}
	var vals []any
	for {
		v, err := p.literal(kind)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		t := p.next()
		if t.kind == tRParen {
			break
		}
		if t.kind != tComma {
			return nil, &Error{Pos: t.pos, Msg: fmt.Sprintf("expected ',' or ')', found %q", t.text)}
		}
	}
	var n node = cmpNode{prop: prop.text, op: "eq", val: vals[0]}
	for _, v := range vals[1:] {
		n = orNode{n, cmpNode{prop: prop.text, op: "eq", val: v}}
	}
	return n, nil
}

// any parses `prop/any(x: x eq 'v')`, the OData lambda over a string collection.
func (p *parser) any(prop token) (node, error) {
	if _, err := p.expect(tSlash, "'/any(' after a collection property"); err != nil {
		return nil, err
	}
	fn := p.next()
	if fn.kind != tIdent || !strings.EqualFold(fn.text, "any") {
		return nil, &Error{Pos: fn.pos, Msg: "only any() is supported on collection properties"}
	}
	if _, err := p.expect(tLParen, "'('"); err != nil {
		return nil, err
	}
	v, err := p.expect(tIdent, "a lambda variable")
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(tColon, "':'"); err != nil {
		return nil, err
	}
	// The body is `var op 'literal'` or a string function of var, joined by and/or.
	body, err := p.lambdaBody(v.text, 0)
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(tRParen, "')'"); err != nil {
		return nil, err
	}
	return anyNode{prop: prop.text, body: body}, nil
}

func (p *parser) lambdaBody(variable string, depth int) (node, error) {
	sub := &parser{toks: p.toks, i: p.i, schema: Schema{variable: String}}
	n, err := sub.or(depth + 1)
	p.i = sub.i
	return n, err
}

var stringFuncs = map[string]bool{"startswith": true, "endswith": true, "contains": true}

func (p *parser) function(name token) (node, error) {
	fn := strings.ToLower(name.text)
	if !stringFuncs[fn] {
		return nil, &Error{Pos: name.pos, Msg: fmt.Sprintf("unsupported function %q", name.text)}
	}
	p.next() // (
	prop, err := p.expect(tIdent, "a property")
	if err != nil {
		return nil, err
	}
	if kind, ok := p.schema[prop.text]; !ok || kind != String {
		return nil, &Error{Pos: prop.pos, Msg: fmt.Sprintf("%s() needs a string property, not '%s'", fn, prop.text)}
	}
	if _, err := p.expect(tComma, "','"); err != nil {
		return nil, err
	}
	arg, err := p.expect(tString, "a string literal")
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(tRParen, "')'"); err != nil {
		return nil, err
	}
	var n node = funcNode{fn: fn, prop: prop.text, arg: arg.str}
	// `startswith(x,'a') eq true` is valid OData too.
	if t := p.peek(); t.kind == tIdent && (strings.EqualFold(t.text, "eq") || strings.EqualFold(t.text, "ne")) {
		op := strings.ToLower(p.next().text)
		b, err := p.literal(Bool)
		if err != nil || b == nil {
			return nil, &Error{Pos: t.pos, Msg: "a function result can only be compared with true or false"}
		}
		if (op == "eq") != b.(bool) {
			n = notNode{n}
		}
	}
	return n, nil
}

type node interface{ eval(Getter) bool }

type andNode struct{ l, r node }

func (n andNode) eval(g Getter) bool { return n.l.eval(g) && n.r.eval(g) }

type orNode struct{ l, r node }

func (n orNode) eval(g Getter) bool { return n.l.eval(g) || n.r.eval(g) }

type notNode struct{ n node }

func (n notNode) eval(g Getter) bool { return !n.n.eval(g) }

type cmpNode struct {
	prop string
	op   string
	val  any
}

func (n cmpNode) eval(g Getter) bool {
	got := g(n.prop)
	if got == nil || n.val == nil {
		same := got == nil && n.val == nil
		switch n.op {
		case "eq":
			return same
		case "ne":
			return !same
		}
		return false
	}
	c, ok := compare(got, n.val)
	if !ok {
		return n.op == "ne"
	}
	switch n.op {
	case "eq":
		return c == 0
	case "ne":
		return c != 0
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	}
	return false
}

// compare orders two values of the same kind. Strings compare case-insensitively, as the service
// matches `computerDnsName eq 'WS-01'` against `ws-01`.
func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(strings.ToLower(x), strings.ToLower(y)), true
	case float64:
		y, ok := b.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case bool:
		y, ok := b.(bool)
		if !ok {
			return 0, false
		}
		if x == y {
			return 0, true
		}
		return 1, true
	case time.Time:
		y, ok := b.(time.Time)
		if !ok {
			return 0, false
		}
		return x.Compare(y), true
	}
	return 0, false
}

type funcNode struct {
	fn, prop, arg string
}

func (n funcNode) eval(g Getter) bool {
	s, ok := g(n.prop).(string)
	if !ok {
		return false
	}
	s, arg := strings.ToLower(s), strings.ToLower(n.arg)
	switch n.fn {
	case "startswith":
		return strings.HasPrefix(s, arg)
	case "endswith":
		return strings.HasSuffix(s, arg)
	case "contains":
		return strings.Contains(s, arg)
	}
	return false
}

type anyNode struct {
	prop string
	body node
}

func (n anyNode) eval(g Getter) bool {
	list, _ := g(n.prop).([]string)
	for _, item := range list {
		if n.body.eval(func(string) any { return item }) {
			return true
		}
	}
	return false
}
