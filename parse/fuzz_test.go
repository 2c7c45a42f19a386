package parse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
)

// checkEvents runs p on data and checks what must hold for any input: no panic (the fuzzer catches
// it), no error other than from reading, UTC times, counts that add up.
func checkEvents(t *testing.T, p Parser, in Input, data []byte) {
	t.Helper()
	n := 0
	st, err := p.Parse(context.Background(), in, bytes.NewReader(data), func(ev *quarry.Event) error {
		n++
		if ev.Timestamp.Location() != time.UTC {
			t.Fatalf("%s: timestamp not UTC: %v", p.Name, ev.Timestamp)
		}
		if ev.Source != p.Name {
			t.Fatalf("%s: source %q", p.Name, ev.Source)
		}
		if bytes.ContainsAny([]byte(ev.Message), "\n\r") {
			t.Fatalf("%s: message spans lines: %q", p.Name, ev.Message)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrFormat) {
		t.Fatalf("%s: Parse error %v", p.Name, err)
	}
	if st.Events != n || st.Skipped > st.Records {
		t.Fatalf("%s: stats %+v after %d events", p.Name, st, n)
	}
}

func addSeeds(f *testing.F, files ...string) {
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
}

func FuzzUTMP(f *testing.F) {
	matches, _ := filepath.Glob(filepath.Join(corpusDir, "utmp", "*"))
	addSeeds(f, matches...)
	f.Add(make([]byte, 384))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkEvents(t, utmpParser, Input{HostPath: "/var/log/wtmp"}, data)
		utmpParser.Sniff(data[:min(len(data), HeadSize)], Input{})
	})
}

func FuzzLastlog(f *testing.F) {
	f.Add(buildLastlog(296, binary.BigEndian, map[int][3]any{2: {int64(1709287200), "pts/0", "h"}}, 4))
	f.Add(buildLastlog(292, binary.LittleEndian, map[int][3]any{1: {int64(1709287200), "tty1", ""}}, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkEvents(t, lastlogParser, Input{HostPath: "/var/log/lastlog"}, data)
		lastlogParser.Sniff(data[:min(len(data), HeadSize)], Input{HostPath: "/var/log/lastlog"})
	})
}

// FuzzLineParsers feeds the same bytes to every text parser and to the dispatcher.
func FuzzLineParsers(f *testing.F) {
	for _, tc := range goldenCases {
		if tc.parser != "utmp" && tc.parser != "wtmp" {
			addSeeds(f, tc.file)
		}
	}
	f.Add([]byte("Dec 31 23:59:60.999999999999 h p[99999999999999999999]: x\n\tcont\n"))
	f.Add([]byte("type=X msg=audit(1.2:3): a='b=\"c d=0A"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := Input{Host: "h", Path: "p", ModTime: time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC), TZ: berlin}
		for _, p := range All() {
			if p.Name == "utmp" || p.Name == "wtmp" || p.Name == "btmp" || p.Name == "lastlog" {
				continue
			}
			checkEvents(t, p, in, data)
		}
		Sniff(data, Input{HostPath: "/var/log/x"})
	})
}
