package sigma

import "strings"

// gramMatcher finds which of many literals occur in a text, in one pass that touches little
// memory: each literal is represented by one of its substrings of at most four bytes, the one
// fewest other literals share (so, likely rare in text too), and the scan tests each position's
// 1- to 4-byte grams against small bit sets before looking any up. Case is folded on ASCII.
//
// A gram hit is confirmed by comparing the whole literal at that place, so the matcher reports
// exactly the literals that occur (ignoring ASCII case).
type gramMatcher struct {
	grams [5]map[uint32][]gramLit // by gram length (1 to 4)
	// bits has, by gram length, a bit per hashed gram (nil: no gram of that length), sized to the
	// grams' number: small sets keep to a few cache lines, which matters because the parser
	// between two events evicts most of what the previous evaluation touched.
	bits  [5][]uint64
	shift [5]uint32 // the hash is the top 32-shift bits of w*0x9E3779B1
}

type gramLit struct {
	id  int32
	off int // where the gram starts in the literal
	lit string
}

var foldASCII = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if i >= 'A' && i <= 'Z' {
			t[i] = byte(i) + 'a' - 'A'
		}
	}
	return t
}()

func packGram(s string) uint32 {
	var g uint32
	for i := 0; i < len(s); i++ {
		g = g<<8 | uint32(foldASCII[s[i]])
	}
	return g
}

func newGramMatcher(lits []string) *gramMatcher {
	m := &gramMatcher{}
	// How many literals contain each 4-byte gram: the rarest one of a literal represents it.
	count := map[string]int{}
	for _, l := range lits {
		seen := map[string]bool{}
		for i := 0; i+4 <= len(l); i++ {
			if g := l[i : i+4]; !seen[g] {
				seen[g] = true
				count[g]++
			}
		}
	}
	type chosen struct {
		g   string
		off int
	}
	picks := make([]chosen, len(lits))
	perLen := [5]int{}
	for id, l := range lits {
		var g string
		off := 0
		switch {
		case len(l) == 0:
			continue // not given by the compiler (minAtom)
		case len(l) <= 4:
			g = l
		default:
			best := -1
			for i := 0; i+4 <= len(l); i++ {
				// Later grams win ties: endings (\tool.exe) tell more than beginnings (c:\windows).
				if c := count[l[i:i+4]]; best < 0 || c <= best {
					best, g, off = c, l[i:i+4], i
				}
			}
		}
		picks[id] = chosen{g, off}
		perLen[len(g)]++
	}
	for n := 1; n <= 4; n++ {
		if perLen[n] == 0 {
			continue
		}
		// About 32 bits per gram: one position in 30 or so needs a map lookup at worst.
		logBits := uint32(9)
		for logBits < 16 && 1<<logBits < 32*perLen[n] {
			logBits++
		}
		m.grams[n] = map[uint32][]gramLit{}
		m.bits[n] = make([]uint64, (1<<logBits)/64)
		m.shift[n] = 32 - logBits
	}
	for id, pk := range picks {
		if pk.g == "" {
			continue
		}
		n := len(pk.g)
		p := packGram(pk.g)
		m.grams[n][p] = append(m.grams[n][p], gramLit{id: int32(id), off: pk.off, lit: lits[id]})
		h := (p * 0x9E3779B1) >> m.shift[n]
		m.bits[n][h>>6] |= 1 << (h & 63)
	}
	return m
}

// mark sets, in cand, the bits of the rules (owner: literal id → rule indexes) whose literals
// occur in text. Text with non-ASCII bytes is lower-cased first, as evaluation does, since some non-ASCII
// letters lower-case to ASCII ones.
func (m *gramMatcher) mark(text string, owner [][]int32, cand []uint64) {
	for i := 0; i < len(text); i++ {
		if text[i] >= 0x80 {
			text = strings.ToLower(text)
			break
		}
	}
	var g uint32
	b1, b2, b3, b4 := m.bits[1], m.bits[2], m.bits[3], m.bits[4]
	s1, s2, s3, s4 := m.shift[1], m.shift[2], m.shift[3], m.shift[4]
	for i := 0; i < len(text); i++ {
		g = g<<8 | uint32(foldASCII[text[i]])
		if b1 != nil {
			w := g & 0xff
			if h := (w * 0x9E3779B1) >> s1; b1[h>>6]&(1<<(h&63)) != 0 {
				m.confirm(text, i, 1, w, owner, cand)
			}
		}
		if b4 != nil && i >= 3 {
			if h := (g * 0x9E3779B1) >> s4; b4[h>>6]&(1<<(h&63)) != 0 {
				m.confirm(text, i, 4, g, owner, cand)
			}
		}
		if b3 != nil && i >= 2 {
			w := g & 0xffffff
			if h := (w * 0x9E3779B1) >> s3; b3[h>>6]&(1<<(h&63)) != 0 {
				m.confirm(text, i, 3, w, owner, cand)
			}
		}
		if b2 != nil && i >= 1 {
			w := g & 0xffff
			if h := (w * 0x9E3779B1) >> s2; b2[h>>6]&(1<<(h&63)) != 0 {
				m.confirm(text, i, 2, w, owner, cand)
			}
		}
	}
}

// confirm reports the literals of the gram w of length n ending at text[i] that occur there.
func (m *gramMatcher) confirm(text string, i, n int, w uint32, owner [][]int32, cand []uint64) {
	for _, gl := range m.grams[n][w] {
		start := i + 1 - n - gl.off
		if start >= 0 && start+len(gl.lit) <= len(text) && foldEqual(text[start:start+len(gl.lit)], gl.lit) {
			for _, r := range owner[gl.id] {
				cand[r>>6] |= 1 << (r & 63)
			}
		}
	}
}

// foldEqual compares s with lit (lower case) ignoring ASCII case.
func foldEqual(s, lit string) bool {
	for i := 0; i < len(lit); i++ {
		if foldASCII[s[i]] != lit[i] {
			return false
		}
	}
	return true
}
