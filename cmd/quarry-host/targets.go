package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/quarry-dfir/quarry/collector"
)

// runTargets lists what the embedded target definitions can collect, so an operator can pick
// --profile, --groups and --include without reading the source.
func runTargets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("targets", stderr)
	goos := fs.String("os", "", "show only targets for this OS: windows, linux or darwin")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("targets takes no arguments")
	}
	switch *goos {
	case "", "windows", "linux", "darwin":
	default:
		return usagef("--os %q: want windows, linux or darwin", *goos)
	}
	ts, err := collector.DefaultTargets()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "Profiles: triage (default) and light collect the targets marked triage; full adds those marked full.")
	fmt.Fprintf(stdout, "Groups (--groups): %s\n\n", strings.Join(ts.Groups(), ", "))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tOS\tPROFILE\tGROUPS\tDESCRIPTION")
	for _, name := range ts.Names() {
		t := ts.Get(name)
		if *goos != "" && !slices.Contains(t.OS, *goos) {
			continue
		}
		profile := t.Profile
		if profile == "" {
			profile = "triage"
		}
		desc, _, _ := strings.Cut(strings.TrimSpace(t.Description), "\n")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, strings.Join(t.OS, ","), profile, strings.Join(t.Groups, ","), desc)
	}
	return tw.Flush()
}
