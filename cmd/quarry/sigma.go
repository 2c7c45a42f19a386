package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/detect"
	"github.com/quarry-dfir/quarry/parse"
	"github.com/quarry-dfir/quarry/sigma"
)

func init() {
	register("sigma", "run Sigma rules over artifact files (evtx, Linux logs, …) and print the events they match", runSigma)
}

// sigmaMatch is one matched event as `quarry sigma --format jsonl` prints it.
type sigmaMatch struct {
	Datetime string   `json:"datetime"`
	Host     string   `json:"host,omitempty"`
	Source   string   `json:"source"`
	File     string   `json:"file"`
	RuleID   string   `json:"rule_id"`
	Title    string   `json:"title"`
	Level    string   `json:"level"`
	Severity string   `json:"severity,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	Message  string   `json:"message"`
}

func runSigma(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quarry sigma", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var dirs []string
	fs.Func("rules", "folder of Sigma rules (*.yml, *.yaml, searched recursively); repeat for several", func(s string) error {
		dirs = append(dirs, s)
		return nil
	})
	builtin := fs.Bool("builtin", false, "also run Quarry's own rules")
	format := fs.String("format", "text", "output: text (one line per match) or jsonl")
	listProblems := fs.Bool("problems", false, "list every rule that could not be loaded, not only the first few")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: quarry sigma --rules DIR [--rules DIR2] [--builtin] [--format text|jsonl] [--problems] FILE...")
		fs.PrintDefaults()
	}
	paths, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if *format != "text" && *format != "jsonl" {
		return fmt.Errorf("sigma: format %q: use text or jsonl", *format)
	}
	if len(dirs) == 0 && !*builtin {
		fs.Usage()
		return errors.New("sigma: give --rules DIR or --builtin")
	}
	if len(paths) == 0 {
		fs.Usage()
		return errors.New("sigma: give at least one file")
	}

	var rules []*sigma.Rule
	var problems []sigma.Problem
	if *builtin {
		rs, ps, err := sigma.ReadFS(sigma.Builtin())
		if err != nil {
			return fmt.Errorf("sigma: %w", err)
		}
		rules, problems = append(rules, rs...), append(problems, ps...)
	}
	if len(dirs) > 0 {
		rs, ps, err := sigma.ReadDirs(dirs...)
		if err != nil {
			return fmt.Errorf("sigma: %w (check the --rules folder)", err)
		}
		rules, problems = append(rules, rs...), append(problems, ps...)
	}
	set, more := sigma.Compile(rules)
	problems = append(problems, more...)
	printProblems(stderr, set.Len(), problems, *listProblems)
	if set.Len() == 0 {
		return errors.New("sigma: no rule could be loaded")
	}

	// Every file is recognised before any is read, so a typo does not cut the output short.
	parsers := make([]parse.Parser, len(paths))
	for i, path := range paths {
		p, err := sniffFile(path)
		if err != nil {
			return err
		}
		parsers[i] = p
	}
	w := bufio.NewWriterSize(stdout, 1<<16)
	matches := 0
	var dets []quarry.Detection
	for i, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("sigma: %w", err)
		}
		emit := func(ev *quarry.Event) error {
			dets = set.AppendMatches(dets[:0], ev)
			for _, d := range dets {
				matches++
				if err := writeMatch(w, *format, path, ev, d); err != nil {
					return err
				}
			}
			return nil
		}
		st, err := parsers[i].Parse(ctx, fileInput(path), bufio.NewReaderSize(f, 1<<16), emit)
		f.Close()
		if st.Skipped > 0 || st.Truncated > 0 {
			fmt.Fprintf(stderr, "warning: %s (%s): %s\n", path, parsers[i].Name, st)
		}
		if err != nil {
			w.Flush()
			return fmt.Errorf("sigma: %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("sigma: write: %w", err)
	}
	fmt.Fprintf(stderr, "%d matches\n", matches)
	return nil
}

// sniffFile picks the timeline parser of a file from its first bytes and path.
func sniffFile(path string) (parse.Parser, error) {
	fh, err := os.Open(path)
	if err != nil {
		return parse.Parser{}, fmt.Errorf("sigma: %w", err)
	}
	defer fh.Close()
	head := make([]byte, parse.HeadSize)
	n, err := io.ReadFull(fh, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return parse.Parser{}, fmt.Errorf("sigma: %w", err)
	}
	p, ok := parse.Sniff(head[:n], fileInput(path))
	if !ok {
		return parse.Parser{}, fmt.Errorf("sigma: %s: unknown file type (quarry parse lists the types it reads)", path)
	}
	return p, nil
}

func writeMatch(w io.Writer, format, path string, ev *quarry.Event, d quarry.Detection) error {
	ts := ev.Timestamp.UTC().Format(time.RFC3339)
	if format == "jsonl" {
		b, err := json.Marshal(sigmaMatch{Datetime: ev.Timestamp.UTC().Format(time.RFC3339Nano), Host: ev.Host, Source: ev.Source,
			File: path, RuleID: d.RuleID, Title: d.Title, Level: d.Level, Severity: detect.DefaultSeverities().Of([]quarry.Detection{d}),
			Tags: d.Tags, Message: ev.Message})
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	_, err := fmt.Fprintf(w, "%s  %s  [%s] %s (%s)  %s\n", ts, cmp.Or(ev.Host, "-"), d.Level, d.Title, d.RuleID, ev.Message)
	return err
}

// printProblems sums up on stderr the rules left out, by kind and reason, and lists the first few
// (or all).
func printProblems(w io.Writer, loaded int, problems []sigma.Problem, all bool) {
	kinds := map[sigma.ProblemKind]int{}
	for _, p := range problems {
		kinds[p.Kind]++
	}
	fmt.Fprintf(w, "sigma: %d rules loaded; %d not: %d unsupported, %d with a logsource not mapped, %d parse errors\n",
		loaded, len(problems), kinds[sigma.ProblemUnsupported], kinds[sigma.ProblemUnmapped], kinds[sigma.ProblemParse])
	if len(problems) == 0 {
		return
	}
	reasons := map[string]int{}
	for _, p := range problems {
		reasons[string(p.Kind)+": "+p.Reason()]++
	}
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(reasons[b]-reasons[a], strings.Compare(a, b)) })
	for _, k := range keys[:min(len(keys), 5)] {
		fmt.Fprintf(w, "  %4d  %s\n", reasons[k], k)
	}
	n := len(problems)
	if !all {
		n = min(n, 10)
	}
	for _, p := range problems[:n] {
		fmt.Fprintf(w, "  %v\n", p)
	}
	if n < len(problems) {
		fmt.Fprintf(w, "  … %d more (--problems lists all)\n", len(problems)-n)
	}
}
