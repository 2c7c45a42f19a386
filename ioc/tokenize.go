package ioc

import (
	"net/netip"
	"strings"
	"unicode/utf8"
)

// tokenKind says what a token of event text may be.
type tokenKind uint8

const (
	tokHash   tokenKind = iota // 32, 40, 64 or 128 hex digits
	tokIP                      // an IPv4 or IPv6 address, parsed into addr
	tokDomain                  // a dotted ASCII name of domain characters
	tokName                    // a candidate file base name
	tokURL                     // scheme://… up to the next space or quote
)

// want selects the token kinds a scan reports: a matcher without URLs skips looking for them.
type want uint8

const (
	wantHash want = 1 << iota
	wantIP
	wantDomain
	wantName
	wantURL
	wantAll = wantHash | wantIP | wantDomain | wantName | wantURL
)

// token is one candidate indicator in event text; text is a substring of the scanned string
// (not yet lowercased or canonical).
type token struct {
	kind tokenKind
	text string
	addr netip.Addr
}

// isWordByte reports the bytes a word is made of: what hashes, addresses, domains and most file
// names are written with. Everything else — spaces, quotes, slashes, '=', ',', '@', brackets —
// separates words, which splits "SHA256=…,MD5=…", "user@evil.com", "[2001:db8::1]:443" and
// paths into their parts. Bytes of non-ASCII runes belong to words (file names).
func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '-' || c == '_' || c == ':' || c == '%' || c == '~' || c >= 0x80
}

// scanTokens reports the candidate indicators in s of the kinds w asks for, in order of their
// position. It is a single pass with no regular expressions and allocates nothing itself.
func scanTokens(s string, w want, fn func(token)) {
	if w&wantURL != 0 {
		scanURLs(s, fn)
	}
	for i := 0; i < len(s); {
		c := s[i]
		if !isWordByte(c) {
			if c == '"' && w&wantName != 0 {
				// A quoted path may hold spaces: "C:\Program Files\Evil App\bad tool.exe".
				if end := strings.IndexByte(s[i+1:], '"'); end > 0 {
					nameWithSpaces(s[i+1:i+1+end], fn)
				}
			}
			i++
			continue
		}
		j := i + 1
		for j < len(s) && isWordByte(s[j]) {
			j++
		}
		word(s[i:j], w, fn)
		i = j
	}
	if w&wantName != 0 && len(s) <= 4096 {
		// A path whose base name has spaces or other separators is a name as a whole.
		nameWithSpaces(s, fn)
	}
}

// nameWithSpaces reports the base name of the path s when it is no single word. It looks at
// the end of s only, so it costs little on the long values that are no paths.
func nameWithSpaces(s string, fn func(token)) {
	end := len(s)
	for end > 0 && s[end-1] == ' ' {
		end--
	}
	start, sep := end, false
	for start > 0 {
		c := s[start-1]
		if c == '/' || c == '\\' {
			break
		}
		if end-start >= 255 {
			return
		}
		if !isWordByte(c) {
			sep = true
		}
		start--
	}
	for start < end && s[start] == ' ' {
		start++
	}
	if sep && start < end {
		fn(token{kind: tokName, text: s[start:end]})
	}
}

// word classifies one word: an IPv6 address (which holds colons) as a whole, else each of its
// colon-separated parts ("sha256:…", "evil.com:443", "10.0.0.1:8080").
func word(s string, w want, fn func(token)) {
	s = strings.Trim(s, ".")
	if s == "" {
		return
	}
	if strings.IndexByte(s, ':') < 0 {
		part(s, w, fn)
		return
	}
	if w&wantIP != 0 && len(s) <= 64 {
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			fn(token{kind: tokIP, text: s, addr: a.Unmap().WithZone("")})
			return
		}
	}
	for {
		k := strings.IndexByte(s, ':')
		if k < 0 {
			part(strings.Trim(s, "."), w, fn)
			return
		}
		if p := strings.Trim(s[:k], "."); p != "" {
			part(p, w, fn)
		}
		s = s[k+1:]
	}
}

// part classifies a colon-free word.
func part(s string, w want, fn func(token)) {
	if s == "" {
		return
	}
	allHex, digitsDots, ascii := true, true, true
	dots := 0
	for k := 0; k < len(s); k++ {
		c := s[k]
		switch {
		case '0' <= c && c <= '9':
		case c == '.':
			dots++
			allHex = false
		case 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F':
			digitsDots = false
		default:
			allHex, digitsDots = false, false
			if c >= 0x80 {
				ascii = false
			}
		}
	}
	if allHex {
		if n := len(s); n == 32 || n == 40 || n == 64 || n == 128 {
			if w&wantHash != 0 {
				fn(token{kind: tokHash, text: s})
			}
			return
		}
	}
	if dots > 0 && w&wantHash != 0 {
		// Samples are often stored under their hash: 275a02….exe.
		if k := strings.IndexByte(s, '.'); (k == 32 || k == 40 || k == 64 || k == 128) && isHex(s[:k]) {
			fn(token{kind: tokHash, text: s[:k]})
		}
	}
	if digitsDots {
		// Numbers and dotted numbers are addresses or nothing: 3232235777 is no 192.168.1.1,
		// and version strings are no domains.
		if dots == 3 && w&wantIP != 0 && len(s) <= 15 {
			if a, err := netip.ParseAddr(s); err == nil {
				fn(token{kind: tokIP, text: s, addr: a})
			}
		}
		return
	}
	if dots > 0 && ascii && w&wantDomain != 0 && len(s) <= 253 && validDomainToken(s) {
		fn(token{kind: tokDomain, text: s})
	}
	if w&wantName != 0 && len(s) <= 255 {
		fn(token{kind: tokName, text: s})
	}
}

// validDomainToken accepts dotted words of domain characters without empty labels whose last
// label holds a letter.
func validDomainToken(s string) bool {
	last := 0
	for k := 0; k < len(s); k++ {
		c := s[k]
		if c == '.' {
			if k == last {
				return false
			}
			last = k + 1
		} else if !isDomainByte(c) {
			return false
		}
	}
	return last < len(s) && hasLetter(s[last:])
}

// scanURLs reports each scheme://… in s, up to the next space, quote or angle bracket, without
// trailing punctuation.
func scanURLs(s string, fn func(token)) {
	for off := 0; ; {
		k := strings.Index(s[off:], "://")
		if k < 0 {
			return
		}
		k += off
		start := k
		for start > 0 && k-start < 8 && isLetter(s[start-1]) {
			start--
		}
		end := k + 3
		for end < len(s) && !isURLStop(s[end]) {
			end++
		}
		off = end
		if start == k {
			continue
		}
		u := strings.TrimRight(s[start:end], ".,;:!?)]}'")
		if len(u) > k-start+3 && len(u) <= maxValue && utf8.ValidString(u) {
			fn(token{kind: tokURL, text: u})
		}
	}
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func isURLStop(c byte) bool {
	return c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || c == '|' || c == '^' || c == 0x7f
}
