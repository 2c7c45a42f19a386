package evtxwriter

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/evtx"
	"github.com/quarry-dfir/quarry/evtx/evtxwriter/evtxexporttest"
)

// testEvents returns n deterministic events of several shapes: EventData and UserData, with and without
// qualifiers, correlation and user, and values of every type evtxexport renders unambiguously. Strings
// mix lengths and non-ASCII text so that records of very different sizes straddle chunk boundaries.
func testEvents(n int) []evtx.Event {
	r := rand.New(rand.NewPCG(7, 11))
	words := []string{"alpha", "Ünïcode", "日本語", "x<y>&z", `C:\Windows\System32\cmd.exe`, "", "\"quoted\" 'single'", "tab\there"}
	str := func() string {
		var b strings.Builder
		for i := r.IntN(6); i >= 0; i-- {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		if r.IntN(50) == 0 {
			b.WriteString(strings.Repeat("long-", 2000)) // 10 000 characters: a 20 KB value
		}
		return b.String()
	}
	t0 := time.Date(2024, 2, 29, 23, 59, 58, 100, time.UTC)
	out := make([]evtx.Event, 0, n)
	for i := range n {
		e := evtx.Event{
			Time:         t0.Add(time.Duration(i) * 1234567 * time.Microsecond),
			Provider:     "Microsoft-Windows-Security-Auditing",
			ProviderGUID: "54849625-5478-4994-A5BA-3E3B0328C30D",
			EventID:      uint16(4624 + r.IntN(3)),
			Version:      uint8(r.IntN(3)),
			Level:        uint8(r.IntN(5)),
			Task:         uint16(12544 + r.IntN(10)),
			Opcode:       uint8(r.IntN(2)),
			Keywords:     0x8020000000000000 | uint64(r.IntN(16)),
			ProcessID:    r.Uint32(),
			ThreadID:     r.Uint32(),
			Channel:      "Security",
			Computer:     fmt.Sprintf("WS-%03d.contoso.local", r.IntN(1000)),
			DataKind:     "EventData",
		}
		switch i % 5 {
		case 0:
			e.Data = []evtx.Field{
				{Name: "SubjectUserSid", Value: SID("S-1-5-21-3623811015-3361044348-30300820-" + strconv.Itoa(1000+r.IntN(50)))},
				{Name: "SubjectUserName", Value: str()},
				{Name: "SubjectLogonId", Value: HexInt64(r.Uint64())},
				{Name: "LogonType", Value: uint32(r.IntN(12))},
				{Name: "LogonGuid", Value: GUID(fmt.Sprintf("%08X-%04X-%04X-%04X-%012X", r.Uint32(), r.IntN(65536), r.IntN(65536), r.IntN(65536), r.Uint64()&0xffffffffffff))},
				{Name: "CommandLine", Value: str()},
			}
		case 1:
			e.Provider, e.ProviderGUID, e.EventSourceName = "Service Control Manager", "555908D1-A6D7-4695-8E1E-26931D2012F4", "Service Control Manager"
			e.Channel, e.EventID, e.HasQualifiers, e.Qualifiers = "System", 7045, true, 16384
			e.Data = []evtx.Field{{Name: "ServiceName", Value: str()}, {Name: "ImagePath", Value: str()}, {Name: "", Value: "unnamed"}}
		case 2:
			e.Provider, e.ProviderGUID, e.EventID = "Microsoft-Windows-Eventlog", "FC65DDD8-D6EF-4962-83D5-6E5CFE9CE148", 1102
			e.DataKind, e.UserDataName = "UserData", "LogFileCleared"
			e.UserID = "S-1-5-21-1-2-3-500"
			e.Data = []evtx.Field{{Name: "SubjectUserSid", Value: SID("S-1-5-18")}, {Name: "SubjectUserName", Value: str()}}
		case 3:
			e.ActivityID = "11111111-2222-3333-4444-555555555555"
			if r.IntN(2) == 0 {
				e.RelatedActivityID = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"
			}
			e.Data = []evtx.Field{
				{Name: "u8", Value: uint8(r.Uint32())}, {Name: "u16", Value: uint16(r.Uint32())},
				{Name: "u64", Value: r.Uint64()}, {Name: "i16", Value: int16(r.IntN(30000))},
				{Name: "i32", Value: int32(r.IntN(1 << 30))}, {Name: "i64", Value: int64(r.IntN(1 << 60))},
				{Name: "h32", Value: HexInt32(r.Uint32())}, {Name: "bin", Value: []byte(str())},
				{Name: "ft", Value: t0.Add(time.Duration(r.Int64N(1 << 50)))},
				{Name: "st", Value: SystemTime(t0.Add(time.Duration(r.Int64N(1<<50)) / time.Millisecond * time.Millisecond))},
				{Name: "ok", Value: r.IntN(2) == 0},
			}
		case 4:
			e.DataKind = ""
			if r.IntN(2) == 0 {
				e.DataKind = "EventData" // an empty <EventData/>
			}
		}
		out = append(out, e)
	}
	return out
}

// writeTemp writes events to a file in a test folder and returns its path.
func writeTemp(t *testing.T, events []evtx.Event) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.evtx")
	if err := WriteFile(path, events); err != nil {
		t.Fatal(err)
	}
	return path
}

