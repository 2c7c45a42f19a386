package sigma

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
)

// sysmon1 is a Sysmon process creation event as parse/evtx.go emits it.
func sysmon1(fields map[string]any) *quarry.Event {
	f := map[string]any{"EventID": int64(1), "Channel": "Microsoft-Windows-Sysmon/Operational",
		"Provider": "Microsoft-Windows-Sysmon", "Computer": "WS1"}
	for k, v := range fields {
		f[k] = v
	}
	return &quarry.Event{Source: "evtx", Host: "WS1", Message: "Sysmon 1", Fields: f}
}

// ruleYAML wraps a detection in a process_creation rule.
func ruleYAML(detection string) string {
	return "title: Test rule\nid: 00000000-0000-0000-0000-000000000001\nlevel: high\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n" + detection
}

func mustRuleSet(t *testing.T, yml string) *RuleSet {
	t.Helper()
	r, err := ParseRule([]byte(yml))
	if err != nil {
		t.Fatalf("ParseRule: %v\n%s", err, yml)
	}
	rs, problems := Compile([]*Rule{r})
	if len(problems) > 0 {
		t.Fatalf("Compile: %v\n%s", problems[0], yml)
	}
	return rs
}

type modifierCase struct {
	name      string
	detection string
	fields    map[string]any
	want      bool
}

func TestModifiersAndConditions(t *testing.T) {
	for _, tt := range modifierCases() {
		t.Run(tt.name, func(t *testing.T) {
			rs := mustRuleSet(t, ruleYAML(tt.detection))
			ev := sysmon1(tt.fields)
			got := len(rs.Match(ev)) > 0
			if got != tt.want {
				t.Errorf("Match = %v, want %v\n%s\nfields %v", got, tt.want, tt.detection, tt.fields)
			}
			if naive := len(rs.MatchNaive(ev)) > 0; naive != tt.want {
				t.Errorf("MatchNaive = %v, want %v", naive, tt.want)
			}
		})
	}
}

