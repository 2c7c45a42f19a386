package collector_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/collector"
	"github.com/quarry-dfir/quarry/simhost"
)

var anchor = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// simTree writes a simhost tree for os ("windows", "linux", "macos") into a temp folder.
func simTree(tb testing.TB, goos string) string {
	tb.Helper()
	hosts := map[string]simhost.Host{
		"windows": {Name: "ws-fin-012", OS: "windows", OSVersion: "Windows 11 23H2", Seed: 3, Compromised: true, Anchor: anchor},
		"linux":   {Name: "web-03", OS: "linux", OSVersion: "Ubuntu 22.04", Seed: 7, Compromised: true, Anchor: anchor},
		"macos":   {Name: "mbp-alice", OS: "macos", OSVersion: "macOS 14", Seed: 4, Compromised: true, Anchor: anchor},
	}
	root := tb.TempDir()
	if _, err := simhost.Generate(root, hosts[goos]); err != nil {
		tb.Fatal(err)
	}
	return root
}

// writeFiles writes slash-path → content files under root.
func writeFiles(tb testing.TB, root string, files map[string]string) {
	tb.Helper()
	for rel, data := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// collect runs Collect into memory and opens the result with the package reader.
func collect(tb testing.TB, opts collector.Options) (*collector.Result, *collector.Package) {
	tb.Helper()
	var buf bytes.Buffer
	res, err := collector.Collect(context.Background(), &buf, opts)
	if err != nil {
		tb.Fatalf("Collect: %v", err)
	}
	if int64(buf.Len()) != res.Size {
		tb.Fatalf("Result.Size = %d, wrote %d", res.Size, buf.Len())
	}
	pkg, err := collector.OpenPackage(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		tb.Fatalf("OpenPackage: %v", err)
	}
	if len(pkg.Problems) > 0 {
		tb.Fatalf("OpenPackage problems on our own package: %+v", pkg.Problems)
	}
	return res, pkg
}

func collectedPaths(m *collector.Manifest) map[string]string {
	out := map[string]string{}
	for _, f := range m.Files {
		out[f.Path] = f.Target
	}
	return out
}

func skipReasons(m *collector.Manifest) map[string]string {
	out := map[string]string{}
	for _, s := range m.Skipped {
		out[s.Path] = s.Reason
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// stepClock advances by step on every call, so the time budget runs out after a known number of checks.
func stepClock(step time.Duration) func() time.Time {
	now := anchor
	return func() time.Time {
		now = now.Add(step)
		return now
	}
}
