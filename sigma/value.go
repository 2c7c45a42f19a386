package sigma

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// val is one scalar of an event field, with its text forms computed once.
type val struct {
	raw   any
	s     string
	low   string
	flags uint8
}

const (
	hasStr = 1 << iota
	hasLow
	asciiKnown
	asciiText
)

// isASCII reports whether the value's text is ASCII, where folding ASCII case is lower-casing.
func (v *val) isASCII() bool {
	if v.flags&asciiKnown == 0 {
		v.flags |= asciiKnown
		if isASCII(v.str()) {
			v.flags |= asciiText
		}
	}
	return v.flags&asciiText != 0
}

func (v *val) str() string {
	if v.flags&hasStr == 0 {
		v.s = toString(v.raw)
		v.flags |= hasStr
	}
	return v.s
}

// lower is the lower-case text that case-insensitive patterns compare with.
func (v *val) lower() string {
	if v.flags&hasLow == 0 {
		v.low = lowerASCIIFast(v.str())
		v.flags |= hasLow
	}
	return v.low
}

// lowerASCIIFast is strings.ToLower without its allocation when s is already lower case.
func lowerASCIIFast(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			return strings.ToLower(s)
		}
	}
	return s
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// number reads v as a number: event integers and floats, and strings in decimal or 0x hex.
func number(v *val) (float64, bool) {
	switch x := v.raw.(type) {
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case int:
		return float64(x), true
	case float64:
		return x, true
	case string:
		return parseNumber(x)
	}
	return 0, false
}

func parseNumber(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(s, 0, 64); err == nil {
		return float64(n), true
	}
	if n, err := strconv.ParseUint(s, 0, 64); err == nil {
		return float64(n), true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) {
		return f, true
	}
	return 0, false
}

// A pred tests one scalar of a field.
type pred interface {
	match(s *state, v *val) bool
}

type strPred struct{ m strMatcher }

func (p *strPred) match(_ *state, v *val) bool {
	if p.m.cased {
		return p.m.match(v.str())
	}
	if p.m.ascii && p.m.kind != mGlob && v.isASCII() {
		return p.m.matchFold(v.str())
	}
	return p.m.match(v.lower())
}

// numEqPred is an unquoted YAML integer: it equals a numeric field with the same value and a string
// field with the same text or the same number (EventID 4688 matches int64(4688) and "4688").
type numEqPred struct {
	text string // lower case
	n    float64
}

func (p *numEqPred) match(_ *state, v *val) bool {
	switch v.raw.(type) {
	case int64, uint64, int, float64:
		f, _ := number(v)
		return f == p.n
	}
	if v.lower() == p.text {
		return true
	}
	f, ok := parseNumber(v.str())
	return ok && f == p.n
}

type cmpPred struct {
	op string
	n  float64
}

func (p *cmpPred) match(_ *state, v *val) bool {
	f, ok := number(v)
	if !ok {
		return false
	}
	switch p.op {
	case "gt":
		return f > p.n
	case "gte":
		return f >= p.n
	case "lt":
		return f < p.n
	}
	return f <= p.n
}

type rePred struct {
	re   *regexp.Regexp
	lits []string // one of which every match contains (lower case), for the prefilter
}

func (p *rePred) match(_ *state, v *val) bool { return p.re.MatchString(v.str()) }

type cidrPred struct{ prefix netip.Prefix }

func (p *cidrPred) match(_ *state, v *val) bool {
	s := v.str()
	if i := strings.IndexByte(s, '%'); i >= 0 {
		s = s[:i] // a zone (fe80::1%eth0)
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return false
	}
	return p.prefix.Contains(a.Unmap())
}

// anyPred matches when one of its preds does: the three encodings of base64offset.
type anyPred []pred

func (p anyPred) match(s *state, v *val) bool {
	for _, q := range p {
		if q.match(s, v) {
			return true
		}
	}
	return false
}

// emptyPred is YAML null inside a list: the field is empty (a missing field is handled by the field).
type emptyPred struct{}

func (emptyPred) match(_ *state, v *val) bool { return v.str() == "" }

// fieldrefPred compares with another field of the same event.
type fieldrefPred struct {
	other *fieldRef
	kind  matchKind
	cased bool
}

func (p *fieldrefPred) match(s *state, v *val) bool {
	found := false
	ok := false
	s.each(p.other, func(o *val) bool {
		found = true
		a, b := v.lower(), o.lower()
		if p.cased {
			a, b = v.str(), o.str()
		}
		switch p.kind {
		case mContains:
			ok = strings.Contains(a, b)
		case mPrefix:
			ok = strings.HasPrefix(a, b)
		case mSuffix:
			ok = strings.HasSuffix(a, b)
		default:
			ok = a == b
		}
		return !ok
	})
	return found && ok
}