func modifierCases() []modifierCase {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	utf16 := func(s string) string {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r), 0)
		}
		return string(b)
	}
	return []modifierCase{
		{"Equal", "  sel:\n    Image: 'C:\\Windows\\System32\\cmd.exe'\n  condition: sel", map[string]any{"Image": `c:\windows\system32\CMD.EXE`}, true},
		{"EqualMiss", "  sel:\n    Image: 'C:\\Windows\\cmd.exe'\n  condition: sel", map[string]any{"Image": `C:\Windows\cmd.exe.bak`}, false},
		{"FieldNameIgnoresCase", "  sel:\n    image: 'x.exe'\n  condition: sel", map[string]any{"Image": "X.EXE"}, true},
		{"Contains", "  sel:\n    CommandLine|contains: ' -EncodedCommand '\n  condition: sel", map[string]any{"CommandLine": "powershell -encodedcommand AAA"}, true},
		{"StartsWith", "  sel:\n    Image|startswith: 'C:\\Users\\'\n  condition: sel", map[string]any{"Image": `C:\users\bob\a.exe`}, true},
		{"EndsWith", "  sel:\n    Image|endswith: '\\rundll32.exe'\n  condition: sel", map[string]any{"Image": `C:\Windows\System32\RUNDLL32.exe`}, true},
		{"EndsWithMiss", "  sel:\n    Image|endswith: '\\rundll32.exe'\n  condition: sel", map[string]any{"Image": `C:\Windows\System32\rundll32.exe.mui`}, false},
		{"ListIsOr", "  sel:\n    Image|endswith:\n      - '\\a.exe'\n      - '\\b.exe'\n  condition: sel", map[string]any{"Image": `C:\b.exe`}, true},
		{"ContainsAll", "  sel:\n    CommandLine|contains|all:\n      - 'net'\n      - 'user'\n      - '/add'\n  condition: sel", map[string]any{"CommandLine": "net user bob /add"}, true},
		{"ContainsAllMiss", "  sel:\n    CommandLine|contains|all:\n      - 'net'\n      - '/add'\n  condition: sel", map[string]any{"CommandLine": "net user bob"}, false},
		{"MapIsAnd", "  sel:\n    Image|endswith: '\\net.exe'\n    CommandLine|contains: 'user'\n  condition: sel", map[string]any{"Image": `C:\net.exe`, "CommandLine": "net group"}, false},
		{"ListOfMapsIsOr", "  sel:\n    - Image|endswith: '\\x.exe'\n    - CommandLine|contains: 'group'\n  condition: sel", map[string]any{"Image": `C:\net.exe`, "CommandLine": "net group"}, true},
		{"WildcardStar", "  sel:\n    CommandLine: '*vssadmin*delete*shadows*'\n  condition: sel", map[string]any{"CommandLine": "VSSADMIN.exe Delete Shadows /all"}, true},
		{"WildcardQuestion", "  sel:\n    Image: 'C:\\a?.exe'\n  condition: sel", map[string]any{"Image": `C:\ab.exe`}, true},
		{"WildcardQuestionOneChar", "  sel:\n    Image: 'C:\\a?.exe'\n  condition: sel", map[string]any{"Image": `C:\abc.exe`}, false},
		{"EscapedStar", "  sel:\n    CommandLine|contains: 'a\\*b'\n  condition: sel", map[string]any{"CommandLine": "xa*bx"}, true},
		{"EscapedStarIsLiteral", "  sel:\n    CommandLine|contains: 'a\\*b'\n  condition: sel", map[string]any{"CommandLine": "axxb"}, false},
		{"BackslashBeforeLetterIsLiteral", "  sel:\n    Image: 'C:\\Temp\\x.exe'\n  condition: sel", map[string]any{"Image": `C:\Temp\x.exe`}, true},
		{"DoubleBackslashIsOne", "  sel:\n    CommandLine|contains: '\\\\\\\\srv\\\\share'\n  condition: sel", map[string]any{"CommandLine": `copy \\srv\share\x .`}, true},
		{"Cased", "  sel:\n    CommandLine|contains|cased: 'AbC'\n  condition: sel", map[string]any{"CommandLine": "xabcx"}, false},
		{"CasedHit", "  sel:\n    CommandLine|contains|cased: 'AbC'\n  condition: sel", map[string]any{"CommandLine": "xAbCx"}, true},
		{"Regex", "  sel:\n    CommandLine|re: '-e(nc|ncodedcommand)? [A-Za-z0-9+/=]{8,}'\n  condition: sel", map[string]any{"CommandLine": "ps -enc SQBFAFgAIAA="}, true},
		{"RegexIsCaseSensitive", "  sel:\n    CommandLine|re: 'IEX'\n  condition: sel", map[string]any{"CommandLine": "iex (x)"}, false},
		{"RegexI", "  sel:\n    CommandLine|re|i: 'IEX'\n  condition: sel", map[string]any{"CommandLine": "iex (x)"}, true},
		{"RegexS", "  sel:\n    CommandLine|re|s: 'a.b'\n  condition: sel", map[string]any{"CommandLine": "a\nb"}, true},
		{"RegexM", "  sel:\n    CommandLine|re|m: '^b$'\n  condition: sel", map[string]any{"CommandLine": "a\nb\nc"}, true},
		{"CIDR", "  sel:\n    DestinationIp|cidr: '10.0.0.0/8'\n  condition: sel", map[string]any{"DestinationIp": "10.1.2.3"}, true},
		{"CIDRMiss", "  sel:\n    DestinationIp|cidr:\n      - '10.0.0.0/8'\n      - 'fe80::/10'\n  condition: sel", map[string]any{"DestinationIp": "11.1.2.3"}, false},
		{"CIDRv6", "  sel:\n    DestinationIp|cidr: 'fe80::/10'\n  condition: sel", map[string]any{"DestinationIp": "fe80::1"}, true},
		{"Base64", "  sel:\n    CommandLine|base64|contains: 'http://evil'\n  condition: sel", map[string]any{"CommandLine": "x " + b64("http://evil") + " y"}, true},
		{"Base64IsCaseSensitive", "  sel:\n    CommandLine|base64|contains: 'http://evil'\n  condition: sel", map[string]any{"CommandLine": strings.ToLower(b64("http://evil"))}, false},
		{"Base64Offset0", "  sel:\n    CommandLine|base64offset|contains: 'IEX (New-Object'\n  condition: sel", map[string]any{"CommandLine": b64("IEX (New-Object Net.WebClient)")}, true},
		{"Base64Offset1", "  sel:\n    CommandLine|base64offset|contains: 'IEX (New-Object'\n  condition: sel", map[string]any{"CommandLine": b64("xIEX (New-Object Net.WebClient)")}, true},
		{"Base64Offset2", "  sel:\n    CommandLine|base64offset|contains: 'IEX (New-Object'\n  condition: sel", map[string]any{"CommandLine": b64("xyIEX (New-Object Net.WebClient)")}, true},
		{"Base64OffsetMiss", "  sel:\n    CommandLine|base64offset|contains: 'IEX (New-Object'\n  condition: sel", map[string]any{"CommandLine": b64("xyIEX (Old-Object Net.WebClient)")}, false},
		{"Utf16leBase64Offset", "  sel:\n    CommandLine|utf16le|base64offset|contains: 'Invoke-'\n  condition: sel", map[string]any{"CommandLine": "-enc " + b64(utf16("a Invoke-Expression"))}, true},
		{"WideBase64Offset", "  sel:\n    CommandLine|wide|base64offset|contains: 'Invoke-'\n  condition: sel", map[string]any{"CommandLine": "-enc " + b64(utf16("ab Invoke-Expression"))}, true},
		{"Utf16beBase64", "  sel:\n    CommandLine|utf16be|base64|contains: 'ab'\n  condition: sel", map[string]any{"CommandLine": b64("\x00a\x00b")}, true},
		{"Utf16Base64", "  sel:\n    CommandLine|utf16|base64|contains: 'ab'\n  condition: sel", map[string]any{"CommandLine": b64("\xff\xfea\x00b\x00")}, true},
		{"Windash", "  sel:\n    CommandLine|windash|contains: ' -exec bypass'\n  condition: sel", map[string]any{"CommandLine": "ps /exec bypass"}, true},
		{"WindashEnDash", "  sel:\n    CommandLine|windash|contains: ' -exec bypass'\n  condition: sel", map[string]any{"CommandLine": "ps \u2013exec bypass"}, true},
		{"WindashHorizontalBar", "  sel:\n    CommandLine|contains|windash: ' -exec bypass'\n  condition: sel", map[string]any{"CommandLine": "ps \u2015exec bypass"}, true},
		{"WindashKeepsInnerDash", "  sel:\n    CommandLine|windash|contains: 'a-b'\n  condition: sel", map[string]any{"CommandLine": "a/b"}, false},
		{"ExistsTrue", "  sel:\n    Hashes|exists: true\n  condition: sel", map[string]any{"Hashes": "SHA1=00"}, true},
		{"ExistsTrueMissing", "  sel:\n    Hashes|exists: true\n  condition: sel", map[string]any{}, false},
		{"ExistsFalse", "  sel:\n    Hashes|exists: false\n  condition: sel", map[string]any{}, true},
		{"NullMissing", "  sel:\n    ParentImage: null\n  condition: sel", map[string]any{}, true},
		{"NullEmpty", "  sel:\n    ParentImage: null\n  condition: sel", map[string]any{"ParentImage": ""}, true},
		{"NullPresent", "  sel:\n    ParentImage: null\n  condition: sel", map[string]any{"ParentImage": "x"}, false},
		{"NullInList", "  sel:\n    ParentImage:\n      - null\n      - 'x'\n  condition: sel", map[string]any{"ParentImage": "x"}, true},
		{"Gt", "  sel:\n    TerminalSessionId|gt: 1\n  condition: sel", map[string]any{"TerminalSessionId": int64(2)}, true},
		{"GteString", "  sel:\n    TerminalSessionId|gte: 2\n  condition: sel", map[string]any{"TerminalSessionId": "2"}, true},
		{"Lt", "  sel:\n    TerminalSessionId|lt: 1\n  condition: sel", map[string]any{"TerminalSessionId": int64(1)}, false},
		{"Lte", "  sel:\n    TerminalSessionId|lte: 1\n  condition: sel", map[string]any{"TerminalSessionId": uint64(1)}, true},
		{"NumberEqualsInt", "  sel:\n    LogonType: 10\n  condition: sel", map[string]any{"LogonType": int64(10)}, true},
		{"NumberEqualsString", "  sel:\n    LogonType: 10\n  condition: sel", map[string]any{"LogonType": "10"}, true},
		{"HexNumberEqualsString", "  sel:\n    GrantedAccess: 0x1410\n  condition: sel", map[string]any{"GrantedAccess": "0x1410"}, true},
		{"HexNumberEqualsInt", "  sel:\n    GrantedAccess: 0x1410\n  condition: sel", map[string]any{"GrantedAccess": int64(0x1410)}, true},
		{"QuotedNumberEqualsInt", "  sel:\n    LogonType: '10'\n  condition: sel", map[string]any{"LogonType": int64(10)}, true},
		{"EventIDNumeric", "  sel:\n    EventID: 1\n  condition: sel", map[string]any{}, true},
		{"EventIDOther", "  sel:\n    EventID: 4688\n  condition: sel", map[string]any{}, false},
		{"Fieldref", "  sel:\n    ParentImage|fieldref: Image\n  condition: sel", map[string]any{"Image": `C:\A.exe`, "ParentImage": `c:\a.exe`}, true},
		{"FieldrefMiss", "  sel:\n    ParentImage|fieldref: Image\n  condition: sel", map[string]any{"Image": `C:\A.exe`, "ParentImage": `c:\b.exe`}, false},
		{"FieldrefEndswith", "  sel:\n    CommandLine|fieldref|endswith: Image\n  condition: sel", map[string]any{"Image": `a.exe`, "CommandLine": `run a.exe`}, true},
		{"ListValueAnyElement", "  sel:\n    Tags|contains: 'b'\n  condition: sel", map[string]any{"Tags": []any{"a", "xbx"}}, true},
		{"RepeatedName", "  sel:\n    Data|contains: 'HostApplication=powershell'\n  condition: sel", map[string]any{"Data": "Available", "Data_1": "x", "Data_2": "HostApplication=powershell -nop"}, true},
		{"Keywords", "  keywords:\n    - 'mimikatz'\n  condition: keywords", map[string]any{"CommandLine": "run MimiKatz.exe"}, true},
		{"KeywordsMessage", "  keywords:\n    - 'sysmon 1'\n  condition: keywords", map[string]any{}, true},
		{"KeywordInBool", "  keywords:\n    - 'rue'\n  condition: keywords", map[string]any{"Flag": true}, true},
		{"KeywordInNumber", "  keywords:\n    - '4242'\n  condition: keywords", map[string]any{"Pid": int64(142424)}, true},
		{"KeywordsAll", "  keywords:\n    '|all':\n      - 'bash -c'\n      - '/dev/tcp/'\n  condition: keywords", map[string]any{"CommandLine": "bash -c x >& /dev/tcp/1.2.3.4"}, true},
		{"KeywordsAllMiss", "  keywords:\n    '|all':\n      - 'bash -c'\n      - '/dev/tcp/'\n  condition: keywords", map[string]any{"CommandLine": "bash -c x"}, false},
		{"And", "  a:\n    Image|endswith: 'a.exe'\n  b:\n    User: bob\n  condition: a and b", map[string]any{"Image": "a.exe", "User": "bob"}, true},
		{"AndMiss", "  a:\n    Image|endswith: 'a.exe'\n  b:\n    User: bob\n  condition: a and b", map[string]any{"Image": "a.exe", "User": "eve"}, false},
		{"Or", "  a:\n    Image|endswith: 'a.exe'\n  b:\n    User: bob\n  condition: a or b", map[string]any{"Image": "c.exe", "User": "bob"}, true},
		{"Not", "  a:\n    Image|endswith: 'a.exe'\n  b:\n    User: bob\n  condition: a and not b", map[string]any{"Image": "a.exe", "User": "bob"}, false},
		{"NotMissingField", "  a:\n    Image|endswith: 'a.exe'\n  b:\n    User: bob\n  condition: a and not b", map[string]any{"Image": "a.exe"}, true},
		{"Precedence", "  a:\n    Image: a\n  b:\n    User: b\n  c:\n    CommandLine: c\n  condition: a or b and c", map[string]any{"Image": "a", "User": "x"}, true},
		{"Parentheses", "  a:\n    Image: a\n  b:\n    User: b\n  c:\n    CommandLine: c\n  condition: (a or b) and c", map[string]any{"Image": "a", "User": "x"}, false},
		{"NotBindsTight", "  a:\n    Image: a\n  b:\n    User: b\n  condition: not a and b", map[string]any{"Image": "x", "User": "b"}, true},
		{"OneOfPattern", "  selection_a:\n    Image: a\n  selection_b:\n    Image: b\n  filter:\n    User: x\n  condition: 1 of selection_* and not filter", map[string]any{"Image": "b"}, true},
		{"AllOfPattern", "  selection_a:\n    Image: a\n  selection_b:\n    User: b\n  condition: all of selection_*", map[string]any{"Image": "a", "User": "c"}, false},
		{"AllOfPatternHit", "  selection_a:\n    Image: a\n  selection_b:\n    User: b\n  condition: all of selection_*", map[string]any{"Image": "a", "User": "b"}, true},
		{"OneOfThem", "  a:\n    Image: a\n  b:\n    User: b\n  condition: 1 of them", map[string]any{"User": "b"}, true},
		{"AllOfThem", "  a:\n    Image: a\n  b:\n    User: b\n  condition: all of them", map[string]any{"User": "b"}, false},
		{"ThemSkipsUnderscore", "  a:\n    Image: a\n  _b:\n    User: b\n  condition: all of them", map[string]any{"Image": "a"}, true},
		{"NotOneOfFilters", "  sel:\n    Image: a\n  filter_main_1:\n    User: x\n  filter_main_2:\n    User: y\n  condition: sel and not 1 of filter_main_*", map[string]any{"Image": "a", "User": "y"}, false},
		{"ConditionList", "  a:\n    Image: a\n  b:\n    User: b\n  condition:\n    - a\n    - b", map[string]any{"User": "b"}, true},
		{"TwoOf", "  s1:\n    Image: a\n  s2:\n    User: b\n  s3:\n    CommandLine: c\n  condition: 2 of s*", map[string]any{"Image": "a", "CommandLine": "c"}, true},
		{"TwoOfMiss", "  s1:\n    Image: a\n  s2:\n    User: b\n  s3:\n    CommandLine: c\n  condition: 2 of s*", map[string]any{"Image": "a"}, false},
		{"Bool", "  sel:\n    Initiated: true\n  condition: sel", map[string]any{"Initiated": "true"}, true},
	}
}

