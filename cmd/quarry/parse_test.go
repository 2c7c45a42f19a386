package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseCorpus finds shared/corpus/sub above the working directory (the
// repository's sibling folder). Under CI=true a missing corpus fails.
func parseCorpus(t *testing.T, sub string) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		p := filepath.Join(dir, "shared", "corpus", sub)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("corpus shared/corpus/%s not found", sub)
	}
	t.Skipf("corpus shared/corpus/%s not found", sub)
	return ""
}

func TestParseCommand(t *testing.T) {
	ctx := context.Background()
	wmi := parseCorpus(t, "sigma/regression_data/rules/windows/builtin/wmi/win_wmi_activity_nteventlogfile_cleareventlog/d4f1a2b3-7c8e-4d5f-b6a9-1e0c2d3f4e5b.evtx")
	truncated := parseCorpus(t, "plaso/evtx/System2.evtx")

	t.Run("JSONLines", func(t *testing.T) {
		var out, errOut bytes.Buffer
		// Flags after the file name are accepted too.
		if err := run(ctx, []string{"parse", wmi, "--format", "jsonl"}, &out, &errOut); err != nil {
			t.Fatalf("parse: %v (stderr %s)", err, errOut.String())
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != 1 {
			t.Fatalf("parse printed %d lines, want 1 (one record)", len(lines))
		}
		var got, want any
		if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
			t.Fatalf("line is not JSON: %v", err)
		}
		ref, err := os.ReadFile(strings.TrimSuffix(wmi, ".evtx") + ".json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parse output differs from the evtx_dump reference:\n got %s\nwant %s", lines[0], ref)
		}
		if errOut.Len() != 0 {
			t.Errorf("stderr = %q, want nothing", errOut.String())
		}
	})

	t.Run("Damaged", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"parse", "--type", "evtx", truncated}, &out, &errOut); err != nil {
			t.Fatalf("parse of a truncated file failed: %v", err)
		}
		if n := strings.Count(out.String(), "\n"); n != 194 {
			t.Errorf("printed %d records, want 194 (what evtxexport reads)", n)
		}
		if !strings.Contains(errOut.String(), "warning:") || !strings.Contains(errOut.String(), "chunk 2") {
			t.Errorf("stderr = %q, want a warning about chunk 2", errOut.String())
		}
		out.Reset()
		errOut.Reset()
		if err := run(ctx, []string{"parse", "--recover", truncated}, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out.String(), "\n"); n != 283 {
			t.Errorf("with --recover printed %d records, want 283 (194 + 89 whole records of the cut chunk)", n)
		}
	})

	t.Run("XML", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"parse", "--format", "xml", wmi}, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), `<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>`) ||
			!strings.Contains(out.String(), "<ClientProcessId>25920</ClientProcessId>") {
			t.Errorf("XML output = %.300s", out.String())
		}
	})

	t.Run("Errors", func(t *testing.T) {
		junk := filepath.Join(t.TempDir(), "junk.bin")
		os.WriteFile(junk, []byte("not an event log"), 0o600)
		for _, args := range [][]string{
			{"parse"},
			{"parse", filepath.Join(t.TempDir(), "missing.evtx")},
			{"parse", junk},
			{"parse", "--type", "evtx", junk},
			{"parse", "--type", "pf", wmi},
			{"parse", "--format", "yaml", wmi},
		} {
			var out, errOut bytes.Buffer
			if err := run(ctx, args, &out, &errOut); err == nil {
				t.Errorf("run(%q) succeeded, want an error", args)
			}
		}
	})
}

// TestParseTimeline: files other than EVTX print as timeline rows, recognised by their content:
// login records, a web log and a shell history, as JSON lines with Timesketch's fields and as
// CSV; several files in one call.
func TestParseTimeline(t *testing.T) {
	dir := parseCorpus(t, "plaso")
	utmp, web := filepath.Join(dir, "utmp", "utmp"), filepath.Join(dir, "apache_access.log")
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"parse", utmp, web}, &out, &errOut); err != nil {
		t.Fatalf("parse: %v %s", err, errOut.String())
	}
	sources := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var row struct {
			Message, Datetime, Source string
			TimestampDesc             string `json:"timestamp_desc"`
			Timestamp                 int64
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		ts, err := time.Parse(time.RFC3339Nano, row.Datetime)
		if err != nil || row.Message == "" || row.TimestampDesc == "" || ts.UnixMicro() != row.Timestamp {
			t.Fatalf("row %q: datetime %v", line, err)
		}
		sources[row.Source]++
	}
	if sources["utmp"] == 0 || sources["access_log"] == 0 || len(sources) != 2 {
		t.Errorf("sources = %v, want utmp and access_log rows", sources)
	}
	out.Reset()
	if err := run(t.Context(), []string{"parse", "--format", "csv", web}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) < 2 || rows[0][0] != "datetime" || rows[1][2] != "access_log" {
		t.Fatalf("csv = %v, %v", rows, err)
	}
	if err := run(t.Context(), []string{"parse", "--format", "xml", web}, &out, &errOut); err == nil {
		t.Error("xml accepted for a web log")
	}
	// EVTX as timeline rows: the System fields and data as fields.
	out.Reset()
	if err := run(t.Context(), []string{"parse", "--format", "timeline", filepath.Join(dir, "evtx", "System.evtx")}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(out.String(), "\n")
	if !strings.Contains(first, `"source":"evtx"`) || !strings.Contains(first, `"EventID":7036`) || strings.Count(out.String(), "\n") != 5009 {
		t.Errorf("evtx timeline: %d lines, first %s", strings.Count(out.String(), "\n"), first)
	}
}
