package sigma

import (
	"strings"
	"unicode/utf8"
)

// A pattern is one Sigma string value after modifiers: literal text, the wildcards * and ?, and
// (after windash) dash slots that match any of the five dash characters Windows command lines accept.
// Matching is a backtracking glob with one saved star, which is exact here because every non-star
// token matches at most one way at a given position.

type tokKind uint8

const (
	tokLit  tokKind = iota // literal text
	tokStar                // * : any run of characters
	tokOne                 // ? : one character
	tokDash                // windash slot: - / – — ―
)

type tok struct {
	kind tokKind
	lit  string
}

// dashes are what a windash slot matches: the hyphen, the slash and the en dash, em dash and
// horizontal bar that copy-pasted command lines carry and that Windows programs accept as well.
var dashes = []string{"-", "/", "\u2013", "\u2014", "\u2015"}

// splitWildcards reads Sigma's escaping: \* and \? are literal, \\ is one backslash, a backslash
// before anything else is itself. The result has no empty literals and no two stars in a row.
func splitWildcards(s string) []tok {
	var out []tok
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			out = append(out, tok{kind: tokLit, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\') {
				lit.WriteByte(s[i+1])
				i++
				continue
			}
			lit.WriteByte(c)
		case '*':
			flush()
			if len(out) == 0 || out[len(out)-1].kind != tokStar {
				out = append(out, tok{kind: tokStar})
			}
		case '?':
			flush()
			out = append(out, tok{kind: tokOne})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return out
}

// literalTokens is s taken literally, for values whose wildcards were already decided (base64).
func literalTokens(s string) []tok {
	if s == "" {
		return nil
	}
	return []tok{{kind: tokLit, lit: s}}
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// windash turns each - or / that starts a word (a flag such as -enc or /c) into a dash slot.
func windash(toks []tok) []tok {
	var out []tok
	for ti, t := range toks {
		if t.kind != tokLit {
			out = append(out, t)
			continue
		}
		s := t.lit
		start := 0
		for i := 0; i < len(s); i++ {
			if s[i] != '-' && s[i] != '/' {
				continue
			}
			var prevWord bool
			if i > 0 {
				prevWord = isWordByte(s[i-1])
			} else if ti > 0 {
				// After a wildcard the preceding character is unknown: Sigma's rule (\B[-/]\b) needs
				// a non-word character there, which a wildcard may be.
				prevWord = false
			}
			nextWord := i+1 < len(s) && isWordByte(s[i+1])
			if prevWord || !nextWord {
				continue
			}
			if i > start {
				out = append(out, tok{kind: tokLit, lit: s[start:i]})
			}
			out = append(out, tok{kind: tokDash})
			start = i + 1
		}
		if start < len(s) {
			out = append(out, tok{kind: tokLit, lit: s[start:]})
		}
	}
	return out
}

// matchKind is how a pattern is placed in the value.
type matchKind uint8

const (
	mEqual matchKind = iota
	mContains
	mPrefix
	mSuffix
	mGlob // anything with wildcards or dash slots: toks must match the whole value
)

// strMatcher matches strings against one pattern; its text is lower case unless cased.
type strMatcher struct {
	kind  matchKind
	lit   string
	toks  []tok
	cased bool
	ascii bool // lit is ASCII: matchFold can compare without lower-casing the value
}

// newStrMatcher builds the matcher of toks placed as kind (mEqual, mContains, mPrefix, mSuffix).
func newStrMatcher(toks []tok, kind matchKind, cased bool) strMatcher {
	if !cased {
		for i := range toks {
			if toks[i].kind == tokLit {
				toks[i].lit = strings.ToLower(toks[i].lit)
			}
		}
	}
	plain := true
	for _, t := range toks {
		if t.kind != tokLit {
			plain = false
		}
	}
	if plain {
		var b strings.Builder
		for _, t := range toks {
			b.WriteString(t.lit)
		}
		lit := b.String()
		return strMatcher{kind: kind, lit: lit, cased: cased, ascii: isASCII(lit)}
	}
	switch kind {
	case mContains:
		toks = append(append([]tok{{kind: tokStar}}, toks...), tok{kind: tokStar})
	case mPrefix:
		toks = append(toks, tok{kind: tokStar})
	case mSuffix:
		toks = append([]tok{{kind: tokStar}}, toks...)
	}
	// Collapse the stars the placement may have doubled.
	out := toks[:0:0]
	for _, t := range toks {
		if t.kind == tokStar && len(out) > 0 && out[len(out)-1].kind == tokStar {
			continue
		}
		out = append(out, t)
	}
	return strMatcher{kind: mGlob, toks: out, cased: cased}
}

// match reports whether s (already lower case unless m.cased) matches.
func (m *strMatcher) match(s string) bool {
	switch m.kind {
	case mEqual:
		return s == m.lit
	case mContains:
		return strings.Contains(s, m.lit)
	case mPrefix:
		return strings.HasPrefix(s, m.lit)
	case mSuffix:
		return strings.HasSuffix(s, m.lit)
	}
	return globMatch(m.toks, s)
}

// matchFold matches an ASCII value s (not lower-cased) against a plain case-insensitive pattern
// with an ASCII literal: the same result as match(lower(s)) without building the lower case.
func (m *strMatcher) matchFold(s string) bool {
	l := m.lit
	switch m.kind {
	case mEqual:
		return len(s) == len(l) && foldEqual(s, l)
	case mPrefix:
		return len(s) >= len(l) && foldEqual(s[:len(l)], l)
	case mSuffix:
		return len(s) >= len(l) && foldEqual(s[len(s)-len(l):], l)
	}
	return indexFold(s, l) >= 0
}

// indexFold is the first index of lit (lower-case ASCII) in s ignoring ASCII case, or -1.
func indexFold(s, lit string) int {
	if len(lit) == 0 {
		return 0
	}
	lo, up := lit[0], lit[0]
	if lo >= 'a' && lo <= 'z' {
		up = lo - ('a' - 'A')
	}
	last := len(s) - len(lit) // the last place lit can start
	for i := 0; i <= last; {
		// Jump to the next place the first byte occurs in either case.
		j := strings.IndexByte(s[i:last+1], lo)
		if up != lo {
			if k := strings.IndexByte(s[i:last+1], up); k >= 0 && (j < 0 || k < j) {
				j = k
			}
		}
		if j < 0 {
			return -1
		}
		i += j
		if foldEqual(s[i+1:i+len(lit)], lit[1:]) {
			return i
		}
		i++
	}
	return -1
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// stepTok matches one non-star token at s[i:], returning the end.
func stepTok(t tok, s string, i int) (int, bool) {
	switch t.kind {
	case tokLit:
		if strings.HasPrefix(s[i:], t.lit) {
			return i + len(t.lit), true
		}
	case tokOne:
		if i < len(s) {
			_, n := utf8.DecodeRuneInString(s[i:])
			return i + n, true
		}
	case tokDash:
		for _, d := range dashes {
			if strings.HasPrefix(s[i:], d) {
				return i + len(d), true
			}
		}
	}
	return i, false
}

// globMatch matches the whole of s. With one saved star it runs in O(len(toks)·len(s)).
func globMatch(toks []tok, s string) bool {
	ti, si := 0, 0
	starT, starS := -1, 0
	for {
		if ti < len(toks) {
			t := toks[ti]
			if t.kind == tokStar {
				starT, starS = ti, si
				ti++
				continue
			}
			// A literal after a star: jump to its next occurrence instead of stepping byte by byte.
			if t.kind == tokLit && starT >= 0 && starT == ti-1 {
				k := strings.Index(s[si:], t.lit)
				if k < 0 {
					return false
				}
				si += k
				starS = si
			}
			if end, ok := stepTok(t, s, si); ok {
				ti, si = ti+1, end
				continue
			}
		} else if si == len(s) {
			return true
		}
		if starT < 0 || starS >= len(s) {
			return false
		}
		// Let the star take one more character and retry what follows it.
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		ti, si = starT+1, starS
	}
}

// requiredLiteral is the longest literal every match must contain (lower case), for the prefilter.
func (m *strMatcher) requiredLiteral() string {
	if m.kind != mGlob {
		return strings.ToLower(m.lit)
	}
	best := ""
	for _, t := range m.toks {
		if t.kind == tokLit && len(t.lit) > len(best) {
			best = t.lit
		}
	}
	return strings.ToLower(best)
}
