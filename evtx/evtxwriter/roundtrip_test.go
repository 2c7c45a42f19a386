package evtxwriter

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/evtx"
)

// readBack reads a file with our own reader (package evtx) and returns its events.
func readBack(t *testing.T, path string) []evtx.Event {
	t.Helper()
	r, err := evtx.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []evtx.Event
	for rec, err := range r.Records(context.Background()) {
		if err != nil {
			t.Fatalf("reader: %v", err)
		}
		e, err := rec.Event()
		if err != nil {
			t.Fatalf("record %d: %v", rec.ID, err)
		}
		out = append(out, e)
	}
	return out
}

// expected is the event the reader should give back for one the writer took: record ids assigned,
// times at FILETIME's 100 ns precision, GUIDs in the reader's form (upper case, no braces) and the
// writer's typing wrappers replaced by the plain values the reader returns.
func expected(e evtx.Event, id uint64) evtx.Event {
	e.RecordID = id
	e.Time = e.Time.UTC().Truncate(100 * time.Nanosecond)
	e.ProviderGUID = guidForm(e.ProviderGUID)
	e.ActivityID = guidForm(e.ActivityID)
	e.RelatedActivityID = guidForm(e.RelatedActivityID)
	data := make([]evtx.Field, len(e.Data))
	for i, f := range e.Data {
		switch v := f.Value.(type) {
		case SID:
			f.Value = string(v)
		case GUID:
			f.Value = guidForm(string(v))
		case HexInt32:
			f.Value = uint32(v)
		case HexInt64:
			f.Value = uint64(v)
		case SystemTime:
			f.Value = time.Time(v).UTC().Truncate(time.Millisecond)
		case time.Time:
			f.Value = v.UTC().Truncate(100 * time.Nanosecond)
		}
		data[i] = f
	}
	if len(data) == 0 {
		data = nil
	}
	e.Data = data
	return e
}

// flatten writes every array value as repeated fields of the same name, one per element. The reader
// gives some array types as a slice (as evtx.Field documents) and others, such as string and UInt16
// arrays, as repeated fields (as libevtx prints them); the comparison checks elements and their order
// either way. Empty binary values compare equal whether nil or empty.
func flatten(fields []evtx.Field) []evtx.Field {
	var out []evtx.Field
	for _, f := range fields {
		v := reflect.ValueOf(f.Value)
		if _, isBytes := f.Value.([]byte); isBytes || v.Kind() != reflect.Slice {
			if b, ok := f.Value.([]byte); ok && len(b) == 0 {
				f.Value = []byte(nil)
			}
			out = append(out, f)
			continue
		}
		for i := range v.Len() {
			out = append(out, evtx.Field{Name: f.Name, Value: v.Index(i).Interface()})
		}
	}
	return out
}

func guidForm(s string) string { return strings.ToUpper(strings.Trim(s, "{}")) }

func TestRoundTrip(t *testing.T) {
	events := testEvents(3000)
	// Values evtxexport renders in its own way (or wrongly), which only our reader checks.
	extra := evtx.Event{Time: time.Date(2030, 1, 2, 3, 4, 5, 999999999, time.UTC), Provider: "Test", EventID: 9,
		Channel: "Application", Computer: "astral-😀-host", DataKind: "EventData", Data: []evtx.Field{
			{Name: "neg8", Value: int8(-3)}, {Name: "f32", Value: float32(1.25)}, {Name: "f64", Value: -2.5e300},
			{Name: "strs", Value: []string{"a", "", "日本"}}, {Name: "u16s", Value: []uint16{1, 65535}},
			{Name: "u32s", Value: []uint32{7}}, {Name: "u64s", Value: []uint64{1 << 63}}, {Name: "emoji", Value: "😀 x"},
			{Name: "empty", Value: ""}, {Name: "nobytes", Value: []byte{}}, {Name: "null", Value: nil},
		}}
	events = append(events, extra)
	got := readBack(t, writeTemp(t, events))
	if len(got) != len(events) {
		t.Fatalf("read %d events, wrote %d", len(got), len(events))
	}
	for i, e := range events {
		want := expected(e, uint64(i+1))
		got[i].Data, want.Data = flatten(got[i].Data), flatten(want.Data)
		if !reflect.DeepEqual(got[i], want) {
			t.Fatalf("event %d:\n got %#v\nwant %#v", i, got[i], want)
		}
	}
}
