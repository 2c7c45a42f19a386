package sigma

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fuzzEvent is what fuzzed rules run on: a Sysmon process creation with the usual fields.
var fuzzEvent = sysmon1(map[string]any{"Image": `C:\Windows\System32\cmd.exe`, "CommandLine": `cmd.exe /c whoami -all`,
	"ParentImage": `C:\Windows\explorer.exe`, "User": `CORP\bob`, "Hashes": "SHA256=00FF", "Data": "a", "Data_1": "b",
	"List": []any{"x", int64(3)}})

// FuzzParseRule feeds rule files (seeded from testdata/fuzz and the builtin rules) to the parser,
// the compiler and the matcher: none may panic, and Match must agree with MatchNaive.
func FuzzParseRule(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "*.yml"))
	builtin, _ := filepath.Glob(filepath.Join("rules", "*.yml"))
	for _, p := range append(seeds, builtin...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(ruleYAML("  sel:\n    CommandLine|windash|contains|all:\n      - ' -all'\n      - 'who*'\n  condition: sel")))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRule(data)
		if err != nil {
			return
		}
		rs, _ := Compile([]*Rule{r})
		if a, b := len(rs.Match(fuzzEvent)), len(rs.MatchNaive(fuzzEvent)); a != b {
			t.Fatalf("Match gives %d detections, MatchNaive %d", a, b)
		}
	})
}

// FuzzParseCondition parses conditions; what parses must print and parse back to the same tree.
func FuzzParseCondition(f *testing.F) {
	for _, s := range []string{"selection", "selection and not 1 of filter_main_*", "all of selection_* or (a and not b)",
		"1 of them", "all of them", "not not a", "2 of sel*", "a | count() by b > 3", "((a))", "a or b and c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCondition(s)
		if err != nil {
			return
		}
		printed := c.String()
		c2, err := parseCondition(printed)
		if err != nil {
			t.Fatalf("parseCondition(%q) = %q, which does not parse: %v", s, printed, err)
		}
		if c2.String() != printed {
			t.Fatalf("round trip: %q → %q → %q", s, printed, c2.String())
		}
	})
}

// FuzzGlob checks the wildcard matcher against the regular expression the pattern stands for.
func FuzzGlob(f *testing.F) {
	f.Add(`*vssadmin*delete*`, "VSSADMIN delete shadows")
	f.Add(`a?c`, "abc")
	f.Add(`a\*b*`, "a*bcd")
	f.Add(`*a*a*a*b`, "aaaaaaaaaaaaaaac")
	f.Fuzz(func(t *testing.T, pat, s string) {
		if len(pat) > 64 || len(s) > 256 {
			return
		}
		toks := splitWildcards(pat)
		var re strings.Builder
		re.WriteString(`(?s)^`)
		for _, tk := range toks {
			switch tk.kind {
			case tokLit:
				re.WriteString(regexp.QuoteMeta(strings.ToLower(tk.lit)))
			case tokStar:
				re.WriteString(`.*`)
			case tokOne:
				re.WriteString(`.`)
			}
		}
		re.WriteString(`$`)
		want := regexp.MustCompile(re.String()).MatchString(strings.ToLower(s))
		m := newStrMatcher(toks, mEqual, false)
		if got := m.match(strings.ToLower(s)); got != want {
			t.Fatalf("pattern %q on %q: got %v, regexp %s says %v", pat, s, got, re.String(), want)
		}
	})
}
