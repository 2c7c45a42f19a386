package odata

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var schema = Schema{
	"name": String, "status": String, "risk": String, "score": Number, "ok": Bool,
	"seen": Time, "tags": StringList, "owner": String,
}

func record(prop string) any {
	return map[string]any{
		"name":   "ws-fin-012.contoso.local",
		"status": "Pending",
		"risk":   "High",
		"score":  float64(412),
		"ok":     true,
		"seen":   time.Date(2024, 6, 3, 9, 0, 0, 0, time.UTC),
		"tags":   []string{"finance", "vip"},
		"owner":  nil,
	}[prop]
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{"status eq 'Pending'", true},
		{"status eq 'pending'", true}, // the service compares strings case-insensitively
		{"status ne 'Pending'", false},
		{"status eq 'Pending' and risk eq 'High'", true},
		{"status eq 'Pending' AND risk eq 'Low'", false},
		{"status eq 'Done' or risk eq 'High'", true},
		{"(status eq 'Done' or risk eq 'High') and score gt 400", true},
		{"not (score ge 412)", false},
		{"score lt 412.5 and score le 412 and score ge 412", true},
		{"ok eq true", true},
		{"ok ne true", false},
		{"seen gt 2024-06-01T00:00:00Z", true},
		{"seen ge 2024-06-03T09:00:00.0000000Z", true},
		{"seen lt 2018-08-01Z", false},
		{"seen gt '2024-06-04T00:00:00Z'", false},
		{"owner eq null", true},
		{"owner ne null", false},
		{"name eq 'it''s'", false},
		{"startswith(name,'ws-')", true},
		{"endswith(name, '.LOCAL')", true},
		{"contains(name,'fin') eq false", false},
		{"risk in ('Medium','High')", true},
		{"risk in ('Low')", false},
		{"tags/any(t: t eq 'vip')", true},
		{"tags/any(t: t eq 'hr' or startswith(t,'fin'))", true},
		{"tags/any(t: t eq 'hr')", false},
	} {
		f, err := Parse(tc.filter, schema)
		if err != nil {
			t.Errorf("Parse(%q) error: %v", tc.filter, err)
			continue
		}
		if got := f.Match(record); got != tc.want {
			t.Errorf("Parse(%q).Match = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		filter, want string
	}{
		{"", "expected a property"},
		{"nosuch eq 1", "could not find a property named 'nosuch'"},
		{"Status eq 'x'", "could not find a property named 'Status'"},
		{"status eq", "not a valid string literal"},
		{"status eq 5", "not a valid string literal"},
		{"score eq 'x'", "not a valid number literal"},
		{"seen gt 'yesterday'", "not a valid datetime literal"},
		{"status eq 'Pending' and", "expected a property"},
		{"status equals 'x'", "expected a comparison operator"},
		{"status eq 'x' )", "unexpected"},
		{"(status eq 'x'", "expected ')'"},
		{"status eq 'unterminated", "unterminated string"},
		{"tags eq 'x'", "expected '/any(' after a collection property"},
		{"tags/all(t: t eq 'x')", "only any()"},
		{"ok gt true", "booleans can only be compared"},
		{"score gt null", "null can only be compared"},
		{"substringof('x', name)", "unsupported function"},
		{"startswith(score,'1')", "needs a string property"},
		{"status eq 'x' # comment", "unexpected character"},
		{strings.Repeat("(", 100) + "ok eq true" + strings.Repeat(")", 100), "nested too deeply"},
		{strings.Repeat("not ", 100) + "ok eq true", "nested too deeply"},
	} {
		_, err := Parse(tc.filter, schema)
		var pe *Error
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want *Error containing %q", tc.filter, err, tc.want)
		}
	}
}

func TestNilFilterMatchesAll(t *testing.T) {
	var f *Filter
	if !f.Match(record) {
		t.Error("nil filter did not match")
	}
}

// FuzzParseFilter checks that no input makes the parser or the evaluator panic, and that an accepted
// filter evaluates on records of every shape.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"status eq 'Pending' and risk eq 'High'",
		"tags/any(t: t eq 'vip')",
		"seen gt 2024-06-01T00:00:00Z or not (score le 3)",
		"startswith(name,'ws') eq true",
		"risk in ('Low','High')",
	} {
		f.Add(s)
	}
	empty := func(string) any { return nil }
	wrong := func(string) any { return []string{"x"} }
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := Parse(s, schema)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %T is not *Error", s, err)
			}
			return
		}
		flt.Match(record)
		flt.Match(empty)
		flt.Match(wrong)
	})
}
