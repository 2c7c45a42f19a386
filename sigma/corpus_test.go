package sigma

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/parse"
)

type regressionInfo struct {
	RuleMetadata []struct {
		ID    string `yaml:"id"`
		Title string `yaml:"title"`
	} `yaml:"rule_metadata"`
	Tests []struct {
		Name       string `yaml:"name"`
		Type       string `yaml:"type"`
		MatchCount int    `yaml:"match_count"`
		Path       string `yaml:"path"`
	} `yaml:"regression_tests_info"`
}

// parseEVTXFile reads an event log through the parse package, as processing does.
func parseEVTXFile(t testing.TB, path string) []*quarry.Event {
	t.Helper()
	p, ok := parse.Lookup("evtx")
	if !ok {
		t.Fatal("parse: no evtx parser")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []*quarry.Event
	if _, err := p.Parse(context.Background(), parse.Input{Path: filepath.Base(path)}, f, func(ev *quarry.Event) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return evs
}

// TestRegressionData runs each rule of SigmaHQ's regression data on its event log: the rule must
// fire on at least match_count events. Rules that are not in the corpus (rules-emerging-threats)
// and tests on logs other than EVTX are counted, not failed.
func TestRegressionData(t *testing.T) {
	dir := corpusDir(t)
	rules, _, err := ReadDirs(filepath.Join(dir, "rules"))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*Rule{}
	for _, r := range rules {
		byID[r.ID] = r
	}
	var infos []string
	err = filepath.WalkDir(filepath.Join(dir, "regression_data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "info.yml" {
			infos = append(infos, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(infos)
	var cases, pass, exact, notInCorpus, notEVTX int
	for _, info := range infos {
		data, err := os.ReadFile(info)
		if err != nil {
			t.Fatal(err)
		}
		var ri regressionInfo
		if err := yaml.Unmarshal(data, &ri); err != nil {
			t.Fatalf("%s: %v", info, err)
		}
		for _, meta := range ri.RuleMetadata {
			for _, tc := range ri.Tests {
				cases++
				r := byID[meta.ID]
				if r == nil {
					notInCorpus++
					t.Logf("rule not in corpus: %s %q (%s)", meta.ID, meta.Title, filepath.Dir(info))
					continue
				}
				if tc.Type != "evtx" {
					notEVTX++
					t.Logf("not an EVTX test: %s %q type %s", meta.ID, meta.Title, tc.Type)
					continue
				}
				t.Run(meta.ID, func(t *testing.T) {
					rs, problems := Compile([]*Rule{r})
					if len(problems) > 0 {
						t.Fatalf("rule %s does not load: %v", r.Path, problems[0])
					}
					evs := parseEVTXFile(t, filepath.Join(dir, filepath.FromSlash(tc.Path)))
					matched, naive := 0, 0
					for _, ev := range evs {
						if len(rs.Match(ev)) > 0 {
							matched++
						}
						if len(rs.MatchNaive(ev)) > 0 {
							naive++
						}
					}
					want := max(tc.MatchCount, 1)
					if matched != naive {
						t.Errorf("%s: Match fired on %d events, MatchNaive on %d", r.Title, matched, naive)
					}
					if matched < want {
						t.Errorf("%s (%s): fired on %d of %d events, want at least %d", r.Title, r.Path, matched, len(evs), want)
						return
					}
					pass++
					if matched == want {
						exact++
					} else {
						t.Logf("%s: fired on %d events, match_count %d", r.Title, matched, want)
					}
				})
			}
		}
	}
	t.Logf("regression cases %d: passed %d (%d with exactly match_count), rule not in corpus %d, not EVTX %d, failed %d",
		cases, pass, exact, notInCorpus, notEVTX, cases-pass-notInCorpus-notEVTX)
	if !strings.Contains(dir, "corpus") || cases == 0 {
		t.Fatal("no regression cases found")
	}
}

// TestRoutedEqualsNaive loads every Windows rule and checks, on every event of the regression
// data, that routing and the prefilter find exactly what evaluating every rule finds.
func TestRoutedEqualsNaive(t *testing.T) {
	dir := corpusDir(t)
	rs, _, err := LoadDirs(filepath.Join(dir, "rules", "windows"))
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	filepath.WalkDir(filepath.Join(dir, "regression_data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".evtx") {
			logs = append(logs, p)
		}
		return err
	})
	// A real System log too, when the corpus has it: thousands of ordinary events.
	if _, err := os.Stat(filepath.Join(dir, "..", "plaso", "evtx", "System.evtx")); err == nil {
		logs = append(logs, filepath.Join(dir, "..", "plaso", "evtx", "System.evtx"))
	}
	events, detections := 0, 0
	for _, p := range logs {
		for _, ev := range parseEVTXFile(t, p) {
			events++
			routed, naive := ids(rs.Match(ev)), ids(rs.MatchNaive(ev))
			detections += len(routed)
			if !slices.Equal(routed, naive) {
				t.Errorf("%s: %s: Match found %v, MatchNaive %v", filepath.Base(p), ev.Message, routed, naive)
			}
		}
	}
	t.Logf("%d logs, %d events, %d detections: routed and naive agree", len(logs), events, detections)
	if events == 0 {
		t.Fatal("no events in the regression data")
	}
}

func ids(dets []quarry.Detection) []string {
	out := make([]string, len(dets))
	for i, d := range dets {
		out[i] = d.RuleID
	}
	slices.Sort(out)
	return out
}
