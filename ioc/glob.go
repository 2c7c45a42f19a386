package ioc

import (
	"strings"
	"unicode/utf8"
)

// globIndex holds file name patterns (with * or ?) so that a name is tested only against the
// patterns that can match it: those keyed by up to three of its first bytes when the pattern
// starts with fixed text ("invoice_*.exe"), else by up to four of its last bytes ("*.hta"), and
// the few with wildcards at both ends ("*mimikatz*"), which are tested against every name.
type globIndex struct {
	byPrefix map[string][]globRef
	bySuffix map[string][]globRef
	free     []globRef
	n        int
	// The first and last bytes of the keys: most names have neither, and are done without a
	// map look-up.
	firstBytes, lastBytes [256]bool
}

type globRef struct {
	pattern string
	refs    []ref
}

const (
	globPrefixKey = 3
	globSuffixKey = 4
)

func newGlobIndex() globIndex {
	return globIndex{byPrefix: map[string][]globRef{}, bySuffix: map[string][]globRef{}}
}

func (g *globIndex) add(pattern string, r ref) {
	g.n++
	first, last := strings.IndexAny(pattern, "*?"), strings.LastIndexAny(pattern, "*?")
	switch {
	case first > 0:
		key := pattern[:min(first, globPrefixKey)]
		g.byPrefix[key] = addGlob(g.byPrefix[key], pattern, r)
		g.firstBytes[key[0]] = true
	case last < len(pattern)-1:
		lit := pattern[last+1:]
		key := lit[len(lit)-min(len(lit), globSuffixKey):]
		g.bySuffix[key] = addGlob(g.bySuffix[key], pattern, r)
		g.lastBytes[key[len(key)-1]] = true
	default:
		g.free = addGlob(g.free, pattern, r)
	}
}

func addGlob(bucket []globRef, pattern string, r ref) []globRef {
	for i := range bucket {
		if bucket[i].pattern == pattern {
			bucket[i].refs = append(bucket[i].refs, r)
			return bucket
		}
	}
	return append(bucket, globRef{pattern: pattern, refs: []ref{r}})
}

// match calls fn with the refs of every pattern that matches name (lowercase).
func (g *globIndex) match(name string, fn func([]ref)) {
	if g.n == 0 {
		return
	}
	if name == "" {
		return
	}
	for k := 1; g.firstBytes[name[0]] && k <= globPrefixKey && k <= len(name); k++ {
		for _, gr := range g.byPrefix[name[:k]] {
			if globMatch(gr.pattern, name) {
				fn(gr.refs)
			}
		}
	}
	for k := 1; g.lastBytes[name[len(name)-1]] && k <= globSuffixKey && k <= len(name); k++ {
		for _, gr := range g.bySuffix[name[len(name)-k:]] {
			if globMatch(gr.pattern, name) {
				fn(gr.refs)
			}
		}
	}
	for _, gr := range g.free {
		if globMatch(gr.pattern, name) {
			fn(gr.refs)
		}
	}
}

// globMatch reports whether name matches pattern, where * is any run of characters and ? one
// character; nothing else is special (file names hold [ and \ in the wild). It backtracks only
// to the last *, so it runs in O(len(pattern)·len(name)) at worst.
func globMatch(pattern, name string) bool {
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(name) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starN = p, n
				p++
				continue
			case '?':
				_, w := utf8.DecodeRuneInString(name[n:])
				p++
				n += w
				continue
			default:
				if c == name[n] {
					p++
					n++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last * take one more character (a whole rune) and retry from there.
		_, w := utf8.DecodeRuneInString(name[starN:])
		starN += w
		p, n = starP+1, starN
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
