package defendersim

import (
	"path/filepath"
	"testing"

	"github.com/quarry-dfir/quarry/evtx"
)

// TestWindowsEventLogs: a compromised Windows device's Security log, read with Quarry's parser,
// holds the brute force of its story: one 4625 from the attacker's address per failed attempt.
func TestWindowsEventLogs(t *testing.T) {
	s := MustStart(t, Options{Seed: 3, Machines: 200, TimeScale: 600})
	var checked int
	for _, d := range s.devices {
		if d.host.OS != "windows" || !d.host.Compromised || checked == 3 {
			continue
		}
		story, _ := s.Story(d.m.ID)
		root, err := s.DeviceRoot(d.m.ID)
		if err != nil {
			t.Fatal(err)
		}
		r, err := evtx.Open(filepath.Join(root, "C/Windows/System32/winevt/Logs/Security.evtx"))
		if err != nil {
			t.Fatal(err)
		}
		records, failures := 0, 0
		for rec, err := range r.Records(t.Context()) {
			if err != nil {
				t.Fatalf("%s Security.evtx: %v", d.m.ComputerDNSName, err)
			}
			records++
			ev, err := rec.Event()
			if err != nil {
				t.Fatal(err)
			}
			if ev.EventID != 4625 {
				continue
			}
			for _, f := range ev.Data {
				if f.Name == "IpAddress" && f.Value == story.AttackerIP {
					failures++
				}
			}
		}
		r.Close()
		t.Logf("%s (%s): %d records, %d failed logons from %s", d.m.ComputerDNSName, story.Access, records, failures, story.AttackerIP)
		if story.Failures == 0 {
			continue // not a brute force; look at another
		}
		if records < 100 || failures != story.Failures {
			t.Errorf("%s (%s): %d records, %d failed logons from %s, want %d", d.m.ComputerDNSName, story.Access, records, failures, story.AttackerIP, story.Failures)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("the emulator has no compromised Windows device")
	}
}
