package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/evtx"
	"github.com/quarry-dfir/quarry/parse"
)

func init() {
	register("parse", "parse artifact files (evtx, Linux logs, login records, histories, …) and print their events", runParse)
	// The timeline parsers: their events print as timeline rows (design.md, Evidence and processing).
	for _, p := range parse.All() {
		if p.Name == "evtx" {
			// EVTX keeps its own row (evtx_dump's layout by default) and gains the timeline's.
			t := &artifactTypes[0]
			t.formats = append(t.formats, "timeline", "csv")
			raw := t.parse
			t.parse = func(ctx context.Context, path, format string, recovery bool, stdout, stderr io.Writer) error {
				switch format {
				case "timeline":
					return parseTimeline(ctx, p, path, "jsonl", stdout, stderr)
				case "csv":
					return parseTimeline(ctx, p, path, "csv", stdout, stderr)
				}
				return raw(ctx, path, format, recovery, stdout, stderr)
			}
			continue
		}
		artifactTypes = append(artifactTypes, artifactType{
			name:    p.Name,
			sniff:   func(head []byte, in parse.Input) bool { return p.Sniff(head, in) },
			formats: []string{"jsonl", "csv"},
			parse: func(ctx context.Context, path, format string, _ bool, stdout, stderr io.Writer) error {
				return parseTimeline(ctx, p, path, format, stdout, stderr)
			},
		})
	}
}

// artifactType is one file type `quarry parse` knows: how to recognise it
// from its first bytes and how to print it. Later artifact parsers add a row.
type artifactType struct {
	name    string
	sniff   func(head []byte, in parse.Input) bool
	formats []string // first is the default
	parse   func(ctx context.Context, path, format string, recovery bool, stdout, stderr io.Writer) error
}

var artifactTypes = []artifactType{
	{
		name:    "evtx",
		sniff:   func(head []byte, _ parse.Input) bool { return bytes.HasPrefix(head, []byte("ElfFile\x00")) },
		formats: []string{"jsonl", "xml"},
		parse:   parseEVTX,
	},
}

func runParse(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quarry parse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	names := []string{"auto"}
	for _, t := range artifactTypes {
		names = append(names, t.name)
	}
	typ := fs.String("type", "auto", "artifact type: "+strings.Join(names, ", ")+" (auto recognises the file by its content and path)")
	format := fs.String("format", "", "output format: jsonl (one event per line: evtx in the layout of evtx_dump, other types as timeline rows), xml (evtx), timeline (evtx as timeline rows) or csv (timeline rows); default jsonl")
	recov := fs.Bool("recover", false, "also recover records that would be skipped (evtx: chunk slack, chunks failing their checksums, a truncated last chunk)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: quarry parse [--type auto|"+strings.Join(names[1:], "|")+"] [--format jsonl|xml|timeline|csv] [--recover] FILE...")
		fs.PrintDefaults()
	}
	paths, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if len(paths) == 0 {
		fs.Usage()
		return errors.New("parse: give at least one file")
	}
	// Every file is checked before any is printed, so a typo does not cut the output short.
	types := make([]*artifactType, len(paths))
	for i, path := range paths {
		t, err := pickType(path, *typ)
		if err != nil {
			return err
		}
		f := cmp.Or(*format, t.formats[0])
		if !slices.Contains(t.formats, f) {
			return fmt.Errorf("parse: format %q is not available for %s (use %s)", f, t.name, strings.Join(t.formats, ", "))
		}
		types[i] = t
	}
	for i, path := range paths {
		if err := types[i].parse(ctx, path, cmp.Or(*format, types[i].formats[0]), *recov, stdout, stderr); err != nil {
			return err
		}
	}
	return nil
}

