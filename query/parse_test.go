package query

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry"
)

// Shorthands for expected trees.
func and(c ...Node) Node { return &And{Children: c} }
func or(c ...Node) Node  { return &Or{Children: c} }
func not(c Node) Node    { return &Not{Child: c} }
func term(f, v string) Node {
	return &Term{Field: f, Value: v}
}
func phrase(f, v string) Node { return &Term{Field: f, Value: v, Phrase: true} }
func wild(f, v string) Node   { return &Term{Field: f, Value: v, Wildcard: true} }
func rng(f, lo, hi string, incLo, incHi bool) Node {
	return &Range{Field: f, Lo: lo, Hi: hi, IncLo: incLo, IncHi: incHi}
}

var parseTests = []struct {
	name  string
	in    string
	want  Node
	canon string // canonical String(); "" means the same as in
}{
	{"Word", "failed", term("", "failed"), ""},
	{"FieldValue", "EventID:4625", term("EventID", "4625"), ""},
	{"DottedField", "fields.CommandLine:whoami", term("fields.CommandLine", "whoami"), ""},
	{"UnderscoreField", "process.name:cmd.exe src_ip:1.2.3.4",
		and(term("process.name", "cmd.exe"), term("src_ip", "1.2.3.4")), "process.name:cmd.exe AND src_ip:1.2.3.4"},
	{"Phrase", `"failed password"`, phrase("", "failed password"), ""},
	{"FieldPhrase", `user:"svc backup"`, phrase("user", "svc backup"), ""},
	{"PhraseEscapes", `"say \"hi\" \\ \x"`, phrase("", `say "hi" \ x`), `"say \"hi\" \\ x"`},
	{"PhraseWildcardIsLiteral", `"a*b?"`, phrase("", "a*b?"), ""},
	{"ImplicitAnd", "a b  c", and(term("", "a"), term("", "b"), term("", "c")), "a AND b AND c"},
	{"ExplicitAnd", "a AND b", and(term("", "a"), term("", "b")), ""},
	{"Or", "a OR b OR c", or(term("", "a"), term("", "b"), term("", "c")), ""},
	{"AndBindsTighter", "a b OR c", or(and(term("", "a"), term("", "b")), term("", "c")), "a AND b OR c"},
	{"OrInAndNeedsParens", "a (b OR c)", and(term("", "a"), or(term("", "b"), term("", "c"))), "a AND (b OR c)"},
	{"NestedAndKeepsShape", "(a b) c", and(and(term("", "a"), term("", "b")), term("", "c")), "(a AND b) AND c"},
	{"RedundantParens", "((a))", term("", "a"), "a"},
	{"Not", "NOT a", not(term("", "a")), ""},
	{"NotBindsTighter", "NOT a b", and(not(term("", "a")), term("", "b")), "NOT a AND b"},
	{"NotGroup", "NOT (a OR b)", not(or(term("", "a"), term("", "b"))), ""},
	{"NotNoSpace", "NOT(a)", not(term("", "a")), "NOT a"},
	{"Minus", "-user:root", not(term("user", "root")), "NOT user:root"},
	{"MinusGroup", "-(a b)", not(and(term("", "a"), term("", "b"))), "NOT (a AND b)"},
	{"MinusAfterTerm", "a -b", and(term("", "a"), not(term("", "b"))), "a AND NOT b"},
	{"OrMinus", "a OR -b:[1 TO 2]", or(term("", "a"), not(rng("b", "1", "2", true, true))), "a OR NOT b:[1 TO 2]"},
	{"NotOrPrecedence", "NOT a OR b", or(not(term("", "a")), term("", "b")), ""},
	{"MinusPhrase", `-"x y"`, not(phrase("", "x y")), `NOT "x y"`},
	{"SymbolOperators", "a && b || c", or(and(term("", "a"), term("", "b")), term("", "c")), "a AND b OR c"},
	{"SymbolsInWords", "a&&b ||c", and(term("", "a&&b"), term("", "||c")), "a&&b AND ||c"},
	{"DoubleNot", "NOT -a", not(not(term("", "a"))), "NOT NOT a"},
	{"MinusInsideWord", "foo-bar", term("", "foo-bar"), ""},
	{"MinusAfterColon", "delta:-5", term("delta", "-5"), ""},
	{"LowercaseKeywordsAreWords", "a and b or not c",
		and(term("", "a"), term("", "and"), term("", "b"), term("", "or"), term("", "not"), term("", "c")),
		"a AND and AND b AND or AND not AND c"},
	{"EscapedKeyword", `\AND`, term("", "AND"), ""},
	{"KeywordAsValue", "user:AND", term("user", "AND"), `user:\AND`},
	{"FieldNamedLikeKeyword", "NOT:x", term("NOT", "x"), `\NOT:x`},
	{"Issue", `EventID:4625 AND src_ip:10.0.0.* NOT user:"svc backup"`,
		and(term("EventID", "4625"), wild("src_ip", "10.0.0.*"), not(phrase("user", "svc backup"))),
		`EventID:4625 AND src_ip:10.0.0.* AND NOT user:"svc backup"`},
	{"SourceAndGroup", "source:auth.log (failed OR invalid)",
		and(term("source", "auth.log"), or(term("", "failed"), term("", "invalid"))),
		"source:auth.log AND (failed OR invalid)"},
	{"Wildcards", "user:adm?n*", wild("user", "adm?n*"), ""},
	{"EscapedWildcard", `a\*b`, term("", "a*b"), ""},
	{"MixedWildcard", `a\*b*`, wild("", `a\*b*`), ""},
	{"EscapedBackslashInWildcard", `a\\*`, wild("", `a\\*`), ""},
	{"EscapedSpace", `path:C:\\Program\ Files\\*`, wild("path", `C:\\Program Files\\*`), `path:C:\\Program\ Files\\*`},
	{"Exists", "user:*", wild("user", "*"), ""},
	{"ColonInFieldValue", "timestamp:2024-01-01T10:00:00Z", term("timestamp", "2024-01-01T10:00:00Z"), ""},
	{"IPv6", "ip:fe80::1", term("ip", "fe80::1"), ""},
	{"EscapedColonFreeText", `a\:b`, term("", "a:b"), ""},
	{"RangeInclusive", "timestamp:[2024-01-01 TO 2024-01-31]", rng("timestamp", "2024-01-01", "2024-01-31", true, true), ""},
	{"RangeExclusive", "EventID:{4624 TO 4634}", rng("EventID", "4624", "4634", false, false), ""},
	{"RangeMixed", "n:[1 TO 5}", rng("n", "1", "5", true, false), ""},
	{"RangeOpen", "n:[* TO 5]", rng("n", "", "5", true, true), ""},
	{"RangeOpenHi", "n:{5 TO *}", rng("n", "5", "", false, false), ""},
	{"RangeSpaces", "n:[ 1  TO  5 ]", rng("n", "1", "5", true, true), "n:[1 TO 5]"},
	{"RangeTimes", "timestamp:[2024-01-01T00:00:00Z TO 2024-01-02T10:30:00+02:00]",
		rng("timestamp", "2024-01-01T00:00:00Z", "2024-01-02T10:30:00+02:00", true, true), ""},
	{"RangeQuotedBound", `user:["a b" TO "TO"]`, rng("user", "a b", "TO", true, true), `user:[a\ b TO \TO]`},
	{"RangeLiteralStar", `x:[\* TO z]`, rng("x", "*", "z", true, true), ""},
	{"FieldGroup", "user:(root OR admin)", or(term("user", "root"), term("user", "admin")), ""},
	{"FieldGroupMixed", `user:(root "svc backup" NOT adm* [a TO b])`,
		and(term("user", "root"), phrase("user", "svc backup"), not(wild("user", "adm*")), rng("user", "a", "b", true, true)),
		`user:(root AND "svc backup" AND NOT adm* AND [a TO b])`},
	{"FieldGroupColonLiteral", "ip:(fe80::1 OR ::1)", or(term("ip", "fe80::1"), term("ip", "::1")), ""},
	{"FieldGroupMinus", "user:(-root)", not(term("user", "root")), "NOT user:root"},
	{"SameFieldRegroups", "user:root OR user:admin", or(term("user", "root"), term("user", "admin")), "user:(root OR admin)"},
	{"NestedGroups", "(a:1 OR a:2) (b:1 OR b:2)",
		and(or(term("a", "1"), term("a", "2")), or(term("b", "1"), term("b", "2"))), "a:(1 OR 2) AND b:(1 OR 2)"},
	{"Unicode", "user:jürgen ö", and(term("user", "jürgen"), term("", "ö")), "user:jürgen AND ö"},
	{"TimestampGroup", "timestamp:(2024-01-01 OR 2024-01-0*)",
		or(term("timestamp", "2024-01-01"), wild("timestamp", "2024-01-0*")), ""},
	{"TOOutsideRange", "TO", term("", "TO"), ""},
	{"Whitespace", "\t a \n", term("", "a"), "a"},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q) error %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			if s := got.String(); s != canon {
				t.Errorf("Parse(%q).String() = %q, want %q", tt.in, s, canon)
			}
			checkRoundTrip(t, got)
		})
	}
}

