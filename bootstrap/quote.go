package bootstrap

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
)

// shQuote makes s one POSIX shell word: single quotes, in which nothing is special; a quote inside
// ends the quoting, is written as \' and opens it again. NUL cannot be in a shell word and is refused.
func shQuote(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("value %q contains NUL", s)
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

// psQuote makes s a PowerShell verbatim string: single quotes, in which nothing is expanded, with
// each quote doubled. PowerShell also ends single-quoted strings at the typographic quotes
// U+2018–U+201B, so those are doubled too.
func psQuote(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("value %q contains NUL", s)
	}
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		b.WriteRune(r)
		switch r {
		case '\'', '\u2018', '\u2019', '\u201a', '\u201b':
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String(), nil
}

// simWord is s as one word of a `# quarry-sim:` header line, which splits at blanks and groups with
// quotes but has no escapes: anything that would change the split is refused.
func simWord(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, " \t\r\n'\"") {
		return "", fmt.Errorf("value %q cannot be a quarry-sim word", s)
	}
	return s, nil
}

// commentText is s on a comment line of either language: one line.
func commentText(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", fmt.Errorf("value %q is not one line", s)
	}
	return s, nil
}

// thumbprint is a certificate's SHA-1 as Windows shows it (X509Certificate2.Thumbprint).
func thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}
