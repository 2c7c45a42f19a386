package alerts_test

import (
	"slices"
	"testing"

	"github.com/quarry-dfir/quarry"
)

// FuzzRule feeds rule criteria as an analyst types them and alert fields as a platform sends
// them through Validate and Matches: neither may panic, Validate must be idempotent, and a rule
// whose only criterion is the alert's exact host name (when that is a plain name) must match.
func FuzzRule(f *testing.F) {
	f.Add("srv-*", "T1003", "high", "SRV-01.corp.example", "T1003.001", "Mimikatz", "high")
	f.Add("[a-", "t1059.001", "", "ws\x00", "", "\xff", "critical")
	f.Add("*", "T9999.9999", "urgent", "", "T", "", "")
	f.Fuzz(func(t *testing.T, pattern, technique, minSev, host, alertTechnique, title, sev string) {
		r := quarry.DetectionRule{Name: "fuzz", MinSeverity: minSev, Techniques: []string{technique}, HostPatterns: []string{pattern}, TitleContains: title}
		a := &quarry.Alert{HostName: host, Title: title, Severity: sev, Techniques: []string{alertTechnique}}
		if err := r.Validate(); err == nil {
			again := r
			again.Techniques, again.HostPatterns = slices.Clone(r.Techniques), slices.Clone(r.HostPatterns)
			if err := again.Validate(); err != nil || !slices.Equal(again.Techniques, r.Techniques) || !slices.Equal(again.HostPatterns, r.HostPatterns) {
				t.Fatalf("Validate is not idempotent: %+v then %+v (%v)", r, again, err)
			}
			r.Matches(a)
		}
		plain := quarry.DetectionRule{Name: "host", HostPatterns: []string{host}}
		if plain.Validate() == nil && len(plain.HostPatterns) == 1 && !slices.ContainsFunc([]rune(host), func(c rune) bool {
			return c == '*' || c == '?' || c == '[' || c == '\\' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0x85 || c == 0xA0 || c >= 0x1680
		}) && !plain.Matches(a) {
			t.Fatalf("rule for host %q does not match it", host)
		}
	})
}
