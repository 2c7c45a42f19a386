package parse

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// collectedAt is the collection time the live-state golden files are read with.
var collectedAt = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// TestLiveStateGolden checks the live-state documents against their golden output. Read against
// the inputs: processes.json has 5 elements, 2 with start times (events at them), kthreadd without
// one (an event at the collection time), a pid that is a string and a negative pid (skipped);
// network.json has 4 sockets, the last with port 70000 (skipped); users.json has alice with a login
// time, Administrator without one (collection time) and a session without a name (skipped); the
// error document is one skipped record with the collector's reason.
func TestLiveStateGolden(t *testing.T) {
	cases := []struct{ name, file, path string }{
		{"live_processes", "testdata/live/processes.json", "live/processes.json"},
		{"live_network", "testdata/live/network.json", "live/network.json"},
		{"live_users", "testdata/live/users.json", "live/users.json"},
		{"live_error", "testdata/live/error/users.json", "live/users.json"},
	}
	p, ok := Lookup("livestate")
	if !ok {
		t.Fatal(`Lookup("livestate") failed`)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			in := Input{Path: tc.path, Host: "web-03", Collected: collectedAt}
			if got, ok := Sniff(data[:min(len(data), HeadSize)], in); !ok || got.Name != "livestate" {
				t.Errorf("Sniff(%s) = %q, %v; want livestate", tc.path, got.Name, ok)
			}
			evs, st := runParser(t, p, in, data)
			checkGolden(t, tc.name, goldenLines(t, evs, st))
		})
	}
}

func TestLiveStateSniff(t *testing.T) {
	tests := []struct {
		path, head string
		want       bool
	}{
		{"live/processes.json", "[\n {", true},
		{"live/network.json", `"livestate: network: not supported"`, true},
		{"files/var/log/processes.json", "[", false}, // a file collected from the host, not live state
		{"live/other.json", "[", false},
		{"live/users.json", "{}", false},
	}
	for _, tc := range tests {
		if got := livestateParser.Sniff([]byte(tc.head), Input{Path: tc.path}); got != tc.want {
			t.Errorf("Sniff(%s, %q) = %v, want %v", tc.path, tc.head, got, tc.want)
		}
	}
}

func FuzzLiveState(f *testing.F) {
	matches, _ := filepath.Glob("testdata/live/*.json")
	addSeeds(f, matches...)
	f.Add([]byte(`[{"pid":1,"start_time":"bad"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range []string{"live/processes.json", "live/network.json", "live/users.json"} {
			checkEvents(t, livestateParser, Input{Path: p, Collected: collectedAt}, data)
		}
	})
}