func TestSecurity4688Mapping(t *testing.T) {
	rs := mustRuleSet(t, ruleYAML("  sel:\n    Image|endswith: '\\whoami.exe'\n    ParentImage|endswith: '\\cmd.exe'\n  condition: sel"))
	ev := &quarry.Event{Source: "evtx", Fields: map[string]any{"EventID": int64(4688), "Channel": "Security",
		"NewProcessName": `C:\Windows\System32\whoami.exe`, "ParentProcessName": `C:\Windows\System32\cmd.exe`}}
	if len(rs.Match(ev)) != 1 {
		t.Errorf("a 4688 with the mapped fields does not match the process_creation rule")
	}
	ev.Fields["EventID"] = int64(4689)
	if len(rs.Match(ev)) != 0 {
		t.Errorf("a 4689 matches a process_creation rule")
	}
	ev.Fields["EventID"] = "4688" // a string EventID routes as well
	if len(rs.Match(ev)) != 1 {
		t.Errorf("EventID \"4688\" does not route to the process_creation rule")
	}
	other := sysmon1(map[string]any{"Image": `C:\whoami.exe`, "ParentImage": `C:\cmd.exe`})
	other.Fields["Channel"] = "Microsoft-Windows-PowerShell/Operational"
	if len(rs.Match(other)) != 0 {
		t.Errorf("an event of another channel matches")
	}
}

