package parse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/evtx"
)

// evtxParser turns Windows event log records into timeline rows: the System fields and the event
// data become typed fields, the message names the event and its most telling data.
var evtxParser = Parser{
	Name:  "evtx",
	Sniff: func(head []byte, _ Input) bool { return bytes.HasPrefix(head, []byte("ElfFile\x00")) },
	Parse: parseEVTX,
}

// maxEVTXSpool bounds the copy parseEVTX makes of a stream: event logs are at most a few GB.
const maxEVTXSpool = 8 << 30

// parseEVTX reads a log through the evtx package, which needs random access: a file is read in
// place, any other stream is spooled to a temporary file first.
func parseEVTX(ctx context.Context, in Input, r io.Reader, emit func(*quarry.Event) error) (Stats, error) {
	var st Stats
	ra, size, cleanup, err := readerAt(r)
	if err != nil {
		return st, err
	}
	defer cleanup()
	rd, err := evtx.NewReader(ra, size)
	if err != nil {
		return st, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	defer rd.Close()
	e := &emitter{in: in, src: "evtx", emit: emit, stats: &st}
	for rec, err := range rd.Records(ctx) {
		if err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			st.skip("%v", err)
			continue
		}
		st.Records++
		ev, err := rec.Event()
		if err != nil {
			st.skip("record %d at offset %d: %v", rec.ID, rec.Offset, err)
			continue
		}
		if err := e.send(evtxRow(e, ev)); err != nil {
			return st, err
		}
	}
	return st, nil
}

// readerAt gives random access to r: r itself when it is a file, else a spooled copy.
func readerAt(r io.Reader) (io.ReaderAt, int64, func(), error) {
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return f, fi.Size(), func() {}, nil
		}
	}
	tmp, err := os.CreateTemp("", "quarry-evtx-*")
	if err != nil {
		return nil, 0, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	n, err := io.Copy(tmp, io.LimitReader(r, maxEVTXSpool+1))
	if err == nil && n > maxEVTXSpool {
		err = errors.New("event log larger than 8 GiB")
	}
	if err != nil {
		cleanup()
		return nil, 0, nil, err
	}
	return tmp, n, cleanup, nil
}

// userFields are the data fields that name the account an event is about, most telling first.
var userFields = []string{"TargetUserName", "SubjectUserName", "User", "AccountName", "UserName"}

// messageFields are the data fields worth a place in the one-line message.
var messageFields = []string{"TargetUserName", "IpAddress", "LogonType", "CommandLine", "NewProcessName", "Image",
	"ServiceName", "ImagePath", "TaskName", "ScriptBlockText", "TargetFilename", "DestinationIp", "QueryName"}

func evtxRow(e *emitter, ev evtx.Event) *quarry.Event {
	f := map[string]any{
		"EventID": int64(ev.EventID), "Channel": ev.Channel, "Provider": ev.Provider, "Computer": ev.Computer,
		"EventRecordID": ev.RecordID, "Level": int64(ev.Level), "Task": int64(ev.Task), "Opcode": int64(ev.Opcode),
		"Keywords": "0x" + strconv.FormatUint(ev.Keywords, 16),
	}
	if ev.UserID != "" {
		f["UserID"] = ev.UserID
	}
	if ev.ProcessID != 0 {
		f["ProcessID"], f["ThreadID"] = int64(ev.ProcessID), int64(ev.ThreadID)
	}
	data := map[string]string{}
	for i, d := range ev.Data {
		name := d.Name
		if name == "" {
			name = "Data"
		}
		// Repeated names (arrays, unnamed Data) get _1, _2… as evtx_dump names them.
		key := name
		for n := 1; f[key] != nil; n++ {
			key = name + "_" + strconv.Itoa(n)
		}
		f[key] = fieldValue(d.Value)
		if i < 64 {
			data[key] = fmt.Sprint(f[key])
		}
	}
	user := ""
	for _, k := range userFields {
		if v := data[k]; v != "" && v != "-" {
			user = v
			break
		}
	}
	var msg strings.Builder
	fmt.Fprintf(&msg, "%s %d", ev.Provider, ev.EventID)
	if ev.Channel != "" {
		fmt.Fprintf(&msg, " (%s)", ev.Channel)
	}
	telling := false
	for _, k := range messageFields {
		if v := data[k]; v != "" && v != "-" {
			if len(v) > 200 {
				v = v[:200] + "…"
			}
			fmt.Fprintf(&msg, " %s=%s", k, v)
			telling = true
		}
	}
	if !telling {
		// None of the telling fields: the first few data values say what happened (7036's
		// "Windows Event Log", "stopped").
		for _, d := range ev.Data[:min(3, len(ev.Data))] {
			if v := fmt.Sprint(fieldValue(d.Value)); v != "" && len(v) <= 200 {
				fmt.Fprintf(&msg, " %s", v)
			}
		}
	}
	host := e.in.Host
	if host == "" {
		host = ev.Computer
	}
	out := e.make(ev.Time, "Event Time", user, msg.String(), f)
	out.Host = host
	return out
}

// fieldValue makes an event data value a timeline field: integers as int64 (or uint64 beyond),
// times in UTC, bytes in hex, lists as lists.
func fieldValue(v any) any {
	switch x := v.(type) {
	case nil:
		return ""
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= 1<<63-1 {
			return int64(x)
		}
		return x
	case float32:
		return float64(x)
	case time.Time:
		return x.UTC()
	case []byte:
		return fmt.Sprintf("%X", x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fieldValue(e)
		}
		return out
	}
	return v
}
