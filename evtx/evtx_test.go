package evtx

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// readAll reads every record and error of an in-memory file.
func readAll(t *testing.T, file []byte, opts ...Option) ([]*Record, []error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(file), int64(len(file)), opts...)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var recs []*Record
	var errs []error
	for rec, err := range r.Records(context.Background()) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, rec)
	}
	return recs, errs
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// typedCase is one value type: its substitution, the JSON evtx_dump gives
// for it (integers and booleans as JSON numbers and booleans, everything
// else as strings) and the Go value of the event API.
type typedCase struct {
	name string
	v    sv
	json string
	goV  any
}

var typedCases = []typedCase{
	{"String", vString("héllo 𝄞 \"q\"  "), `"héllo 𝄞 \"q\""`, "héllo 𝄞 \"q\"  "},
	{"Ansi", sv{typ: typeAnsi, data: []byte("ansi\x00")}, `"ansi"`, "ansi"},
	{"Int8", sv{typ: typeInt8, data: []byte{0xfb}}, `-5`, int8(-5)},
	{"UInt8", vU8(250), `250`, uint8(250)},
	{"Int16", sv{typ: typeInt16, data: le16(0xfed4)}, `-300`, int16(-300)},
	{"UInt16", vU16(65000), `65000`, uint16(65000)},
	{"Int32", sv{typ: typeInt32, data: le32(0xfffeee90)}, `-70000`, int32(-70000)},
	{"UInt32", sv{typ: typeUint32, data: le32(4000000000)}, `4000000000`, uint32(4000000000)},
	{"Int64", sv{typ: typeInt64, data: le64(0xfffffffed5fa0e00)}, `-5000000000`, int64(-5000000000)},
	{"UInt64", vU64(math.MaxUint64), `18446744073709551615`, uint64(math.MaxUint64)},
	{"Real32", sv{typ: typeReal32, data: le32(math.Float32bits(1.5))}, `"1.5"`, float32(1.5)},
	{"Real64", sv{typ: typeReal64, data: le64(math.Float64bits(-0.25))}, `"-0.25"`, -0.25},
	{"Bool", sv{typ: typeBool, data: le32(1)}, `true`, true},
	{"Binary", sv{typ: typeBinary, data: []byte{0x01, 0xab, 0xff}}, `"01ABFF"`, []byte{0x01, 0xab, 0xff}},
	{"Guid", sv{typ: typeGUID, data: guidBytes}, `"5770385F-C22A-43E0-BF4C-06F5698FFBD9"`, "5770385F-C22A-43E0-BF4C-06F5698FFBD9"},
	{"SizeT", sv{typ: typeSizeT, data: le64(0x1000)}, `"0x1000"`, uint64(0x1000)},
	// 133000000000000000 × 100 ns after 1601-01-01 is 2022-06-18T04:26:40Z.
	{"FileTime", vFiletime(133000000000001234), `"2022-06-18T04:26:40.000123Z"`, time.Date(2022, 6, 18, 4, 26, 40, 123400, time.UTC)},
	{"SysTime", sv{typ: typeSysTime, data: bytes.Join([][]byte{le16(2024), le16(2), le16(4), le16(29), le16(13), le16(14), le16(15), le16(678)}, nil)},
		`"2024-02-29T13:14:15.678000Z"`, time.Date(2024, 2, 29, 13, 14, 15, 678e6, time.UTC)},
	{"Sid", sv{typ: typeSID, data: sidBytes}, `"S-1-5-21-1004336348-1177238915-682003330"`, "S-1-5-21-1004336348-1177238915-682003330"},
	{"HexInt32", sv{typ: typeHex32, data: le32(0xdeadbeef)}, `"0xdeadbeef"`, uint32(0xdeadbeef)},
	{"HexInt64", vHex64(0x1f), `"0x1f"`, uint64(0x1f)},
	// A one-item array is not repeated; arrays render as comma-joined text.
	{"UInt16Array1", sv{typ: typeArray | typeUint16, data: le16(7)}, `"7"`, []uint16{7}},
	{"Empty", sv{typ: typeString}, `""`, ""},
	{"Null", sv{typ: typeNull}, `""`, nil},
}

