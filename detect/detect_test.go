package detect

import (
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
)

func levels(ls ...string) []quarry.Detection {
	var out []quarry.Detection
	for _, l := range ls {
		out = append(out, quarry.Detection{Level: l})
	}
	return out
}

func TestSeverities(t *testing.T) {
	def := DefaultSeverities()
	for _, tc := range []struct {
		dets []quarry.Detection
		want string
	}{
		{nil, ""},
		{levels("low", "informational"), ""},
		{levels("medium"), quarry.SeveritySuspicious},
		{levels("low", "HIGH", "medium"), quarry.SeverityAlarm},
		{levels("critical"), quarry.SeverityAlarm},
	} {
		if got := def.Of(tc.dets); got != tc.want {
			t.Errorf("Of(%v) = %q, want %q", tc.dets, got, tc.want)
		}
	}
	m, err := ParseSeverities(" critical=alarm, high=suspicious,medium=none ,low=suspicious")
	if err != nil {
		t.Fatal(err)
	}
	if m.Of(levels("high")) != quarry.SeveritySuspicious || m.Of(levels("medium")) != "" || m.Of(levels("low", "critical")) != quarry.SeverityAlarm {
		t.Errorf("parsed mapping = %v", m)
	}
	for _, bad := range []string{"high", "severe=alarm", "high=red"} {
		if _, err := ParseSeverities(bad); err == nil {
			t.Errorf("ParseSeverities(%q) accepted it", bad)
		}
	}
	// Raise never lowers.
	ev := &quarry.Event{Severity: quarry.SeverityAlarm, Detections: levels("medium")}
	def.Raise(ev)
	if ev.Severity != quarry.SeverityAlarm {
		t.Errorf("Raise lowered the severity to %q", ev.Severity)
	}
}

// TestSigmaBuiltin: the built-in rules load without problems, and the detector tags a Security
// 4720 (a user added) as their rule says and leaves an ordinary logon alone.
func TestSigmaBuiltin(t *testing.T) {
	d, problems, err := LoadSigma(true, nil, DefaultSeverities())
	if err != nil || len(problems) > 0 || d.Rules.Len() == 0 {
		t.Fatalf("LoadSigma = %d rules, %v, %v", d.Rules.Len(), problems, err)
	}
	added := &quarry.Event{Source: "evtx", Timestamp: time.Now(), Message: "user added",
		Fields: map[string]any{"EventID": int64(4720), "Channel": "Security", "Provider": "Microsoft-Windows-Security-Auditing", "TargetUserName": "backdoor"}}
	d.Detect(added)
	if len(added.Detections) != 1 || added.Detections[0].Kind != "sigma" || added.Severity != quarry.SeveritySuspicious {
		t.Errorf("4720: severity %q, detections %+v", added.Severity, added.Detections)
	}
	logon := &quarry.Event{Source: "evtx", Timestamp: time.Now(), Message: "logon",
		Fields: map[string]any{"EventID": int64(4624), "Channel": "Security", "TargetUserName": "alice"}}
	d.Detect(logon)
	if len(logon.Detections) != 0 || logon.Severity != "" {
		t.Errorf("4624 tagged: %+v", logon.Detections)
	}
	if _, _, err := LoadSigma(false, []string{t.TempDir() + "/missing"}, DefaultSeverities()); err == nil {
		t.Error("LoadSigma with a missing folder did not fail")
	}
}