func TestUnsupported(t *testing.T) {
	tests := []struct {
		name, detection, want string
	}{
		{"Aggregation", "  sel:\n    Image: a\n  condition: sel | count() by User > 5", "aggregation"},
		{"Near", "  sel:\n    Image: a\n  b:\n    Image: b\n  condition: sel | near b", "aggregation"},
		{"Expand", "  sel:\n    Image|expand: '%x%'\n  condition: sel", "expand"},
		{"Lookbehind", "  sel:\n    Image|re: '(?<!a)b'\n  condition: sel", "RE2"},
		{"Backreference", "  sel:\n    Image|re: '(a)\\1'\n  condition: sel", "RE2"},
		{"UnknownModifier", "  sel:\n    Image|frobnicate: a\n  condition: sel", "frobnicate"},
		{"NestedMap", "  sel:\n    Image:\n      a: b\n  condition: sel", "nested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRule([]byte(ruleYAML(tt.detection)))
			if err == nil {
				_, problems := Compile([]*Rule{r})
				if len(problems) != 1 {
					t.Fatalf("Compile: %d problems, want 1", len(problems))
				}
				if problems[0].Kind != ProblemUnsupported {
					t.Errorf("kind = %q (%v), want unsupported", problems[0].Kind, problems[0].Err)
				}
				err = problems[0].Err
			}
			if Reason(err) == "" || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want an unsupported error naming %q", err, tt.want)
			}
		})
	}
	r, err := ParseRule([]byte("title: Correlation\nid: x\ncorrelation:\n  type: event_count\n  rules: [a]\n"))
	if Reason(err) == "" || r != nil {
		t.Errorf("correlation rule: ParseRule = %v, %v; want unsupported", r, err)
	}
	if _, err := ParseRule([]byte("title: A\nlogsource: {product: windows}\ndetection: {s: {a: b}, condition: s}\n---\ntitle: B\n")); Reason(err) == "" {
		t.Errorf("two documents: %v, want unsupported", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, yml string }{
		{"NoTitle", "id: x\nlogsource: {product: windows}\ndetection: {s: {a: b}, condition: s}\n"},
		{"NoCondition", "title: t\nlogsource: {product: windows}\ndetection: {s: {a: b}}\n"},
		{"BadYAML", "title: [\n"},
		{"NoLogsource", "title: t\ndetection: {s: {a: b}, condition: s}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseRule([]byte(tt.yml)); err == nil || Reason(err) != "" {
				t.Errorf("ParseRule = %v, want a parse error", err)
			}
		})
	}
	for name, det := range map[string]string{
		"UndefinedSearch": "  sel:\n    Image: a\n  condition: sel and other",
		"NoMatchForOneOf": "  sel:\n    Image: a\n  condition: 1 of filter_*",
		"BadCIDR":         "  sel:\n    Ip|cidr: 'x/99'\n  condition: sel",
		"Unbalanced":      "  sel:\n    Image: a\n  condition: (sel",
	} {
		t.Run(name, func(t *testing.T) {
			r, err := ParseRule([]byte(ruleYAML(det)))
			if err != nil {
				t.Fatal(err)
			}
			_, problems := Compile([]*Rule{r})
			if len(problems) != 1 || problems[0].Kind != ProblemParse {
				t.Errorf("Compile problems = %v, want one parse error", problems)
			}
		})
	}
}