func TestValueTypes(t *testing.T) {
	var data []tok
	subs := systemValues(1)
	for i, c := range typedCases {
		data = append(data, elem("Data", []attr{{"Name", []tok{text(c.name)}}}, sub(uint16(10+i), c.v.typ)))
		subs = append(subs, c.v)
	}
	body := elem("Event", []attr{{"xmlns", []tok{text("http://schemas.microsoft.com/win/2004/08/events/event")}}},
		systemTemplate(), elem("EventData", nil, data...))
	cb := newChunkBuilder()
	cb.record(1, 133000000000000000, func(c *chunkBuilder) { c.instance(0, body, subs) })
	recs, errs := readAll(t, buildFile(cb.finish(nil)))
	if len(errs) > 0 || len(recs) != 1 {
		t.Fatalf("got %d records, errors %v", len(recs), errs)
	}
	js := recs[0].AppendJSON(nil)
	var doc struct {
		Event struct {
			System    map[string]json.RawMessage
			EventData map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatalf("invalid JSON %v: %s", err, js)
	}
	ev, err := recs[0].Event()
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Data) != len(typedCases) {
		t.Fatalf("Event().Data has %d fields, want %d", len(ev.Data), len(typedCases))
	}
	for i, c := range typedCases {
		if got := string(doc.Event.EventData[c.name]); got != c.json {
			t.Errorf("%s: JSON %s, want %s", c.name, got, c.json)
		}
		f := ev.Data[i]
		if f.Name != c.name || !reflect.DeepEqual(f.Value, c.goV) {
			t.Errorf("%s: Event field %q = %#v, want %#v", c.name, f.Name, f.Value, c.goV)
		}
	}

	wantSystem := map[string]string{
		"Provider":      `{"#attributes":{"Name":"Test-Provider","Guid":"5770385F-C22A-43E0-BF4C-06F5698FFBD9"}}`,
		"EventID":       `{"#attributes":{"Qualifiers":16384},"#text":7036}`,
		"Level":         `4`,
		"Keywords":      `"0x8000000000000000"`,
		"TimeCreated":   `{"#attributes":{"SystemTime":"2022-06-18T04:26:40.000001Z"}}`,
		"EventRecordID": `1`,
		"Channel":       `"Application"`,
		"Computer":      `"host.example"`,
		"Security":      `{"#attributes":{"UserID":"S-1-5-18"}}`,
	}
	for k, want := range wantSystem {
		if got := string(doc.Event.System[k]); got != want {
			t.Errorf("System.%s = %s, want %s", k, got, want)
		}
	}
	wantEv := Event{
		RecordID: 1, Time: time.Date(2022, 6, 18, 4, 26, 40, 1000, time.UTC),
		Provider: "Test-Provider", ProviderGUID: "5770385F-C22A-43E0-BF4C-06F5698FFBD9",
		EventID: 7036, Qualifiers: 0x4000, HasQualifiers: true, Level: 4, Keywords: 0x8000000000000000,
		Channel: "Application", Computer: "host.example", UserID: "S-1-5-18", DataKind: "EventData",
	}
	ev.Data = nil
	if !reflect.DeepEqual(ev, wantEv) {
		t.Errorf("Event() =\n%+v\nwant\n%+v", ev, wantEv)
	}
}

// TestArraysAndUnnamedData: a string array in <Data>%1</Data> repeats the
// element per item (as Windows renders it), and unnamed Data elements
// become "Data": {"#text": [...]}; an empty optional Qualifiers attribute
// and empty elements disappear or become null.
func TestArraysAndUnnamedData(t *testing.T) {
	strs := []byte{}
	for _, s := range []string{"one", "", "three"} {
		strs = append(strs, vString(s).data...)
		strs = append(strs, 0, 0)
	}
	body := elem("Event", nil,
		systemTemplate(),
		elem("EventData", nil,
			elem("Data", nil, sub(10, typeArray|typeString)),
			elem("Binary", nil, optSub(11, typeBinary))))
	subs := append(systemValues(2), sv{typ: typeArray | typeString, data: strs}, sv{typ: typeNull})
	subs[2] = sv{typ: typeNull} // no Qualifiers
	cb := newChunkBuilder()
	cb.record(2, 133000000000000000, func(c *chunkBuilder) { c.instance(0, body, subs) })
	recs, errs := readAll(t, buildFile(cb.finish(nil)))
	if len(errs) > 0 || len(recs) != 1 {
		t.Fatalf("got %d records, errors %v", len(recs), errs)
	}
	var doc struct{ Event map[string]json.RawMessage }
	js := recs[0].AppendJSON(nil)
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatalf("invalid JSON %v: %s", err, js)
	}
	if got, want := string(doc.Event["EventData"]), `{"Data":{"#text":["one","","three"]},"Binary":null}`; got != want {
		t.Errorf("EventData = %s, want %s", got, want)
	}
	var sys map[string]json.RawMessage
	json.Unmarshal(doc.Event["System"], &sys)
	if got := string(sys["EventID"]); got != "7036" {
		t.Errorf("EventID without qualifiers = %s, want 7036", got)
	}
	ev, _ := recs[0].Event()
	want := []Field{{"", "one"}, {"", ""}, {"", "three"}, {"Binary", nil}}
	if !reflect.DeepEqual(ev.Data, want) || ev.HasQualifiers {
		t.Errorf("Event().Data = %#v (HasQualifiers %v), want %#v", ev.Data, ev.HasQualifiers, want)
	}
	if got, want := string(recs[0].AppendXML(nil)), `<Data>one</Data><Data/><Data>three</Data>`; !bytes.Contains([]byte(got), []byte(want)) {
		t.Errorf("XML %s does not contain %s", got, want)
	}
}