func pickType(path, name string) (*artifactType, error) {
	if name != "auto" {
		for i := range artifactTypes {
			if artifactTypes[i].name == name {
				return &artifactTypes[i], nil
			}
		}
		return nil, fmt.Errorf("parse: unknown type %q", name)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	defer fh.Close()
	head := make([]byte, parse.HeadSize)
	n, err := io.ReadFull(fh, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %w", err)
	}
	in := fileInput(path)
	// EVTX first: its signature is certain; the timeline parsers in their own order after it.
	if artifactTypes[0].sniff(head[:n], in) {
		return &artifactTypes[0], nil
	}
	if p, ok := parse.Sniff(head[:n], in); ok {
		for i := range artifactTypes {
			if artifactTypes[i].name == p.Name {
				return &artifactTypes[i], nil
			}
		}
	}
	return nil, fmt.Errorf("parse: %s: unknown file type (give --type)", path)
}

// parseEVTX prints every record; chunks and records that cannot be read are
// reported on stderr and skipped.
func parseEVTX(ctx context.Context, path, format string, recovery bool, stdout, stderr io.Writer) error {
	// The live heap is a few chunks whatever the file size, so the default
	// GC target collects very often; a larger one costs a few MB and saves
	// about a fifth of the CPU time. The first collection drops what the
	// program's start left (tens of MB), which the larger target would
	// otherwise multiply.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	opts := []evtx.Option{evtx.WithRecovery(recovery)}
	if format == "jsonl" {
		opts = append(opts, evtx.WithJSON())
	}
	r, err := evtx.Open(path, opts...)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	defer r.Close()
	w := bufio.NewWriterSize(stdout, 1<<16)
	var buf []byte
	for rec, err := range r.Records(ctx) {
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "warning: %s: %v\n", path, err)
			continue
		}
		buf = buf[:0]
		if format == "xml" {
			buf = rec.AppendXML(buf)
		} else {
			buf = rec.AppendJSON(buf)
		}
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("parse: write: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("parse: write: %w", err)
	}
	return nil
}

// fileInput describes a file on this machine to the timeline parsers: its path stands for the
// host path (a copy of /var/log/auth.log keeps its name), its modification time anchors
// years and history files.
func fileInput(path string) parse.Input {
	in := parse.Input{Path: filepath.ToSlash(path), HostPath: path}
	if fi, err := os.Stat(path); err == nil {
		in.ModTime = fi.ModTime().UTC()
	}
	if abs, err := filepath.Abs(path); err == nil {
		in.HostPath = abs
	}
	return in
}

// parseTimeline prints a timeline parser's events, as JSON lines with Timesketch's fields
// (message, datetime, timestamp_desc, timestamp in microseconds) plus ours, or as CSV; what it
// skipped is summed up on stderr.
func parseTimeline(ctx context.Context, p parse.Parser, path, format string, stdout, stderr io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(stdout, 1<<16)
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(w)
		cw.Write([]string{"datetime", "timestamp_desc", "source", "host", "user", "message", "path", "fields"})
	}
	emit := func(ev *quarry.Event) error {
		row := timelineRow(ev)
		if cw != nil {
			fields, _ := json.Marshal(row.Fields)
			return cw.Write([]string{row.Datetime, row.TimestampDesc, row.Source, row.Host, row.User, row.Message, row.Path, string(fields)})
		}
		b, err := json.Marshal(row)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	st, err := p.Parse(ctx, fileInput(path), bufio.NewReaderSize(f, 1<<16), emit)
	if cw != nil {
		cw.Flush()
		err = cmp.Or(err, cw.Error())
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if st.Skipped > 0 || st.Truncated > 0 {
		fmt.Fprintf(stderr, "warning: %s (%s): %s\n", path, p.Name, st)
	}
	if err != nil {
		return fmt.Errorf("parse: %s: %w", path, err)
	}
	return nil
}

// timelineEvent is a timeline row as `quarry parse` and the exports print it.
type timelineEvent struct {
	Message       string         `json:"message"`
	Datetime      string         `json:"datetime"`
	Timestamp     int64          `json:"timestamp"` // microseconds since 1970, as Timesketch wants
	TimestampDesc string         `json:"timestamp_desc"`
	Source        string         `json:"source"`
	Host          string         `json:"host,omitempty"`
	User          string         `json:"user,omitempty"`
	Path          string         `json:"path,omitempty"`
	Fields        map[string]any `json:"fields,omitempty"`
}

func timelineRow(ev *quarry.Event) timelineEvent {
	return timelineEvent{Message: ev.Message, Datetime: ev.Timestamp.UTC().Format(time.RFC3339Nano), Timestamp: ev.Timestamp.UnixMicro(),
		TimestampDesc: ev.TimestampDesc, Source: ev.Source, Host: ev.Host, User: ev.User, Path: ev.Path, Fields: ev.Fields}
}

// parseArgs parses a command's flags, which may stand before and after its file names, and
// returns the names.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return paths, nil
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
