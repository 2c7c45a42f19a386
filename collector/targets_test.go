package collector_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/quarry-dfir/quarry/collector"
)

// TestTargetsValid loads every embedded target file; LoadTargets validates each target.
func TestTargetsValid(t *testing.T) {
	ts, err := collector.DefaultTargets()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ts.Names() {
		tg := ts.Get(n)
		if tg.MaxSizeBytes() == 0 && len(tg.Paths) > 0 && !tg.List {
			t.Errorf("target %s has no max_size", n)
		}
	}
	for _, goos := range []string{"windows", "linux", "darwin"} {
		for _, prof := range []string{"light", "triage", "full"} {
			sel, err := ts.Select(goos, prof, nil)
			if err != nil || len(sel) == 0 {
				t.Errorf("Select(%s, %s) = %d targets, %v", goos, prof, len(sel), err)
			}
		}
	}
}

func TestLoadTargetsRejects(t *testing.T) {
	good := "  - name: a.b\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: [/x]\n"
	tests := map[string]string{
		"BadName":      "targets:\n  - name: Ab\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: [/x]\n",
		"NoDesc":       "targets:\n  - name: a.c\n    os: [linux]\n    groups: [g]\n    paths: [/x]\n",
		"UnknownOS":    "targets:\n  - name: a.c\n    description: d\n    os: [bsd]\n    groups: [g]\n    paths: [/x]\n",
		"RelativePath": "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: [x/y]\n",
		"DotDot":       "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: [/x/../y]\n",
		"NoDrive":      "targets:\n  - name: a.c\n    description: d\n    os: [windows]\n    groups: [g]\n    paths: ['\\Windows']\n",
		"BadGlob":      "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: ['/x/[']\n",
		"HalfStarStar": "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: ['/x/a**']\n",
		"UnknownUses":  "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    uses: [a.z]\n",
		"Cycle":        "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    uses: [a.d]\n  - name: a.d\n    description: d\n    os: [linux]\n    groups: [g]\n    uses: [a.c]\n",
		"Duplicate":    "targets:\n" + good + good,
		"UnknownField": "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: [/x]\n    glob: [/y]\n",
		"BadSize":      "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: [/x]\n    max_size: lots\n",
		"NoGroups":     "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    paths: [/x]\n",
		"HTTPRef":      "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    paths: [/x]\n    references: [http://x]\n",
		"ListWildcard": "targets:\n  - name: a.c\n    description: d\n    os: [linux]\n    groups: [g]\n    list: true\n    paths: ['/t*/x']\n",
	}
	for name, y := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := collector.LoadTargets(fstest.MapFS{"t/x.yaml": {Data: []byte(y)}}, "t")
			if err == nil {
				t.Fatalf("LoadTargets accepted:\n%s", y)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		ts, err := collector.LoadTargets(fstest.MapFS{"t/x.yaml": {Data: []byte("targets:\n" + good)}}, "t")
		if err != nil || strings.Join(ts.Names(), ",") != "a.b" {
			t.Fatalf("LoadTargets = %v", err)
		}
	})
}

func TestParseSize(t *testing.T) {
	tests := map[string]int64{"512": 512, "10KB": 10 << 10, "10MB": 10 << 20, "4 GB": 4 << 30, "1g": 1 << 30}
	for in, want := range tests {
		if got, err := collector.ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "99999999999TB"} {
		if _, err := collector.ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}