// checkRoundTrip checks that n's canonical form parses back to n and is a fixed point. The
// canonical form can be longer and one level deeper than the input, so it is parsed with room.
func checkRoundTrip(t *testing.T, n Node) {
	t.Helper()
	s := n.String()
	back, err := Parse(s)
	if err != nil {
		// Only the limits may refuse a canonical form, and only one that grew.
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(se.Msg, "longer than") && !strings.Contains(se.Msg, "nests deeper") {
			t.Fatalf("Parse(%q) (canonical of %#v) error %v", s, n, err)
		}
		if back, err = parse(s, 8*MaxLength, MaxDepth+2); err != nil {
			t.Fatalf("Parse(%q) (canonical of %#v), without limits, error %v", s, n, err)
		}
	}
	if !reflect.DeepEqual(back, n) {
		t.Fatalf("Parse(%q) = %#v, want %#v", s, back, n)
	}
	if s2 := back.String(); s2 != s {
		t.Fatalf("canonical form not stable: %q then %q", s, s2)
	}
}

var parseErrorTests = []struct {
	name   string
	in     string
	offset int
	column int
	msg    string // the whole message
}{
	{"Empty", "", 0, 1, "empty query"},
	{"Blank", "   ", 3, 4, "empty query"},
	{"UnclosedParen", "user:x AND (a OR b", 18, 19, `expected ")" to close the "(" at column 12, found the end of the query`},
	{"UnclosedParenIssue", `src:1 AND (a OR b c:"x y"`, 25, 26, `expected ")" to close the "(" at column 11, found the end of the query`},
	{"UnclosedFieldGroup", "user:(a b", 9, 10, `expected ")" to close the "(" at column 6, found the end of the query`},
	{"StrayClose", "a b)", 3, 4, `unexpected ")" without a matching "("`},
	{"EmptyGroup", "()", 1, 2, `expected a term, found ")"`},
	{"DanglingAnd", "a AND", 5, 6, `expected a term after "AND", found the end of the query`},
	{"DanglingOr", "a OR ", 5, 6, `expected a term after "OR", found the end of the query`},
	{"DanglingNot", "NOT", 3, 4, `expected a term after "NOT", found the end of the query`},
	{"AndAnd", "a AND AND b", 6, 7, `expected a term after "AND", found "AND"`},
	{"DanglingSymbolAnd", "a && (b ||)", 10, 11, `expected a term after "||", found ")"`},
	{"LeadingOr", "OR a", 0, 1, `expected a term, found "OR"`},
	{"LoneMinus", "a - b", 3, 4, `expected a term right after "-", found a space`},
	{"MissingValue", "user: root", 5, 6, `expected a value after "user:", found a space`},
	{"MissingValueEnd", "user:", 5, 6, `expected a value after "user:", found the end of the query`},
	{"NoFieldName", ":x", 0, 1, `expected a field name before ":"`},
	{"WildcardField", "us*r:x", 0, 1, "a field name cannot contain wildcards (escape * and ? with a backslash)"},
	{"UnterminatedPhrase", `a "bc`, 5, 6, `expected '"' to close the phrase at column 3, found the end of the query`},
	{"UnterminatedPhraseEscape", `"bc\`, 4, 5, `expected '"' to close the phrase at column 1, found the end of the query`},
	{"EmptyPhrase", `a:""`, 2, 3, "empty phrase"},
	{"TrailingBackslash", `ab\`, 2, 3, `expected a character after "\"`},
	{"RangeWithoutField", "[1 TO 2]", 0, 1, "a range needs a field, as in timestamp:[2024-01-01 TO 2024-01-31]"},
	{"RangeMissingTO", "n:[1 2]", 5, 6, `expected "TO" after the lower bound of the range at column 3, found "2"`},
	{"RangeLowercaseTo", "n:[1 to 2]", 5, 6, `expected "TO" after the lower bound of the range at column 3, found "to"`},
	{"RangeUnclosed", "n:[1 TO 2", 9, 10, `expected "]" or "}" to close the range at column 3, found the end of the query`},
	{"RangeMissingLo", "n:[ TO 2]", 4, 5, `expected a range bound (a value, or * for an open end), found "TO"`},
	{"RangeMissingHi", "n:[1 TO ]", 8, 9, `expected a range bound (a value, or * for an open end), found "]"`},
	{"RangeWildcardBound", "n:[a* TO b]", 3, 4, "wildcards are not allowed in range bounds; * alone is an open end"},
	{"BadTimestampBound", "timestamp:[2024-01-01 TO yesterday]", 25, 26,
		`expected a date (2024-01-31) or an RFC 3339 time (2024-01-31T12:00:00Z), found "yesterday"`},
	{"BadTimestampMonth", "timestamp:[2024-13-01 TO *]", 11, 12,
		`expected a date (2024-01-31) or an RFC 3339 time (2024-01-31T12:00:00Z), found "2024-13-01"`},
	{"BadTimestampTerm", "a timestamp:2024", 12, 13,
		`expected a date (2024-01-31) or an RFC 3339 time (2024-01-31T12:00:00Z), found "2024"`},
	{"BadTimestampGroup", `TimeStamp:(2024-01-01 OR "last week")`, 25, 26,
		`expected a date (2024-01-31) or an RFC 3339 time (2024-01-31T12:00:00Z), found "last week"`},
	{"StrayBracket", "a ]", 2, 3, `expected a term, found "]"`},
	// Columns count characters, offsets bytes.
	{"ColumnAfterUnicode", "ü AND", 6, 6, `expected a term after "AND", found the end of the query`},
	{"InvalidUTF8", "a \xff", 2, 3, "the query is not valid UTF-8"},
	{"TooLong", strings.Repeat("a ", MaxLength/2) + "b", MaxLength, MaxLength + 1, "the query is longer than 4096 bytes"},
	{"TooDeep", strings.Repeat("(", MaxDepth+1) + "a" + strings.Repeat(")", MaxDepth+1), MaxDepth, MaxDepth + 1,
		"the query nests deeper than 64 levels"},
	{"TooDeepFieldGroup", "a:" + strings.Repeat("(", MaxDepth+1), 2 + MaxDepth, 3 + MaxDepth,
		"the query nests deeper than 64 levels"},
	{"TooManyNots", strings.Repeat("NOT ", MaxDepth+1) + "a", 4 * MaxDepth, 4*MaxDepth + 1,
		"the query nests deeper than 64 levels"},
	{"TooManyMinus", strings.Repeat("-", MaxDepth+1) + "a", MaxDepth, MaxDepth + 1,
		"the query nests deeper than 64 levels"},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse(tt.in)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) = %v, %v; want a *SyntaxError", tt.in, n, err)
			}
			if se.Offset != tt.offset || se.Column != tt.column || se.Msg != tt.msg {
				t.Errorf("Parse(%q) error = {%d, %d, %q}, want {%d, %d, %q}",
					tt.in, se.Offset, se.Column, se.Msg, tt.offset, tt.column, tt.msg)
			}
		})
	}
}