// rendered is how libevtx prints a value: its own conventions, written out here independently of the
// writer (hexadecimal integers zero-padded, GUIDs upper case in braces, binary as upper-case hex,
// FILETIME to 100 ns and SYSTEMTIME to the millisecond).
func rendered(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case HexInt32:
		return fmt.Sprintf("0x%08x", uint32(x))
	case HexInt64:
		return fmt.Sprintf("0x%016x", uint64(x))
	case GUID:
		return "{" + strings.ToUpper(strings.Trim(string(x), "{}")) + "}"
	case SID:
		return string(x)
	case []byte:
		return strings.ToUpper(hex.EncodeToString(x))
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05.0000000") + "00Z"
	case SystemTime:
		return time.Time(x).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return fmt.Sprint(v)
}

func TestEvtxexportReadsWhatWeWrite(t *testing.T) {
	events := testEvents(3000)
	path := writeTemp(t, events)
	got := evtxexporttest.Run(t, path)
	if len(got) != len(events) {
		t.Fatalf("evtxexport printed %d events, want %d", len(got), len(events))
	}
	for i, e := range events {
		g := got[i]
		s := g.System
		check := func(field, got, want string) {
			t.Helper()
			if got != want {
				t.Errorf("event %d %s = %q, want %q", i, field, got, want)
			}
		}
		check("EventRecordID", s.EventRecordID, strconv.Itoa(i+1))
		check("Provider", s.Provider.Name, e.Provider)
		check("Guid", s.Provider.Guid, rendered(GUID(e.ProviderGUID)))
		check("EventSourceName", s.Provider.EventSourceName, e.EventSourceName)
		check("EventID", s.EventID.Value, strconv.Itoa(int(e.EventID)))
		if e.HasQualifiers {
			check("Qualifiers", s.EventID.Qualifiers, strconv.Itoa(int(e.Qualifiers)))
		} else {
			check("Qualifiers", s.EventID.Qualifiers, "")
		}
		check("Version", s.Version, strconv.Itoa(int(e.Version)))
		check("Level", s.Level, strconv.Itoa(int(e.Level)))
		check("Task", s.Task, strconv.Itoa(int(e.Task)))
		check("Opcode", s.Opcode, strconv.Itoa(int(e.Opcode)))
		check("Keywords", s.Keywords, rendered(HexInt64(e.Keywords)))
		check("TimeCreated", s.TimeCreated.SystemTime, rendered(e.Time))
		if e.ActivityID != "" {
			check("ActivityID", s.Correlation.ActivityID, rendered(GUID(e.ActivityID)))
		}
		if e.RelatedActivityID != "" {
			check("RelatedActivityID", s.Correlation.RelatedActivityID, rendered(GUID(e.RelatedActivityID)))
		}
		check("ProcessID", s.Execution.ProcessID, strconv.FormatUint(uint64(e.ProcessID), 10))
		check("ThreadID", s.Execution.ThreadID, strconv.FormatUint(uint64(e.ThreadID), 10))
		check("Channel", s.Channel, e.Channel)
		check("Computer", s.Computer, e.Computer)
		check("UserID", s.Security.UserID, e.UserID)

		var fields []evtxexporttest.Value
		switch e.DataKind {
		case "EventData":
			if g.EventData == nil {
				t.Errorf("event %d: no EventData", i)
				continue
			}
			fields = g.Data()
		case "UserData":
			if g.UserData == nil {
				t.Errorf("event %d: no UserData", i)
				continue
			}
			check("UserData element", g.UserData.Inner.XMLName.Local, e.UserDataName)
			check("UserData xmlns", g.UserData.Inner.Xmlns, "http://manifests.microsoft.com/win/2004/08/windows/eventlog")
			fields = g.Data()
		default:
			if g.EventData != nil || g.UserData != nil {
				t.Errorf("event %d: data printed for an event without any", i)
			}
		}
		if len(fields) != len(e.Data) {
			t.Errorf("event %d: %d data values, want %d", i, len(fields), len(e.Data))
			continue
		}
		for j, f := range e.Data {
			check("data name", fields[j].Name, f.Name)
			check("data "+f.Name, fields[j].Value, rendered(f.Value))
		}
		if t.Failed() {
			t.FailNow() // one event's diff is enough to debug
		}
	}
}