// TestUserDataNested: UserData whose content is a binary XML substitution
// holding its own template instance, the way Windows stores UserData.
func TestUserDataNested(t *testing.T) {
	inner := elem("LogFileCleared", []attr{{"xmlns", []tok{text("http://manifests.microsoft.com/win/2004/08/windows/eventlog")}}},
		elem("SubjectUserName", nil, sub(0, typeString)),
		elem("SubjectLogonId", nil, sub(1, typeHex64)))
	nested := sv{typ: typeBinXML, write: func(c *chunkBuilder) {
		c.b = append(c.b, tokFragmentStart, 1, 1, 0)
		c.instance(0, inner, []sv{vString("alice"), vHex64(0x3e7)})
		c.u8(tokEOF)
	}}
	body := elem("Event", nil, systemTemplate(), elem("UserData", nil, sub(10, typeBinXML)))
	cb := newChunkBuilder()
	var def uint32
	cb.record(3, 133000000000000000, func(c *chunkBuilder) { def = c.instance(0, body, append(systemValues(3), nested)) })
	// The second record reuses the outer template by reference.
	cb.record(4, 133000000000000000, func(c *chunkBuilder) { c.instance(def, body, append(systemValues(4), nested)) })
	recs, errs := readAll(t, buildFile(cb.finish(nil)))
	if len(errs) > 0 || len(recs) != 2 {
		t.Fatalf("got %d records, errors %v", len(recs), errs)
	}
	for i, rec := range recs {
		var doc struct{ Event map[string]json.RawMessage }
		js := rec.AppendJSON(nil)
		if err := json.Unmarshal(js, &doc); err != nil {
			t.Fatalf("invalid JSON %v: %s", err, js)
		}
		want := `{"LogFileCleared":{"#attributes":{"xmlns":"http://manifests.microsoft.com/win/2004/08/windows/eventlog"},"SubjectUserName":"alice","SubjectLogonId":"0x3e7"}}`
		if got := string(doc.Event["UserData"]); got != want {
			t.Errorf("record %d: UserData = %s, want %s", i, got, want)
		}
		ev, err := rec.Event()
		if err != nil {
			t.Fatal(err)
		}
		if ev.RecordID != uint64(3+i) || ev.DataKind != "UserData" || ev.UserDataName != "LogFileCleared" ||
			!reflect.DeepEqual(ev.Data, []Field{{"SubjectUserName", "alice"}, {"SubjectLogonId", uint64(0x3e7)}}) {
			t.Errorf("record %d: Event() = %+v", i, ev)
		}
	}
}

// simpleChunk builds a chunk of n records with ids from first.
func simpleChunk(first uint64, n int, slack []byte) []byte {
	body := elem("Event", nil, systemTemplate())
	cb := newChunkBuilder()
	var def uint32
	for i := range n {
		id := first + uint64(i)
		cb.record(id, 133000000000000000, func(c *chunkBuilder) { def = c.instance(def, body, systemValues(id)) })
	}
	return cb.finish(slack)
}

