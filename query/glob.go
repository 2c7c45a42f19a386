package query

import "unicode/utf8"

// Glob matching without backtracking.
//
// A pattern is split at its stars into segments of literal characters and "?". The text matches
// when the first segment matches at the start, the last at the end, and the middle ones occur in
// order, without overlapping, in between. Taking the earliest occurrence of each middle segment is
// always right: any later choice leaves less room for the rest. So no position is ever revisited
// after a segment is placed, and a failed search ends the match. Each search is a bit-parallel
// Shift-And scan, which handles "?" and does ⌈len(segment)/64⌉ word operations per text character.
// The whole match therefore costs O(len(text)·⌈s/64⌉ + len(pattern)), s being the longest segment;
// with MaxLength that is at most 64 word operations per text character, never exponential.

type globChar struct {
	r   rune
	any bool // "?"
}

// glob is a compiled pattern. Compiling once matters: free text tries one pattern on every word
// of an event, and recompiling per word would cost the pattern's length each time.
type glob struct {
	segs []segment // separated by stars; len(segs) == 1 means no star
	min  int       // characters the text needs at least
}

type segment struct {
	chars []globChar
	// Shift-And tables: bit j of masks[r] (or of any) is set when chars[j] accepts r (any rune).
	any   []uint64
	masks map[rune][]uint64
}

// compileGlob compiles a pattern in which \ escapes the next character.
func compileGlob(pattern string) *glob {
	var chars [][]globChar
	chars = append(chars, nil)
	for i := 0; i < len(pattern); {
		r, size := utf8.DecodeRuneInString(pattern[i:])
		i += size
		switch r {
		case '*':
			chars = append(chars, nil)
			continue
		case '\\':
			if i < len(pattern) {
				r, size = utf8.DecodeRuneInString(pattern[i:])
				i += size
			}
		case '?':
			chars[len(chars)-1] = append(chars[len(chars)-1], globChar{any: true})
			continue
		}
		chars[len(chars)-1] = append(chars[len(chars)-1], globChar{r: r})
	}
	g := &glob{}
	for i, c := range chars {
		seg := segment{chars: c}
		if i > 0 && i < len(chars)-1 && len(c) > 0 {
			// Only middle segments are searched for.
			words := (len(c) + 63) / 64
			seg.any = make([]uint64, words)
			seg.masks = map[rune][]uint64{}
			for j, gc := range c {
				if gc.any {
					seg.any[j/64] |= 1 << (j % 64)
					continue
				}
				m := seg.masks[gc.r]
				if m == nil {
					m = make([]uint64, words)
					seg.masks[gc.r] = m
				}
				m[j/64] |= 1 << (j % 64)
			}
		}
		g.segs = append(g.segs, seg)
		g.min += len(c)
	}
	return g
}

// globMatch reports whether the whole of text matches pattern. Case is compared exactly: callers
// fold both sides first.
func globMatch(pattern, text string) bool {
	ok, _ := compileGlob(pattern).steps(text)
	return ok
}

func (g *glob) match(text string) bool {
	ok, _ := g.steps(text)
	return ok
}

// steps is match that also counts its work (characters compared plus words shifted), so tests can
// check the bound above without timing anything.
func (g *glob) steps(text string) (bool, int) {
	if utf8.RuneCountInString(text) < g.min {
		return false, 0
	}
	t := []rune(text)
	steps := len(t)
	if len(g.segs) == 1 {
		return len(t) == g.min && segMatchAt(g.segs[0].chars, t), steps
	}
	first, last := g.segs[0].chars, g.segs[len(g.segs)-1].chars
	steps += len(first) + len(last)
	if !segMatchAt(first, t) || !segMatchAt(last, t[len(t)-len(last):]) {
		return false, steps
	}
	window := t[len(first) : len(t)-len(last)]
	for i := 1; i < len(g.segs)-1; i++ {
		if len(g.segs[i].chars) == 0 {
			continue // "**"
		}
		end, n := g.segs[i].index(window)
		steps += n
		if end < 0 {
			return false, steps
		}
		window = window[end:]
	}
	return true, steps
}

// segMatchAt reports whether seg matches at the start of t (t is at least as long).
func segMatchAt(seg []globChar, t []rune) bool {
	for i, c := range seg {
		if !c.any && c.r != t[i] {
			return false
		}
	}
	return true
}

// index returns the end of the earliest occurrence of s in t, or -1, and the words of work it did.
// It is Shift-And: bit j of state is set when chars[:j+1] ends at the current character.
func (s *segment) index(t []rune) (int, int) {
	words := len(s.any)
	state := make([]uint64, words)
	lastWord, lastBit := (len(s.chars)-1)/64, uint64(1)<<((len(s.chars)-1)%64)
	steps := 0
	for i, r := range t {
		m := s.masks[r]
		carry := uint64(1) // a match may start at every character
		for w := range state {
			next := state[w] >> 63
			allowed := s.any[w]
			if m != nil {
				allowed |= m[w]
			}
			state[w] = (state[w]<<1 | carry) & allowed
			carry = next
		}
		steps += words
		if state[lastWord]&lastBit != 0 {
			return i + 1, steps
		}
	}
	return -1, steps
}
