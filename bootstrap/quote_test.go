//go:build unix

package bootstrap

import (
	"os/exec"
	"strings"
	"testing"
)

// hostile are values that break naive quoting in a shell or in PowerShell.
var hostile = []string{
	"",
	"plain",
	"it's",
	"''",
	`a\'b`,
	`"double" $HOME ${x} $(id) ` + "`id` !! ; | & < > * ? [a] ~",
	"tab\tand\nnewline\r\n",
	"trailing backslash \\",
	"dollar $ at end $",
	"smart ‘quotes’ ‚low‛ and ʼ",
	"$(touch /tmp/quarry-pwned)",
	"'; touch /tmp/quarry-pwned; '",
	"unicode ✓ 日本",
}

// TestShQuote runs each quoted value through a real shell and expects it back byte for byte.
func TestShQuote(t *testing.T) {
	for _, sh := range []string{"sh", "bash"} {
		if _, err := exec.LookPath(sh); err != nil {
			t.Fatalf("%s not found: %v", sh, err)
		}
		for _, v := range hostile {
			q, err := shQuote(v)
			if err != nil {
				t.Fatalf("shQuote(%q): %v", v, err)
			}
			out, err := exec.Command(sh, "-c", "printf '%s' "+q).Output()
			if err != nil || string(out) != v {
				t.Errorf("%s: printf %s = %q, %v; want %q", sh, q, out, err, v)
			}
		}
	}
	if _, err := shQuote("a\x00b"); err == nil {
		t.Error("shQuote accepted NUL")
	}
}

// psUnquote reads a PowerShell single-quoted string as the PowerShell tokenizer does: any of the five
// single-quote characters ends it unless another one follows, and a pair stands for its second one.
func psUnquote(s string) (string, bool) {
	isQ := func(r rune) bool { return strings.ContainsRune("'\u2018\u2019\u201a\u201b", r) }
	rs := []rune(s)
	if len(rs) < 2 || rs[0] != '\'' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(rs); i++ {
		if !isQ(rs[i]) {
			b.WriteRune(rs[i])
			continue
		}
		if i+1 < len(rs) && isQ(rs[i+1]) {
			b.WriteRune(rs[i+1])
			i++
			continue
		}
		return b.String(), i == len(rs)-1 // the string must end here
	}
	return "", false
}

func TestPSQuote(t *testing.T) {
	for _, v := range hostile {
		q, err := psQuote(v)
		if err != nil {
			t.Fatalf("psQuote(%q): %v", v, err)
		}
		if got, ok := psUnquote(q); !ok || got != v {
			t.Errorf("psQuote(%q) = %s, which PowerShell reads as %q (whole string: %v)", v, q, got, ok)
		}
	}
	if _, err := psQuote("a\x00b"); err == nil {
		t.Error("psQuote accepted NUL")
	}
}

func TestSimWordAndComment(t *testing.T) {
	for _, tc := range []struct {
		in         string
		sim, cmtOK bool
	}{
		{"https://q.example/x", true, true},
		{"", false, true},
		{"a b", false, true},
		{"a'b", false, true},
		{`a"b`, false, true},
		{"a\nb", false, false},
		{"a\rb", false, false},
	} {
		_, err := simWord(tc.in)
		if (err == nil) != tc.sim {
			t.Errorf("simWord(%q) error = %v, want ok=%v", tc.in, err, tc.sim)
		}
		_, err = commentText(tc.in)
		if (err == nil) != tc.cmtOK {
			t.Errorf("commentText(%q) error = %v, want ok=%v", tc.in, err, tc.cmtOK)
		}
	}
}