func ids(recs []*Record) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func TestDamagedChunks(t *testing.T) {
	good1, good3 := simpleChunk(1, 3, nil), simpleChunk(7, 3, nil)
	badData := simpleChunk(4, 3, nil)
	badData[600] ^= 0xff // inside the first record: records checksum fails
	badHeader := simpleChunk(4, 3, nil)
	badHeader[20] ^= 0xff // header checksum fails
	badRecord := simpleChunk(4, 3, nil)
	// Break the second record's binary XML (its template instance token)
	// and fix the checksum, so only that record is bad.
	off := chunkHeaderSize + int(binary.LittleEndian.Uint32(badRecord[chunkHeaderSize+4:]))
	badRecord[off+recordHeader+4] = 0x7f
	fixChecksums(badRecord)
	// Break the second record's size, so the records after it cannot be
	// found by walking from record to record.
	badSize := simpleChunk(4, 3, nil)
	binary.LittleEndian.PutUint32(badSize[off+4:], 0xffff)
	fixChecksums(badSize)

	tests := []struct {
		name    string
		chunk   []byte
		opts    []Option
		wantIDs []uint64
		wantErr string
	}{
		{"DataChecksum", badData, nil, []uint64{1, 2, 3, 7, 8, 9}, "records checksum mismatch"},
		{"HeaderChecksum", badHeader, nil, []uint64{1, 2, 3, 7, 8, 9}, "header checksum mismatch"},
		// With recovery the records of a chunk that fails its checksums are
		// carved (the flipped byte is in a name, so they still decode).
		{"DataChecksumRecovered", badData, []Option{WithRecovery(true)}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9}, "records checksum mismatch, recovering"},
		{"HeaderChecksumRecovered", badHeader, []Option{WithRecovery(true)}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9}, "header checksum mismatch, recovering"},
		{"WithoutChecksums", badHeader, []Option{WithoutChecksums()}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9}, ""},
		{"BadRecord", badRecord, nil, []uint64{1, 2, 3, 4, 6, 7, 8, 9}, "record 5 at offset"},
		{"BadSize", badSize, nil, []uint64{1, 2, 3, 4, 7, 8, 9}, "record 5 at offset"},
		{"BadSizeRecovered", badSize, []Option{WithRecovery(true)}, []uint64{1, 2, 3, 4, 6, 7, 8, 9}, "record 5 at offset"},
		{"Signature", append([]byte("ElfJunk\x00"), badData[8:]...), nil, []uint64{1, 2, 3, 7, 8, 9}, "no ElfChnk signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, workers := range []int{1, 2} {
				recs, errs := readAll(t, buildFile(good1, tt.chunk, good3), append(tt.opts, WithWorkers(workers))...)
				if got := ids(recs); !reflect.DeepEqual(got, tt.wantIDs) {
					t.Errorf("workers %d: ids %v, want %v", workers, got, tt.wantIDs)
				}
				if tt.wantErr == "" {
					if len(errs) != 0 {
						t.Errorf("workers %d: errors %v", workers, errs)
					}
					continue
				}
				if len(errs) != 1 || !bytes.Contains([]byte(errs[0].Error()), []byte(tt.wantErr)) {
					t.Errorf("workers %d: errors %v, want one with %q", workers, errs, tt.wantErr)
				}
			}
		})
	}

	var ce *ChunkError
	_, errs := readAll(t, buildFile(good1, badData, good3))
	if len(errs) != 1 || !errors.As(errs[0], &ce) || ce.Index != 1 || ce.Offset != fileHeaderSize+chunkSize {
		t.Errorf("errors %v, want a *ChunkError for chunk 1 at %#x", errs, fileHeaderSize+chunkSize)
	}
}

// fixChecksums recomputes a chunk's checksums after a test changed it.
func fixChecksums(c []byte) {
	le := binary.LittleEndian
	le.PutUint32(c[52:], crc32.ChecksumIEEE(c[chunkHeaderSize:le.Uint32(c[48:])]))
	le.PutUint32(c[124:], crc32.Update(crc32.ChecksumIEEE(c[:120]), crc32.IEEETable, c[128:chunkHeaderSize]))
}