// modSet is a field's modifiers, read and checked.
type modSet struct {
	kind      matchKind
	encodings []string // utf16le, utf16be, utf16, wide, base64, base64offset in order
	windash   bool
	all       bool
	cased     bool
	re        bool
	reFlags   string
	cidr      bool
	exists    bool
	cmp       string
	fieldref  bool
}

func parseMods(mods []string) (modSet, error) {
	var m modSet
	placed := false
	for i, mod := range mods {
		switch mod {
		case "contains", "startswith", "endswith":
			if placed {
				return m, fmt.Errorf("modifiers: %s after another of contains/startswith/endswith", mod)
			}
			placed = true
			m.kind = map[string]matchKind{"contains": mContains, "startswith": mPrefix, "endswith": mSuffix}[mod]
		case "all":
			m.all = true
		case "cased":
			m.cased = true
		case "windash":
			m.windash = true
		case "base64", "base64offset", "utf16le", "utf16be", "utf16", "wide":
			m.encodings = append(m.encodings, mod)
		case "re":
			m.re = true
		case "i", "m", "s":
			if i == 0 || !m.re {
				return m, fmt.Errorf("modifiers: %q only follows re", mod)
			}
			m.reFlags += mod
		case "cidr":
			m.cidr = true
		case "exists":
			m.exists = true
		case "gt", "gte", "lt", "lte":
			m.cmp = mod
		case "fieldref":
			m.fieldref = true
		case "expand":
			return m, unsupported("modifier expand (placeholders need values configured per site)")
		case "":
			return m, fmt.Errorf("modifiers: empty modifier")
		default:
			return m, unsupported("modifier %q", mod)
		}
	}
	special := 0
	for _, b := range []bool{m.re, m.cidr, m.exists, m.cmp != "", m.fieldref} {
		if b {
			special++
		}
	}
	if special > 1 {
		return m, unsupported("modifiers %s together", strings.Join(mods, "|"))
	}
	if special == 1 && (len(m.encodings) > 0 || m.windash || (placed && !m.fieldref)) {
		return m, unsupported("modifiers %s together", strings.Join(mods, "|"))
	}
	for _, e := range m.encodings[:max(0, len(m.encodings)-1)] {
		if e == "base64" || e == "base64offset" {
			return m, unsupported("modifiers %s: an encoding after base64", strings.Join(mods, "|"))
		}
	}
	if n := len(m.encodings); n > 0 {
		last := m.encodings[n-1]
		if last == "base64offset" && m.kind != mContains {
			return m, fmt.Errorf("modifiers: base64offset needs contains")
		}
		if last != "base64" && last != "base64offset" {
			return m, unsupported("modifiers %s: a UTF-16 encoding without base64 cannot occur in text fields", strings.Join(mods, "|"))
		}
	}
	return m, nil
}

// encode applies the byte encodings in order and returns the literal strings any of which the
// value must contain (three for base64offset).
func encode(s string, encs []string) []string {
	vals := []string{s}
	for _, e := range encs {
		switch e {
		case "utf16le", "wide":
			vals[0] = utf16Bytes(vals[0], false)
		case "utf16be":
			vals[0] = utf16Bytes(vals[0], true)
		case "utf16":
			vals[0] = "\xff\xfe" + utf16Bytes(vals[0], false)
		case "base64":
			vals[0] = base64.StdEncoding.EncodeToString([]byte(vals[0]))
		case "base64offset":
			vals = base64Offsets(vals[0])
		}
	}
	return vals
}

func utf16Bytes(s string, bigEndian bool) string {
	units := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(units))
	for _, u := range units {
		if bigEndian {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return string(b)
}

// base64Offsets are the parts of the base64 encoding of s that do not depend on what surrounds it,
// for s starting at each of the three byte offsets of a base64 group.
func base64Offsets(s string) []string {
	starts := [3]int{0, 2, 3}
	ends := [3]int{0, 3, 2} // characters to drop at the end, by (offset+len) mod 3
	var out []string
	for i := 0; i < 3; i++ {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, i), s...))
		end := len(enc) - ends[(len(s)+i)%3]
		if starts[i] > end {
			continue
		}
		if v := enc[starts[i]:end]; v != "" {
			out = append(out, v)
		}
	}
	return out
}

// hasWildcard reports whether s holds an unescaped * or ?.
func hasWildcard(s string) bool {
	for _, t := range splitWildcards(s) {
		if t.kind != tokLit {
			return true
		}
	}
	return false
}

func unescape(s string) string {
	var b strings.Builder
	for _, t := range splitWildcards(s) {
		b.WriteString(t.lit)
	}
	return b.String()
}

