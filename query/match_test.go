package query

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
)

func sampleEvent() *quarry.Event {
	return &quarry.Event{
		Timestamp:     time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC),
		TimestampDesc: "Event Time",
		Source:        "evtx",
		Host:          "WS01.corp.local",
		User:          "CORP\\svc backup",
		Message:       "An account failed to log on. Logon Type: 3 from 10.0.0.42",
		Path:          `C:\Windows\System32\winevt\Logs\Security.evtx`,
		Severity:      quarry.SeveritySuspicious,
		Fields: map[string]any{
			"EventID":     int64(4625),
			"Channel":     "Security",
			"src_ip":      "10.0.0.42",
			"CommandLine": `powershell.exe -enc SQBFAFgA`,
			"LogonType":   "3",
			"Bytes":       uint64(18446744073709551615),
			"Score":       2.5,
			"Elevated":    true,
			"Created":     time.Date(2023, 12, 31, 23, 59, 59, 0, time.UTC),
			"Tags":        []any{"lateral", "T1021"},
			"Ports":       []int64{22, 3389},
			"process":     map[string]any{"name": "lsass.exe", "pid": int64(640)},
			"host":        "field-host",
		},
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		q    string
		want bool
	}{
		// Free text: message, host, user, source and Fields values, contained, any case.
		{"failed", true},
		{"FAILED", true},
		{`"failed to log on"`, true},
		{`"failed log on"`, false},
		{"ws01", true},
		{"svc", true},
		{"SQBFAFgA", true},
		{"4625", true},
		{"lateral", true},
		{"3389", true},
		{"Security.evtx", false}, // path is not free text
		{"lsass", false},         // nested maps are not free text
		{"nosuchword", false},
		{"fail*", true},     // a word of the message
		{"*ail*", true},     // the whole message
		{"log?", false},     // no word or value is "log" plus one character
		{"lo?on", true},     // the word "Logon"
		{"10.0.0.*", true},  // a Fields value and a word of the message
		{"10.0.1.*", false}, // and nothing else
		{"*", true},
		// Keyword fields: the whole value, any case.
		{"source:evtx", true},
		{"source:EVTX", true},
		{"source:evt", false},
		{"host:ws01.corp.local", true},
		{"host:ws01", false},
		{"fields.host:field-host", true}, // fields. reaches a key shadowed by a top-level name
		{"host:field-host", false},
		{`user:"CORP\\svc backup"`, true},
		{`user:"svc backup"`, false},
		{`user:*svc\ backup`, true},
		{"severity:suspicious", true},
		{"timestamp_desc:\"event time\"", true},
		{`path:*\\Security.evtx`, true},
		{`path:*security.evtx`, true},
		{"Channel:security", true},
		{"channel:security", true}, // Fields keys fall back to any case
		{"fields.Channel:Security", true},
		{"process.name:LSASS.EXE", true},
		{"process.pid:640", true},
		{"process.name:lsass", false},
		{"Elevated:true", true},
		{"Elevated:false", false},
		{"Tags:t1021", true},
		{"Tags:T10*", true},
		{"Ports:22", true},
		{"Ports:23", false},
		{"missing:x", false},
		{"missing:*", false},
		{"user:*", true},
		// Numbers compare as numbers when both sides are numbers.
		{"EventID:4625", true},
		{"EventID:4625.0", true},
		{"EventID:04625", true},
		{"EventID:4624", false},
		{"EventID:46*", true},
		{"LogonType:3.0", true}, // a numeric string
		{"Bytes:18446744073709551615", true},
		{"Bytes:18446744073709551614", false},
		{"Score:2.5", true},
		{"Score:2.50", true},
		{"src_ip:10.0.0.42", true},
		{"src_ip:10.0.0.*", true},
		{"src_ip:10.0.0.4?", true},
		{"src_ip:10.0.0.?", false},
		// message is a text field: contained.
		{"message:failed", true},
		{`message:"Logon Type: 3"`, true},
		{"message:fail*", true},
		{"message:evtx", false},
		// Timestamps.
		{"timestamp:2024-01-15", true},
		{"timestamp:2024-01-16", false},
		{"timestamp:2024-01-15T10:30:00Z", true},
		{"timestamp:2024-01-15T11:30:00+01:00", true},
		{"timestamp:2024-01-15T10:30:01Z", false},
		{"timestamp:2024-01-15T10:30:00", true}, // no zone means UTC
		{"timestamp:2024-01-*", true},
		{"Created:2023-12-31", true},
		// Ranges on times: dates cover whole days.
		{"timestamp:[2024-01-01 TO 2024-01-31]", true},
		{"timestamp:[2024-01-15 TO 2024-01-15]", true},
		{"timestamp:{2024-01-15 TO *}", false},
		{"timestamp:{2024-01-14 TO *}", true},
		{"timestamp:[* TO 2024-01-15}", false},
		{"timestamp:[* TO 2024-01-16}", true},
		{"timestamp:[2024-01-15T10:30:00Z TO *]", true},
		{"timestamp:{2024-01-15T10:30:00Z TO *]", false},
		{"timestamp:[* TO 2024-01-15T10:30:00Z]", true},
		{"timestamp:[* TO 2024-01-15T10:30:00Z}", false},
		{"timestamp:[2024-01-15T12:00:00+02:00 TO 2024-01-15T12:30:00+02:00]", true},
		{"Created:[2023-12-31 TO 2023-12-31]", true},
		{"Created:[2024-01-01 TO *]", false},
		{"Created:[yesterday TO *]", false}, // not a time: no match
		// Ranges on numbers and text.
		{"EventID:[4624 TO 4634]", true},
		{"EventID:[4625 TO 4625]", true},
		{"EventID:{4625 TO 4634]", false},
		{"EventID:[4600 TO 4625}", false},
		{"EventID:[* TO 10000]", true},
		{"EventID:[900 TO 5000]", true}, // numerically; as text "900" > "4625"
		{"Score:[2 TO 3]", true},
		{"Ports:[3000 TO 4000]", true},
		{"Bytes:[1 TO *]", true},
		{"Bytes:[-1 TO 0]", false},
		{"src_ip:[10.0.0.0 TO 10.0.0.9]", true}, // text order
		{"host:[a TO x]", true},
		{"host:[x TO z]", false},
		{"EventID:[* TO *]", true}, // present
		{"missing:[* TO *]", false},
		// Boolean structure.
		{"EventID:4625 AND src_ip:10.0.0.* NOT user:\"svc backup\"", true},
		{"EventID:4625 AND src_ip:10.0.0.* NOT user:\"CORP\\\\svc backup\"", false},
		{"source:auth.log (failed OR invalid)", false},
		{"source:evtx (failed OR invalid)", true},
		{"-user:root", true},
		{"NOT missing:x", true},
		{"EventID:(4624 OR 4625)", true},
		{"EventID:(4624 OR 4634)", false},
		{"nosuch OR failed", true},
		{"NOT NOT failed", true},
	}
	ev := sampleEvent()
	for _, tt := range tests {
		n, err := Parse(tt.q)
		if err != nil {
			t.Errorf("Parse(%q) error %v", tt.q, err)
			continue
		}
		if got := Match(n, ev); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestMatchEmptyEvent(t *testing.T) {
	ev := &quarry.Event{}
	for q, want := range map[string]bool{
		"user:*":                       false,
		"timestamp:[* TO *]":           false,
		"NOT host:x":                   true,
		"message:*":                    false,
		"x":                            false,
		"*":                            true, // the empty message matches "*" as a whole
		"EventID:[1 TO 2]":             false,
		"timestamp:[2000-01-01 TO *]":  false,
		"fields.a:b OR NOT fields.a:*": true,
	} {
		n, err := Parse(q)
		if err != nil {
			t.Fatalf("Parse(%q) error %v", q, err)
		}
		if got := Match(n, ev); got != want {
			t.Errorf("Match(%q, empty event) = %v, want %v", q, got, want)
		}
	}
}

func TestLookupField(t *testing.T) {
	for in, want := range map[string]FieldRef{
		"timestamp":          {Top: "timestamp"},
		"Host":               {Top: "host"},
		"TIMESTAMP_DESC":     {Top: "timestamp_desc"},
		"fields.host":        {Key: "host"},
		"Fields.CommandLine": {Key: "CommandLine"},
		"process.name":       {Key: "process.name"},
		"EventID":            {Key: "EventID"},
		"fields.":            {Key: "fields."},
	} {
		if got := LookupField(in); got != want {
			t.Errorf("LookupField(%q) = %+v, want %+v", in, got, want)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for in, ok := range map[string]bool{
		"1": true, "-4": true, "2.5": true, "1e3": true, "18446744073709551615": true,
		"": false, "nan": false, "Inf": false, "0x10": false, "1e999": false, "e": false, "1.2.3": false, "-": false,
	} {
		if _, got := parseNumber(in); got != ok {
			t.Errorf("parseNumber(%q) ok = %v, want %v", in, got, ok)
		}
	}
	a, _ := parseNumber("-1")
	b, _ := parseNumber("18446744073709551615")
	if compareNum(a, b) != -1 || compareNum(b, a) != 1 {
		t.Errorf("compareNum(-1, MaxUint64) wrong")
	}
}

func TestMatchLongValues(t *testing.T) {
	// A long message and a pattern that would make a backtracking matcher slow.
	ev := &quarry.Event{Message: strings.Repeat("a", 10000), Fields: map[string]any{"f": strings.Repeat("a", 10000)}}
	for q, want := range map[string]bool{
		"f:a*a*a*a*a*a*a*a*a*a*b":               false,
		"f:*a*a*a*a*a*a*a*a*a*a*":               true,
		"a*a*a*a*a*a*a*a*a*a*b":                 false,
		"message:*a?a?a?a?a?a*b*":               false,
		"f:" + strings.Repeat("a*", 1000) + "b": false,
	} {
		n, err := Parse(q)
		if err != nil {
			t.Fatalf("Parse(%q) error %v", q, err)
		}
		if got := Match(n, ev); got != want {
			t.Errorf("Match(%.40q…) = %v, want %v", q, got, want)
		}
	}
}

func TestMatchValueTypes(t *testing.T) {
	day := time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		v    any
		q    string
		want bool
	}{
		{"Int", 7, "f:7", true},
		{"Int8", int8(-7), "f:[-8 TO -6]", true},
		{"Int16", int16(300), "f:300", true},
		{"Int32", int32(5), "f:{5 TO *}", false},
		{"Uint", uint(9), "f:9.0", true},
		{"Uint8", uint8(255), "f:[255 TO 255]", true},
		{"Uint16", uint16(80), "f:8*", true},
		{"Uint32", uint32(443), "f:443", true},
		{"Float32", float32(1.5), "f:1.5", true},
		{"Float64Text", 0.1, "f:0.1", true},
		{"NaNIsText", math.NaN(), "f:NaN", true},
		{"NaNNotInRange", math.NaN(), "f:[0 TO *]", false},
		{"Strings", []string{"a", "b"}, "f:b", true},
		{"Uint64s", []uint64{1, 2}, "f:[2 TO 3]", true},
		{"Float64s", []float64{1.5, 2.5}, "f:2.5", true},
		{"Bools", []bool{false}, "f:false", true},
		{"Times", []time.Time{day}, "f:2024-03-01", true},
		{"TimesRange", []time.Time{day}, "f:{2024-03-01T08:00:00Z TO *]", false},
		{"TimeText", day, "f:*T08:00:00Z", true},
		{"TimeNotADate", day, "f:march", false},
		{"Nested", []any{[]any{"deep"}}, "f:deep", true},
		{"Map", map[string]any{"x": "y"}, "f:y", false},
		{"MapPath", map[string]any{"x": "y"}, "f.x:y", true},
		{"Nil", nil, "f:*", false},
		{"OtherType", struct{}{}, "f:*", true}, // present, with no text
		{"NumericStringRange", "0010", "f:[9 TO 11]", true},
		{"TextRangeWhenBoundIsText", "5", "f:[a TO z]", false},
		{"TextOutsideNumericRange", "unknown", "f:[4624 TO 4634]", false},
		{"OpenRangeIsPresence", "unknown", "f:[* TO *]", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse(tt.q)
			if err != nil {
				t.Fatalf("Parse(%q) error %v", tt.q, err)
			}
			ev := &quarry.Event{Fields: map[string]any{"f": tt.v}}
			if got := Match(n, ev); got != tt.want {
				t.Errorf("Match(%q) on f=%#v = %v, want %v", tt.q, tt.v, got, tt.want)
			}
		})
	}
}

// FuzzGlob checks the linear matcher against the reference dynamic programme.
func FuzzGlob(f *testing.F) {
	f.Add("a*b?c", "axxbyc")
	f.Add(`*\**`, "a*b")
	f.Add("ü?*", "üxy")
	f.Fuzz(func(t *testing.T, pattern, text string) {
		if len(pattern) > 64 || len(text) > 256 {
			return // the reference is quadratic
		}
		if got, want := globMatch(pattern, text), refGlob(pattern, text); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, reference says %v", pattern, text, got, want)
		}
	})
}