func TestUnmappedLogsource(t *testing.T) {
	r, err := ParseRule([]byte("title: t\nid: u1\nlogsource: {product: macos, category: process_creation}\ndetection: {s: {a: b}, condition: s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rs, problems := Compile([]*Rule{r})
	if rs.Len() != 0 || len(problems) != 1 || problems[0].Kind != ProblemUnmapped {
		t.Fatalf("Compile = %d rules, %v; want the rule reported as logsource not mapped", rs.Len(), problems)
	}
	if !strings.Contains(problems[0].Error(), "u1") || !strings.Contains(problems[0].Error(), "macos") {
		t.Errorf("problem %q names neither the rule nor its logsource", problems[0].Error())
	}
}

// TestBuiltin loads Quarry's own rules and runs each on an event it is written for.
func TestBuiltin(t *testing.T) {
	rs, problems, err := LoadFS(Builtin())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("builtin rule: %v", p)
	}
	if rs.Len() < 5 {
		t.Fatalf("%d builtin rules, want at least 5", rs.Len())
	}
	sec := func(id int64, f map[string]any) *quarry.Event {
		m := map[string]any{"EventID": id, "Channel": "Security", "Provider": "Microsoft-Windows-Security-Auditing"}
		for k, v := range f {
			m[k] = v
		}
		return &quarry.Event{Source: "evtx", Fields: m}
	}
	tests := []struct {
		name string
		ev   *quarry.Event
		want string // title substring; "" for no match
	}{
		{"LogCleared", sec(1102, map[string]any{"Provider": "Microsoft-Windows-Eventlog"}), "Security Event Log Cleared"},
		{"ServiceTemp", &quarry.Event{Source: "evtx", Fields: map[string]any{"EventID": int64(7045), "Channel": "System",
			"ServiceName": "x", "ImagePath": `C:\Users\bob\AppData\Local\Temp\svc.exe`}}, "Service Installed"},
		{"ServiceSystem32", &quarry.Event{Source: "evtx", Fields: map[string]any{"EventID": int64(7045), "Channel": "System",
			"ImagePath": `C:\Windows\System32\svchost.exe -k netsvcs`}}, ""},
		{"UserCreated", sec(4720, map[string]any{"TargetUserName": "backdoor"}), "Local User Account Created"},
		{"MachineAccount", sec(4720, map[string]any{"TargetUserName": "WS1$"}), ""},
		{"AdminsGroup", sec(4732, map[string]any{"TargetSid": "S-1-5-32-544"}), "Administrators"},
		{"Task", sec(4698, map[string]any{"TaskContent": `<Exec><Command>powershell.exe</Command><Arguments>-nop -enc SQBFAFgA</Arguments></Exec>`}), "Scheduled Task"},
		{"TaskBenign", sec(4698, map[string]any{"TaskContent": `<Exec><Command>C:\Program Files\Updater\up.exe</Command></Exec>`}), ""},
		{"SudoShell", &quarry.Event{Source: "auth.log", Fields: map[string]any{"program": "sudo", "action": "sudo", "user": "alice",
			"target_user": "root", "command": "/bin/bash"}}, "Sudo to a Root Shell"},
		{"SudoCommand", &quarry.Event{Source: "auth.log", Fields: map[string]any{"program": "sudo", "action": "sudo", "user": "alice",
			"target_user": "root", "command": "/usr/bin/apt update"}}, ""},
		{"Useradd", &quarry.Event{Source: "auth.log", Fields: map[string]any{"program": "useradd", "action": "useradd: new user",
			"target_user": "eve"}}, "Linux Local User Created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dets := rs.Match(tt.ev)
			if tt.want == "" {
				if len(dets) != 0 {
					t.Errorf("Match = %v, want nothing", dets)
				}
				return
			}
			if len(dets) != 1 || !strings.Contains(dets[0].Title, tt.want) || dets[0].Kind != "sigma" {
				t.Errorf("Match = %v, want one sigma detection %q", dets, tt.want)
			}
		})
	}
}