// TestRecovery: a whole record left in the slack after the free space
// offset is found only with WithRecovery, and a truncated last chunk is
// skipped without it and read with it.
func TestRecovery(t *testing.T) {
	// Write record 42 right after records 1 and 2, then move the free space
	// offset back over it, as if it had been written before the chunk was
	// reused (its template and names are inline, at their chunk offsets).
	c := simpleChunk(1, 2, nil)
	free := int(binary.LittleEndian.Uint32(c[48:]))
	moved := newChunkBuilder()
	moved.b = append(moved.b[:0], c[:free]...)
	moved.firstID, moved.lastID, moved.nrec = 1, 2, 2
	end := len(moved.b)
	moved.record(42, 133000000000000000, func(c *chunkBuilder) { c.instance(0, elem("Event", nil, systemTemplate()), systemValues(42)) })
	slack := append([]byte(nil), moved.b[end:]...)
	moved.b = moved.b[:end]
	chunk := moved.finish(slack)

	recs, errs := readAll(t, buildFile(chunk))
	if got := ids(recs); !reflect.DeepEqual(got, []uint64{1, 2}) || len(errs) > 0 {
		t.Errorf("without recovery: ids %v errors %v, want [1 2]", got, errs)
	}
	recs, errs = readAll(t, buildFile(chunk), WithRecovery(true))
	if got := ids(recs); !reflect.DeepEqual(got, []uint64{1, 2, 42}) || len(errs) > 0 || !recs[2].Recovered || recs[0].Recovered {
		t.Errorf("with recovery: ids %v errors %v, want [1 2 42] with 42 recovered", got, errs)
	}

	full := buildFile(simpleChunk(1, 2, nil), simpleChunk(3, 3, nil))
	cut := full[:len(full)-chunkSize+int(binary.LittleEndian.Uint32(full[fileHeaderSize+chunkSize+48:]))-10]
	recs, errs = readAll(t, cut)
	if got := ids(recs); !reflect.DeepEqual(got, []uint64{1, 2}) || len(errs) != 1 {
		t.Errorf("truncated: ids %v errors %v, want [1 2] and one error", got, errs)
	}
	recs, errs = readAll(t, cut, WithRecovery(true))
	if got := ids(recs); !reflect.DeepEqual(got, []uint64{1, 2, 3, 4}) || len(errs) != 1 {
		t.Errorf("truncated with recovery: ids %v errors %v, want [1 2 3 4] and one error", got, errs)
	}
}

// TestParallelOrder: any number of workers gives the same records in the
// same order, and stopping early stops cleanly.
func TestParallelOrder(t *testing.T) {
	var chunks [][]byte
	for i := range 9 {
		chunks = append(chunks, simpleChunk(uint64(1+i*50), 50, nil))
	}
	file := buildFile(chunks...)
	var want []byte
	for _, w := range []int{1, 2, 3, 8} {
		recs, errs := readAll(t, file, WithWorkers(w), WithJSON())
		if len(errs) > 0 || len(recs) != 450 {
			t.Fatalf("workers %d: %d records, errors %v", w, len(recs), errs)
		}
		var all []byte
		for i, r := range recs {
			if r.ID != uint64(i+1) {
				t.Fatalf("workers %d: record %d has id %d", w, i, r.ID)
			}
			all = r.AppendJSON(all)
			all = append(all, '\n')
		}
		if want == nil {
			want = all
		} else if !bytes.Equal(all, want) {
			t.Errorf("workers %d: output differs from one worker's", w)
		}
	}
	r, _ := NewReader(bytes.NewReader(file), int64(len(file)), WithWorkers(4))
	n := 0
	for range r.Records(context.Background()) {
		n++
		if n == 70 {
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var last error
	for _, err := range r.Records(ctx) {
		last = err
	}
	if !errors.Is(last, context.Canceled) {
		t.Errorf("cancelled iteration ended with %v, want context.Canceled", last)
	}
}

func TestNotEVTX(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("MZ"), bytes.Repeat([]byte{0}, 5000)} {
		if _, err := NewReader(bytes.NewReader(data), int64(len(data))); err == nil {
			t.Errorf("NewReader(%d bytes of junk) succeeded", len(data))
		}
	}
}

// countingReader counts chunk reads.
type countingReader struct {
	r     *bytes.Reader
	reads atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == chunkSize {
		c.reads.Add(1)
	}
	return c.r.ReadAt(p, off)
}

// TestBoundedReadAhead: however slow the consumer, the workers read only a
// few chunks ahead of it, so memory does not grow with the file.
func TestBoundedReadAhead(t *testing.T) {
	var chunks [][]byte
	for i := range 40 {
		chunks = append(chunks, simpleChunk(uint64(1+i*10), 10, nil))
	}
	file := buildFile(chunks...)
	cr := &countingReader{r: bytes.NewReader(file)}
	const workers = 2
	r, err := NewReader(cr, int64(len(file)), WithWorkers(workers))
	if err != nil {
		t.Fatal(err)
	}
	maxAhead := int64(0)
	n := 0
	for rec, err := range r.Records(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			runtime.Gosched() // a slow consumer lets the workers run ahead
		}
		ahead := cr.reads.Load() - int64(rec.Chunk)
		maxAhead = max(maxAhead, ahead)
		n++
	}
	if n != 400 {
		t.Fatalf("read %d records, want 400", n)
	}
	// Queue of 2 per worker, one chunk in each worker, one being dispatched,
	// one being consumed.
	if limit := int64(3*workers + 2); maxAhead > limit {
		t.Errorf("workers read up to %d chunks ahead, want at most %d", maxAhead, limit)
	}
	t.Logf("at most %d chunks read ahead", maxAhead)
}