// compileValue builds the pred of one value under m. A nil pred with no error is YAML null.
func (c *compiler) compileValue(m modSet, v ruleValue) (pred, error) {
	if v.Null {
		return nil, nil
	}
	switch {
	case m.re:
		re, err := compileRegexp(v.S, m.reFlags)
		if err != nil {
			return nil, err
		}
		return &rePred{re: re, lits: regexLiterals(v.S)}, nil
	case m.cidr:
		p, err := netip.ParsePrefix(strings.TrimSpace(v.S))
		if err != nil {
			return nil, fmt.Errorf("cidr %q: %w", v.S, err)
		}
		return &cidrPred{prefix: p.Masked()}, nil
	case m.cmp != "":
		n, ok := parseNumber(v.S)
		if !ok {
			return nil, fmt.Errorf("%s needs a number, not %q", m.cmp, v.S)
		}
		return &cmpPred{op: m.cmp, n: n}, nil
	case m.fieldref:
		return &fieldrefPred{other: c.field(v.S), kind: m.kind, cased: m.cased}, nil
	case len(m.encodings) > 0:
		if hasWildcard(v.S) {
			return nil, unsupported("wildcards in a base64-encoded value")
		}
		var any anyPred
		for _, lit := range encode(unescape(v.S), m.encodings) {
			any = append(any, &strPred{m: newStrMatcher(literalTokens(lit), m.kind, true)})
		}
		if len(any) == 1 {
			return any[0], nil
		}
		return any, nil
	case v.Kind == kindInt && m.kind == mEqual && !m.windash:
		n, _ := parseNumber(v.S)
		return &numEqPred{text: strings.ToLower(v.S), n: n}, nil
	}
	toks := splitWildcards(v.S)
	if m.windash {
		toks = windash(toks)
	}
	return &strPred{m: newStrMatcher(toks, m.kind, m.cased)}, nil
}

// maxRegexp bounds a rule's regular expression; RE2 keeps matching linear in the input.
const maxRegexp = 32 << 10

func compileRegexp(expr, flags string) (*regexp.Regexp, error) {
	if len(expr) > maxRegexp {
		return nil, unsupported("regular expression longer than %d bytes", maxRegexp)
	}
	if flags != "" {
		expr = "(?" + flags + ")" + expr
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		var se *syntax.Error
		if asSyntax(err, &se) {
			switch se.Code {
			case syntax.ErrInvalidPerlOp, syntax.ErrInvalidRepeatSize, syntax.ErrInvalidEscape,
				syntax.ErrInvalidNamedCapture, syntax.ErrLarge, syntax.ErrNestingDepth:
				// Look-arounds, backreferences, possessive quantifiers and the like: valid PCRE.
				return nil, unsupported("regular expression RE2 cannot compile (%s)", se.Code)
			}
		}
		return nil, fmt.Errorf("regular expression: %w", err)
	}
	return re, nil
}

func asSyntax(err error, target **syntax.Error) bool {
	se, ok := err.(*syntax.Error)
	if ok {
		*target = se
	}
	return ok
}

// maxRegexLits bounds the alternatives regexLiterals keeps: past that the prefilter gains little.
const maxRegexLits = 64

// regexLiterals are lower-case literals one of which every match of the expression contains,
// or nil when it has none worth a prefilter entry.
func regexLiterals(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	lits := reqLits(re.Simplify(), 0)
	for _, l := range lits {
		if len(l) < minAtom {
			return nil
		}
	}
	return lits
}

func reqLits(re *syntax.Regexp, depth int) []string {
	if depth > 32 {
		return nil
	}
	switch re.Op {
	case syntax.OpLiteral:
		return []string{strings.ToLower(string(re.Rune))}
	case syntax.OpCapture:
		return reqLits(re.Sub[0], depth+1)
	case syntax.OpPlus:
		return reqLits(re.Sub[0], depth+1)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return reqLits(re.Sub[0], depth+1)
		}
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			l := reqLits(s, depth+1)
			if l == nil || len(out)+len(l) > maxRegexLits {
				return nil
			}
			out = append(out, l...)
		}
		return out
	case syntax.OpConcat:
		// The best single part; adjacent literals join into one longer literal.
		var best []string
		score := func(l []string) int {
			m := 1 << 30
			for _, s := range l {
				m = min(m, len(s))
			}
			return min(m, 16)*100 - len(l)
		}
		var run strings.Builder
		flush := func() {
			if run.Len() > 0 {
				l := []string{strings.ToLower(run.String())}
				if best == nil || score(l) > score(best) {
					best = l
				}
				run.Reset()
			}
		}
		for _, s := range re.Sub {
			if s.Op == syntax.OpLiteral {
				run.WriteString(string(s.Rune))
				continue
			}
			flush()
			if l := reqLits(s, depth+1); l != nil && (best == nil || score(l) > score(best)) {
				best = l
			}
		}
		flush()
		return best
	}
	return nil
}