func TestParseDepthLimitIsInclusive(t *testing.T) {
	in := strings.Repeat("(", MaxDepth) + "a" + strings.Repeat(")", MaxDepth)
	if _, err := Parse(in); err != nil {
		t.Fatalf("Parse(%d nested parentheses) error %v, want ok", MaxDepth, err)
	}
	if _, err := Parse(strings.Repeat("NOT ", MaxDepth) + "a"); err != nil {
		t.Fatalf("Parse(%d NOTs) error %v, want ok", MaxDepth, err)
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	_, err := Parse(`src:1 AND (a OR b c:"x y"`)
	want := `syntax error at column 26: expected ")" to close the "(" at column 11, found the end of the query`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error = %v, want %s", err, want)
	}
	if code := quarry.ErrorCode(err); code != quarry.EINVALID {
		t.Errorf("quarry.ErrorCode = %q, want %q", code, quarry.EINVALID)
	}
	if msg := quarry.ErrorMessage(err); msg != want {
		t.Errorf("quarry.ErrorMessage = %q, want %q", msg, want)
	}
}

// Trees built by hand (not by the parser) print in a form that parses back to them too.
func TestStringRoundTripBuilt(t *testing.T) {
	for _, n := range []Node{
		term("", "-leading"),
		term("", "a b"),
		term("", `(x)[y]{z}"q"\`),
		term("", "*?"),
		term("", "a:b"),
		term("f:g", "v"),
		term("-f", "v"),
		term("f", "-v"),
		term("f", "a b:c"),
		term("f", "OR"),
		term("", "&&"),
		term("f", "||"),
		term("NOT", "x"),
		phrase("", `he said "\"`),
		phrase("f", "TO"),
		wild("", `a\*b\\c?*`),
		wild("f", `sp ace*`),
		rng("f", "TO", "*", false, true),
		rng("f", "a b", "-1", true, false),
		rng("f", "", "", true, true),
		and(or(term("a", "1"), term("b", "2")), not(and(term("", "x"), term("", "y")))),
		or(and(term("a", "1"), term("a", "2")), term("a", "3")),
		and(and(term("a", "1"), term("a", "2")), term("a", "3")),
		or(or(term("", "a"), term("", "b")), term("", "c")),
		not(or(term("a", "1"), term("a", "-2"))),
		and(term("a", "x"), or(term("a", "y"), rng("a", "1", "2", true, true))),
		or(and(term("a", "x"), term("b", "y")), and(term("a", "x"), term("a", "y"))),
	} {
		checkRoundTrip(t, n)
	}
}

func TestWalk(t *testing.T) {
	n, err := Parse(`a:1 (b:2 OR NOT c:[1 TO 2]) "d"`)
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	Walk(n, func(n Node) bool {
		switch n := n.(type) {
		case *Term:
			fields = append(fields, "term:"+n.Field)
		case *Range:
			fields = append(fields, "range:"+n.Field)
		case *Not:
			return false // skip what is negated
		}
		return true
	})
	want := []string{"term:a", "term:b", "term:"}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("Walk visited %q, want %q", fields, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.in)
	}
	for _, tt := range parseErrorTests {
		if len(tt.in) < 200 {
			f.Add(tt.in)
		}
	}
	f.Add("a:" + strings.Repeat("(", 200))
	f.Add(strings.Repeat("a*", 100) + "b")
	ev := sampleEvent()
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T %v, want *SyntaxError", s, err, err)
			}
			if se.Offset < 0 || se.Offset > len(s) || se.Column < 1 || se.Column > se.Offset+1 || se.Msg == "" {
				t.Fatalf("Parse(%q) error position {%d, %d, %q} out of range", s, se.Offset, se.Column, se.Msg)
			}
			return
		}
		checkRoundTrip(t, n)
		Match(n, ev) // must not panic
	})
}