// TestExpansionBounded: a record that would render to far more than its
// size (a substitution used thousands of times, an array repeating a large
// element) is refused or rendered without repetition, not expanded.
func TestExpansionBounded(t *testing.T) {
	big := vString(string(bytes.Repeat([]byte("x"), 10000)))
	var uses []tok
	for range 2000 {
		uses = append(uses, sub(10, typeString))
	}
	cb := newChunkBuilder()
	cb.record(1, 133000000000000000, func(c *chunkBuilder) {
		c.instance(0, elem("Event", nil, systemTemplate(), elem("EventData", nil, elem("Data", nil, uses...))), append(systemValues(1), big))
	})
	chunk1 := cb.finish(nil)
	items := sv{typ: typeArray | typeUint8, data: bytes.Repeat([]byte{7}, 20000)}
	cb = newChunkBuilder()
	cb.record(2, 133000000000000000, func(c *chunkBuilder) {
		c.instance(0, elem("Event", nil, systemTemplate(), elem("EventData", nil, elem("Data", nil, sub(10, items.typ), sub(11, typeString)))),
			append(systemValues(2), items, big))
	})
	recs, errs := readAll(t, buildFile(chunk1, cb.finish(nil)))
	var re *RecordError
	if len(errs) != 1 || !errors.As(errs[0], &re) || re.ID != 1 {
		t.Fatalf("errors %v, want a *RecordError for record 1", errs)
	}
	if len(recs) != 1 || recs[0].ID != 2 {
		t.Fatalf("records %v, want record 2", ids(recs))
	}
	js := recs[0].AppendJSON(nil)
	if len(js) > 100000 {
		t.Errorf("record 2 renders to %d bytes of JSON, want the array as one text (< 100000)", len(js))
	}
	if !json.Valid(js) {
		t.Errorf("invalid JSON")
	}
}

// failingReader fails reads at one offset.
type failingReader struct {
	r   *bytes.Reader
	bad int64
}

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off == f.bad {
		return 0, errors.New("disk on fire")
	}
	return f.r.ReadAt(p, off)
}

// TestReadError: a chunk that cannot be read is reported with its number and
// offset, and the others are read.
func TestReadError(t *testing.T) {
	file := buildFile(simpleChunk(1, 2, nil), simpleChunk(3, 2, nil), simpleChunk(5, 2, nil))
	bad := int64(fileHeaderSize + chunkSize)
	for _, w := range []int{1, 2} {
		r, err := NewReader(failingReader{bytes.NewReader(file), bad}, int64(len(file)), WithWorkers(w))
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		var errs []error
		for rec, err := range r.Records(context.Background()) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			got = append(got, rec.ID)
		}
		var ce *ChunkError
		if !reflect.DeepEqual(got, []uint64{1, 2, 5, 6}) || len(errs) != 1 || !errors.As(errs[0], &ce) || ce.Index != 1 || ce.Offset != bad {
			t.Errorf("workers %d: ids %v errors %v, want [1 2 5 6] and chunk 1 at %#x", w, got, errs, bad)
		}
		if errs != nil && errs[0].Error() != "evtx: chunk 1 at offset 0x11000: disk on fire" {
			t.Errorf("error text %q", errs[0])
		}
	}
}
