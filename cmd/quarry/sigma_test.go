package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSigmaCommand(t *testing.T) {
	ctx := context.Background()
	const ruleID = "d4f1a2b3-7c8e-4d5f-b6a9-1e0c2d3f4e5b"
	wmi := parseCorpus(t, "sigma/regression_data/rules/windows/builtin/wmi/win_wmi_activity_nteventlogfile_cleareventlog/"+ruleID+".evtx")
	rules := parseCorpus(t, "sigma/rules/windows/builtin/wmi")

	t.Run("Text", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"sigma", "--rules", rules, wmi}, &out, &errOut); err != nil {
			t.Fatalf("sigma: %v (stderr %s)", err, errOut.String())
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != 1 {
			t.Fatalf("sigma printed %d lines, want 1 match:\n%s", len(lines), out.String())
		}
		for _, want := range []string{ruleID, "Failed Event Log Clear Via WMI NTEventLogFile ClearEventLog", "[", "WMI"} {
			if !strings.Contains(lines[0], want) {
				t.Errorf("match line %q lacks %q", lines[0], want)
			}
		}
		if !strings.Contains(errOut.String(), "2 rules loaded") || !strings.Contains(errOut.String(), "1 matches") {
			t.Errorf("stderr %q does not sum up the load and the matches", errOut.String())
		}
	})
	t.Run("JSONLinesBuiltin", func(t *testing.T) {
		var out, errOut bytes.Buffer
		// Flags after the file name are accepted too; the builtin rules load alongside.
		if err := run(ctx, []string{"sigma", wmi, "--rules", rules, "--builtin", "--format", "jsonl"}, &out, &errOut); err != nil {
			t.Fatalf("sigma: %v (stderr %s)", err, errOut.String())
		}
		var m sigmaMatch
		if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &m); err != nil {
			t.Fatalf("output %q is not one JSON match: %v", out.String(), err)
		}
		if m.RuleID != ruleID || m.Source != "evtx" || m.Level == "" || m.Datetime == "" || m.Message == "" {
			t.Errorf("match = %+v", m)
		}
	})
	t.Run("Problems", func(t *testing.T) {
		dir := t.TempDir()
		bad := "title: Aggregation\nid: a1\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4625}\n  condition: sel | count() by IpAddress > 10\n"
		if err := os.WriteFile(filepath.Join(dir, "agg.yml"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"sigma", "--rules", dir, "--builtin", wmi}, &out, &errOut); err != nil {
			t.Fatalf("sigma: %v", err)
		}
		if !strings.Contains(errOut.String(), "1 unsupported") || !strings.Contains(errOut.String(), "agg.yml") ||
			!strings.Contains(errOut.String(), "aggregation") {
			t.Errorf("stderr %q does not report the unsupported rule with its file and reason", errOut.String())
		}
	})
	t.Run("Errors", func(t *testing.T) {
		for name, args := range map[string][]string{
			"NoRules":     {"sigma", wmi},
			"NoFiles":     {"sigma", "--builtin"},
			"MissingDir":  {"sigma", "--rules", filepath.Join(t.TempDir(), "nope"), wmi},
			"BadFormat":   {"sigma", "--builtin", "--format", "xml", wmi},
			"MissingFile": {"sigma", "--builtin", filepath.Join(t.TempDir(), "nope.evtx")},
		} {
			var out, errOut bytes.Buffer
			if err := run(ctx, args, &out, &errOut); err == nil {
				t.Errorf("%s: run(%q) succeeded", name, args)
			}
		}
	})
}
