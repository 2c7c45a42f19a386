package query

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, text string
		want          bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything", true},
		{"**", "", true},
		{"?", "", false},
		{"?", "ü", true}, // one character, two bytes
		{"??", "ü", false},
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"a*", "abc", true},
		{"*c", "abc", true},
		{"*b*", "abc", true},
		{"*x*", "abc", false},
		{"a*c", "ac", true},
		{"a*c", "a", false},
		{"a*a", "a", false}, // prefix and suffix may not share the one "a"
		{"a*a", "aa", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a?c*", "xxabcxx", true},
		{"*ab*ab*", "abab", true},
		{"*ab*ab*", "aba", false},
		{"*aab", "aaab", true},
		{"*a?b*c", "a1ba2bc", true},
		{`a\*b`, "a*b", true},
		{`a\*b`, "axb", false},
		{`a\?`, "a?", true},
		{`a\?`, "ab", false},
		{`a\\*`, `a\bc`, true},
		{`a\\*`, "abc", false},
		{"10.0.0.*", "10.0.0.42", true},
		{"10.0.0.*", "10.0.1.42", false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.text); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.text, got, tt.want)
		}
	}
}

// refGlob is an independent reference: the textbook dynamic programme over runes.
func refGlob(pattern, text string) bool {
	type pc struct {
		r         rune
		star, any bool
	}
	var p []pc
	for i := 0; i < len(pattern); {
		r, size := utf8.DecodeRuneInString(pattern[i:])
		i += size
		switch r {
		case '*':
			p = append(p, pc{star: true})
		case '?':
			p = append(p, pc{any: true})
		case '\\':
			if i < len(pattern) {
				r, size = utf8.DecodeRuneInString(pattern[i:])
				i += size
			}
			p = append(p, pc{r: r})
		default:
			p = append(p, pc{r: r})
		}
	}
	t := []rune(text)
	// m[j] says whether p[:i] matches t[:j].
	m := make([]bool, len(t)+1)
	m[0] = true
	for _, c := range p {
		next := make([]bool, len(t)+1)
		for j := 0; j <= len(t); j++ {
			switch {
			case c.star:
				next[j] = m[j] || (j > 0 && next[j-1])
			case j > 0 && (c.any || c.r == t[j-1]):
				next[j] = m[j-1]
			}
		}
		m = next
	}
	return m[len(t)]
}

func TestGlobMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "ü", "*", "?", `\`}
	gen := func(n int, pattern bool) string {
		var b strings.Builder
		for range rng.IntN(n) {
			s := alphabet[rng.IntN(len(alphabet))]
			if !pattern && (s == "*" || s == "?" || s == `\`) {
				s = "a"
			}
			b.WriteString(s)
		}
		return b.String()
	}
	for range 20000 {
		p, s := gen(8, true), gen(10, false)
		if got, want := globMatch(p, s), refGlob(p, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, reference says %v", p, s, got, want)
		}
	}
}

// The matcher never revisits text: its work is bounded by len(text)·⌈segment/64⌉ plus the pattern
// length, whatever the pattern. Counting steps checks that without timing anything.
func TestGlobLinear(t *testing.T) {
	text := strings.Repeat("a", 10000)
	long := strings.Repeat("a", 100) + "b" // two words per character
	tests := []struct {
		pattern string
		want    bool
		words   int
	}{
		{"a*a*a*a*a*a*b", false, 1},
		{"*a*a*a*a*a*a*b*", false, 1},
		{"*a*a*a*a*a*a*", true, 1},
		{strings.Repeat("*a", 500) + "*b", false, 1},
		{"*a?a?a?a?a?a?a?b*", false, 1},
		{"*" + long + "*", false, 2},
		{"*" + strings.Repeat("?", 4000) + "b*", false, 63},
	}
	for _, tt := range tests {
		ok, steps := compileGlob(tt.pattern).steps(text)
		if ok != tt.want {
			t.Errorf("steps(%.30q…) = %v, want %v", tt.pattern, ok, tt.want)
		}
		if limit := len(text)*(tt.words+1) + len(tt.pattern); steps > limit {
			t.Errorf("steps(%.30q…) took %d steps, want at most %d", tt.pattern, steps, limit)
		}
	}
}
