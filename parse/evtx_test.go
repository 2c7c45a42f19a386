package parse

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry"
)

// TestEVTX: a corpus System log becomes one timeline row per record with the System fields and
// the event data as typed fields, read in place from a file or spooled from a stream.
func TestEVTX(t *testing.T) {
	path := filepath.Join(corpusDir, "evtx", "System.evtx")
	needCorpus(t, path)
	collect := func(open func() any) []*quarry.Event {
		var got []*quarry.Event
		var st Stats
		var err error
		switch r := open().(type) {
		case *os.File:
			defer r.Close()
			st, err = evtxParser.Parse(context.Background(), Input{Path: "C/Windows/System32/winevt/Logs/System.evtx"}, r, func(ev *quarry.Event) error { got = append(got, ev); return nil })
		case *bytes.Reader:
			st, err = evtxParser.Parse(context.Background(), Input{Path: "System.evtx", Host: "given"}, r, func(ev *quarry.Event) error { got = append(got, ev); return nil })
		}
		if err != nil || st.Events != len(got) || st.Skipped != 0 {
			t.Fatalf("Parse = %s, %v", st, err)
		}
		return got
	}
	events := collect(func() any {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return f
	})
	if len(events) != 5009 {
		t.Fatalf("%d events, want the file's 5009 records", len(events))
	}
	first := events[0]
	if first.Source != "evtx" || first.Host != "37L4247F27-26" || first.Fields["EventID"] != int64(7036) ||
		first.Fields["param1"] != "Windows Event Log" || first.Fields["param2"] != "stopped" || first.Fields["Channel"] != "System" ||
		!strings.Contains(first.Message, "Service Control Manager 7036") || !strings.Contains(first.Message, "Windows Event Log stopped") ||
		first.Timestamp.Format("2006-01-02T15:04:05") != "2010-11-21T03:55:59" || first.Path != "C/Windows/System32/winevt/Logs/System.evtx" {
		t.Errorf("first event = %+v", first)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	spooled := collect(func() any { return bytes.NewReader(b) })
	if len(spooled) != len(events) || spooled[0].Host != "given" || spooled[100].Message != events[100].Message {
		t.Errorf("from a stream: %d events, first host %q", len(spooled), spooled[0].Host)
	}
	if p, ok := Sniff(b[:HeadSize], Input{Path: "x"}); !ok || p.Name != "evtx" {
		t.Errorf("Sniff = %v, %v", p.Name, ok)
	}
}