// TestConcurrentMatch runs one RuleSet from several goroutines (run with -race) and checks that
// each sees the same detections as a lone caller.
func TestConcurrentMatch(t *testing.T) {
	// Every rule of the modifier table in one set, plus the one this test is about.
	var rules []*Rule
	cases := modifierCases()
	for i, c := range append(cases, modifierCase{detection: "  sel:\n    CommandLine|contains: 'mimikatz'\n  filter:\n    User: admin\n  condition: sel and not filter"}) {
		yml := strings.Replace(ruleYAML(c.detection), "0000-000000000001", fmt.Sprintf("0000-%012d", i), 1)
		r, err := ParseRule([]byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	rs, problems := Compile(rules)
	if len(problems) > 0 {
		t.Fatal(problems[0])
	}
	events := make([]*quarry.Event, 200)
	want := make([]int, len(events))
	for i := range events {
		user := "bob"
		if i%3 == 0 {
			user = "admin"
		}
		cmd := "notepad.exe"
		if i%2 == 0 {
			cmd = "MIMIKATZ.exe sekurlsa::logonpasswords"
		}
		if i < len(cases) {
			events[i] = sysmon1(cases[i].fields)
		} else {
			events[i] = sysmon1(map[string]any{"CommandLine": cmd, "User": user, "UtcTime": time.Unix(int64(i), 0)})
		}
		want[i] = len(rs.Match(events[i]))
		if naive := len(rs.MatchNaive(events[i])); naive != want[i] {
			t.Fatalf("event %d: Match %d detections, MatchNaive %d", i, want[i], naive)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var buf []quarry.Detection
			for round := 0; round < 20; round++ {
				for i, ev := range events {
					buf = rs.AppendMatches(buf[:0], ev)
					if len(buf) != want[i] {
						errs <- "goroutine saw a different result"
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