func TestEvtxexportEmptyFile(t *testing.T) {
	path := writeTemp(t, nil)
	if got := evtxexporttest.Run(t, path); len(got) != 0 {
		t.Fatalf("evtxexport printed %d events from an empty log", len(got))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != fileHeaderSize {
		t.Fatalf("empty log is %d bytes, want just the %d-byte header", len(b), fileHeaderSize)
	}
}

// TestLayout checks what evtxexport does not: header fields, both CRCs of every chunk, record framing,
// the string and template hash tables, and that each shape's template is defined once per chunk.
func TestLayout(t *testing.T) {
	events := testEvents(2000)
	path := writeTemp(t, events)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if string(b[:8]) != "ElfFile\x00" {
		t.Fatalf("file signature %q", b[:8])
	}
	nchunks := int(le.Uint16(b[42:]))
	if want := (len(b) - fileHeaderSize) / chunkSize; nchunks != want || (len(b)-fileHeaderSize)%chunkSize != 0 {
		t.Fatalf("header says %d chunks, file holds %d bytes of chunks", nchunks, len(b)-fileHeaderSize)
	}
	if nchunks < 5 {
		t.Fatalf("only %d chunks: the test needs records crossing chunk boundaries", nchunks)
	}
	for _, c := range []struct {
		name      string
		off, size int
		want      uint64
	}{
		{"first chunk", 8, 8, 0}, {"last chunk", 16, 8, uint64(nchunks - 1)}, {"next record id", 24, 8, uint64(len(events) + 1)},
		{"header size", 32, 4, 128}, {"minor version", 36, 2, 1}, {"major version", 38, 2, 3},
		{"block size", 40, 2, 4096}, {"flags", 120, 4, 0}, {"crc", 124, 4, uint64(crc32.ChecksumIEEE(b[:120]))},
	} {
		var got uint64
		switch c.size {
		case 2:
			got = uint64(le.Uint16(b[c.off:]))
		case 4:
			got = uint64(le.Uint32(b[c.off:]))
		default:
			got = le.Uint64(b[c.off:])
		}
		if got != c.want {
			t.Errorf("file header %s = %d, want %d", c.name, got, c.want)
		}
	}
	nextID := uint64(1)
	for ci := range nchunks {
		c := b[fileHeaderSize+ci*chunkSize:][:chunkSize]
		if string(c[:8]) != "ElfChnk\x00" {
			t.Fatalf("chunk %d signature %q", ci, c[:8])
		}
		free := int(le.Uint32(c[48:]))
		if free > chunkSize-chunkReserve {
			t.Errorf("chunk %d filled to %d: libevtx drops the last record of a chunk with under 4 bytes left", ci, free)
		}
		if crc := crc32.ChecksumIEEE(c[chunkHeaderSize:free]); le.Uint32(c[52:]) != crc {
			t.Errorf("chunk %d records crc %08x, want %08x", ci, le.Uint32(c[52:]), crc)
		}
		crc := crc32.Update(crc32.ChecksumIEEE(c[:120]), crc32.IEEETable, c[128:chunkHeaderSize])
		if le.Uint32(c[124:]) != crc {
			t.Errorf("chunk %d header crc %08x, want %08x", ci, le.Uint32(c[124:]), crc)
		}
		first, last := le.Uint64(c[24:]), le.Uint64(c[32:])
		if first != nextID {
			t.Errorf("chunk %d first id %d, want %d", ci, first, nextID)
		}
		off, lastOff := chunkHeaderSize, 0
		defs := map[uint32]bool{}
		for off < free {
			size := int(le.Uint32(c[off+4:]))
			if le.Uint32(c[off:]) != 0x2a2a || size < 28 || off+size > free || int(le.Uint32(c[off+size-4:])) != size {
				t.Fatalf("chunk %d: bad record framing at %#x", ci, off)
			}
			if size%8 != 0 {
				t.Fatalf("chunk %d: record at %#x is %d bytes, not a multiple of 8 as Windows writes them", ci, off, size)
			}
			if id := le.Uint64(c[off+8:]); id != nextID {
				t.Fatalf("chunk %d: record at %#x has id %d, want %d", ci, off, id, nextID)
			}
			// Fragment header, then the template instance: token, 1, id, definition offset.
			tmpl := le.Uint32(c[off+24+4+6:])
			if int(tmpl) == off+24+4+10 {
				if defs[le.Uint32(c[tmpl+4:])] {
					t.Errorf("chunk %d: template %08x defined twice", ci, le.Uint32(c[tmpl+4:]))
				}
				defs[le.Uint32(c[tmpl+4:])] = true
			} else if int(tmpl) >= off {
				t.Errorf("chunk %d: record at %#x refers to template at %#x, not defined before it", ci, off, tmpl)
			}
			lastOff = off
			off += size
			nextID++
		}
		if last != nextID-1 || int(le.Uint32(c[44:])) != lastOff {
			t.Errorf("chunk %d: last id %d at %#x, want %d at %#x", ci, last, le.Uint32(c[44:]), nextID-1, lastOff)
		}
		// Every template and name reached from the hash tables is a definition with the right hash.
		seen := 0
		for i := range 32 {
			for p := le.Uint32(c[384+4*i:]); p != 0; p = le.Uint32(c[p:]) {
				if !defs[le.Uint32(c[p+4:])] || le.Uint32(c[p+4:])%32 != uint32(i) {
					t.Errorf("chunk %d: template table bucket %d holds %#x", ci, i, p)
				}
				seen++
			}
		}
		if seen != len(defs) {
			t.Errorf("chunk %d: template table lists %d templates, %d defined", ci, seen, len(defs))
		}
		for i := range 64 {
			for p := le.Uint32(c[128+4*i:]); p != 0; p = le.Uint32(c[p:]) {
				if h := le.Uint16(c[p+4:]); h%64 != uint16(i) {
					t.Errorf("chunk %d: name at %#x with hash %d in bucket %d", ci, p, h, i)
				}
			}
		}
	}
	if nextID != uint64(len(events)+1) {
		t.Fatalf("found %d records, wrote %d", nextID-1, len(events))
	}
}

// Hashes stored by Windows itself in the string table of a System.evtx it wrote.
func TestNameHash(t *testing.T) {
	for name, want := range map[string]uint16{"Event": 3258, "System": 21615, "EventRecordID": 838, "xmlns": 4028,
		"Data": 28554, "Correlation": 62114, "RelatedActivityID": 50485, "DriverDescription": 19732} {
		if got := nameHash(name); got != want {
			t.Errorf("nameHash(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestTemplateReuse(t *testing.T) {
	// 100 events of one shape fit in one chunk: one definition, then 99 references.
	e := evtx.Event{Time: time.Unix(1700000000, 0), Provider: "P", EventID: 1, Channel: "C", Computer: "H",
		DataKind: "EventData", Data: []evtx.Field{{Name: "A", Value: "x"}}}
	events := make([]evtx.Event, 100)
	for i := range events {
		events[i] = e
	}
	b, err := os.ReadFile(writeTemp(t, events))
	if err != nil {
		t.Fatal(err)
	}
	c := b[fileHeaderSize:]
	first := binary.LittleEndian.Uint32(c[chunkHeaderSize+4:])
	second := binary.LittleEndian.Uint32(c[chunkHeaderSize+first+4:])
	if second >= first/4 {
		t.Errorf("first record %d bytes, second %d: the template is not reused", first, second)
	}
	if n := bytes.Count(c, []byte("E\x00v\x00e\x00n\x00t\x00D\x00a\x00t\x00a\x00")); n != 1 {
		t.Errorf("the name EventData is written %d times in the chunk, want 1", n)
	}
}

func TestRefusals(t *testing.T) {
	ok := evtx.Event{Time: time.Unix(1700000000, 0), Provider: "P", EventID: 1, Channel: "C", Computer: "H", DataKind: "EventData"}
	with := func(f func(e *evtx.Event)) evtx.Event {
		e := ok
		f(&e)
		return e
	}
	big := strings.Repeat("x", 40000) // 80 000 bytes of UTF-16
	tests := []struct {
		name  string
		event evtx.Event
		want  string
	}{
		{"ZeroTime", with(func(e *evtx.Event) { e.Time = time.Time{} }), "time not set"},
		{"Before1601", with(func(e *evtx.Event) { e.Time = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }), "before 1601"},
		{"ValueTooLong", with(func(e *evtx.Event) { e.Data = []evtx.Field{{Name: "A", Value: big}} }), "more than the 65535"},
		{"RecordTooLarge", with(func(e *evtx.Event) {
			e.Data = []evtx.Field{{Name: "A", Value: big[:30000]}, {Name: "B", Value: big[:30000]}}
		}), "more than the 65016 a chunk holds"},
		{"BadGUID", with(func(e *evtx.Event) { e.ProviderGUID = "not-a-guid" }), "guid"},
		{"BadSID", with(func(e *evtx.Event) { e.UserID = "S-1-x" }), "sid"},
		{"BadDataSID", with(func(e *evtx.Event) { e.Data = []evtx.Field{{Name: "A", Value: SID("X-1-5")}} }), "sid"},
		{"UnsupportedType", with(func(e *evtx.Event) { e.Data = []evtx.Field{{Name: "A", Value: struct{}{}}} }), "unsupported value type"},
		{"BadKind", with(func(e *evtx.Event) { e.DataKind = "Other" }), "data kind"},
		{"DataWithoutKind", with(func(e *evtx.Event) { e.DataKind = ""; e.Data = []evtx.Field{{Name: "A", Value: "x"}} }), "without a data kind"},
		{"BadUserDataName", with(func(e *evtx.Event) { e.DataKind = "UserData"; e.UserDataName = "a b" }), "element name"},
		{"EmptyUserDataField", with(func(e *evtx.Event) {
			e.DataKind, e.UserDataName = "UserData", "X"
			e.Data = []evtx.Field{{Name: "", Value: "x"}}
		}), "empty element name"},
		{"StringArrayNUL", with(func(e *evtx.Event) { e.Data = []evtx.Field{{Name: "A", Value: []string{"a\x00b"}}} }), "NUL"},
		{"IDNotIncreasing", with(func(e *evtx.Event) { e.RecordID = 1 }), "not above the previous id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.evtx")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w, err := New(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(ok); err != nil {
				t.Fatal(err)
			}
			err = w.Write(tt.event)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write = %v, want an error containing %q", err, tt.want)
			}
			// The refused event leaves the file as it was: the next one gets id 2 and all is readable.
			if err := w.Write(ok); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := evtxexporttest.Run(t, path); len(got) != 2 || got[1].System.EventRecordID != "2" {
				t.Fatalf("after the refusal evtxexport reads %d events", len(got))
			}
		})
	}
}

func TestLargestRecordFits(t *testing.T) {
	// A record just under the chunk's capacity is written alone in a chunk of its own.
	ok := evtx.Event{Time: time.Unix(1700000000, 0), Provider: "P", EventID: 1, Channel: "C", Computer: "H", DataKind: "EventData"}
	big := ok
	big.Data = []evtx.Field{{Name: "A", Value: strings.Repeat("y", 31500)}}
	path := writeTemp(t, []evtx.Event{ok, big, ok})
	got := evtxexporttest.Run(t, path)
	if len(got) != 3 || got[1].EventData == nil || len(got[1].EventData.Data) != 1 || len(got[1].EventData.Data[0].Value) != 31500 {
		t.Fatalf("evtxexport read %d events, or lost the large value", len(got))
	}
}

func TestExplicitRecordIDs(t *testing.T) {
	e := evtx.Event{Time: time.Unix(1700000000, 0), Provider: "P", EventID: 1, Channel: "C", Computer: "H"}
	a, b, c := e, e, e
	a.RecordID, c.RecordID = 1000, 5000
	got := evtxexporttest.Run(t, writeTemp(t, []evtx.Event{a, b, c}))
	var ids []string
	for _, g := range got {
		ids = append(ids, g.System.EventRecordID)
	}
	if strings.Join(ids, ",") != "1000,1001,5000" {
		t.Fatalf("record ids %v, want 1000,1001,5000", ids)
	}
}

func TestWriterAtOffset(t *testing.T) {
	// New writes at the current offset, and Close rewrites the header there, not at 0.
	path := filepath.Join(t.TempDir(), "x.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("prefix"))
	w, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(evtx.Event{Time: time.Unix(1700000000, 0), Provider: "P"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if string(b[:6]) != "prefix" || string(b[6:14]) != "ElfFile\x00" || len(b) != 6+fileHeaderSize+chunkSize {
		t.Fatalf("file starts %q and is %d bytes", b[:14], len(b))
	}
	if err := w.Write(evtx.Event{Time: time.Unix(1700000000, 0)}); err != ErrClosed {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}
