package parse

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
)

// Windows text artifacts: scheduled task definitions (C:\Windows\System32\Tasks\...) and
// setupapi.dev.log device installs.

// maxTaskXML bounds a task file; real ones are a few KiB.
const maxTaskXML = 4 << 20

var windowsTaskParser = Parser{
	Name: "scheduled_task",
	Sniff: func(head []byte, in Input) bool {
		if strings.Contains(strings.ToLower(slashPath(in.HostPath)), "/windows/system32/tasks/") {
			return len(head) > 0
		}
		text, ok := toUTF8(head)
		return ok && strings.Contains(text, "<Task") && strings.Contains(text, "schemas.microsoft.com/windows/2004/02/mit/task")
	},
	Parse: parseWindowsTask,
}

// toUTF8 decodes UTF-16 (by BOM, or by the NULs of "<\0" when there is none) and strips a UTF-8 BOM.
// ok is false for what is not text in one of those.
func toUTF8(b []byte) (string, bool) {
	var order binary.ByteOrder
	switch {
	case bytes.HasPrefix(b, []byte{0xff, 0xfe}):
		order, b = binary.LittleEndian, b[2:]
	case bytes.HasPrefix(b, []byte{0xfe, 0xff}):
		order, b = binary.BigEndian, b[2:]
	case bytes.HasPrefix(b, []byte{'<', 0}):
		order = binary.LittleEndian
	case bytes.HasPrefix(b, []byte{0, '<'}):
		order = binary.BigEndian
	default:
		b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		return string(b), utf8.Valid(b) || isPrintableText(b)
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = order.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), true
}

type taskTrigger struct {
	XMLName       xml.Name
	StartBoundary string
	Enabled       string
	UserID        string `xml:"UserId"`
	Delay         string
}

type taskXML struct {
	RegistrationInfo struct {
		Date        string
		Author      string
		Description string
		URI         string
		Source      string
	}
	Triggers struct {
		Any []taskTrigger `xml:",any"`
	}
	Principals struct {
		Principal []struct {
			UserID    string `xml:"UserId"`
			GroupID   string `xml:"GroupId"`
			RunLevel  string
			LogonType string
		}
	}
	Settings struct {
		Hidden  string
		Enabled string
	}
	Actions struct {
		Exec []struct {
			Command          string
			Arguments        string
			WorkingDirectory string
		}
		ComHandler []struct {
			ClassID string `xml:"ClassId"`
			Data    string
		}
	}
}

// parseTaskTime reads the registration date: ISO 8601 with or without a zone; without one it is the
// host's local time.
func parseTaskTime(s string, loc *time.Location) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func taskName(in Input, uri string) string {
	p := slashPath(in.HostPath)
	if i := strings.Index(strings.ToLower(p), "/system32/tasks/"); i >= 0 {
		return `\` + strings.ReplaceAll(p[i+len("/system32/tasks/"):], "/", `\`)
	}
	if uri != "" {
		return uri
	}
	return baseName(in.HostPath)
}

func parseWindowsTask(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "scheduled_task", emit: emitFn, stats: &st}
	raw, err := io.ReadAll(io.LimitReader(r, maxTaskXML+1))
	if err != nil {
		return st, fmt.Errorf("scheduled_task: read: %w", err)
	}
	st.Records = 1
	if len(raw) > maxTaskXML {
		st.skip("file larger than %d bytes", maxTaskXML)
		return st, nil
	}
	text, ok := toUTF8(raw)
	if !ok {
		st.skip("offset 0: not UTF-8 or UTF-16 text")
		return st, nil
	}
	dec := xml.NewDecoder(strings.NewReader(text))
	// The text is already UTF-8 whatever the declaration says.
	dec.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	var t taskXML
	if err := dec.Decode(&t); err != nil {
		st.skip("offset %d: %v", dec.InputOffset(), err)
		return st, nil
	}
	ri := t.RegistrationInfo
	name := taskName(in, ri.URI)
	f := map[string]any{"task_name": name}
	set := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" {
			f[k] = v
		}
	}
	set("author", ri.Author)
	set("description", ri.Description)
	set("uri", ri.URI)
	set("source", ri.Source)
	set("registration_date", ri.Date)
	var cmds []string
	for i, x := range t.Actions.Exec {
		if i == 0 {
			set("command", x.Command)
			set("arguments", x.Arguments)
			set("working_directory", x.WorkingDirectory)
		}
		cmds = append(cmds, strings.TrimSpace(x.Command+" "+x.Arguments))
	}
	if len(t.Actions.Exec) > 1 {
		all := make([]any, len(cmds))
		for i, c := range cmds {
			all[i] = c
		}
		f["commands"] = all
	}
	for i, c := range t.Actions.ComHandler {
		if i == 0 {
			set("com_class_id", c.ClassID)
		}
		cmds = append(cmds, "COM "+strings.TrimSpace(c.ClassID))
	}
	var trig []any
	for _, tr := range t.Triggers.Any {
		if len(trig) < 32 {
			trig = append(trig, tr.XMLName.Local)
		}
		if _, ok := f["trigger_start"]; !ok && tr.StartBoundary != "" {
			set("trigger_start", tr.StartBoundary)
		}
	}
	if len(trig) > 0 {
		f["triggers"] = trig
	}
	if len(t.Principals.Principal) > 0 {
		p := t.Principals.Principal[0]
		set("run_as", p.UserID)
		set("run_as_group", p.GroupID)
		set("run_level", p.RunLevel)
		set("logon_type", p.LogonType)
	}
	if s := strings.TrimSpace(t.Settings.Hidden); s != "" {
		f["hidden"] = s == "true"
	}
	if s := strings.TrimSpace(t.Settings.Enabled); s != "" {
		f["enabled"] = s == "true"
	}
	ts, desc := in.ModTime, "Task File Modification Time"
	if rt, ok := parseTaskTime(ri.Date, in.loc()); ok {
		ts, desc = rt, "Task Registration Time"
	}
	msg := "scheduled task " + name
	if ri.Author != "" {
		msg += " by " + strings.TrimSpace(ri.Author)
	}
	if len(cmds) > 0 {
		msg += ": " + strings.Join(cmds, "; ")
	}
	return st, e.event(ts, desc, strings.TrimSpace(ri.Author), msg, f)
}

var setupapiParser = Parser{
	Name: "setupapi",
	Sniff: func(head []byte, in Input) bool {
		n := strings.ToLower(baseName(in.HostPath))
		if strings.HasPrefix(n, "setupapi.") && strings.HasSuffix(n, ".log") {
			return isPrintableText(head)
		}
		return isPrintableText(head) && bytes.Contains(head, []byte(">>>  Section start "))
	},
	Parse: parseSetupapi,
}

func setupapiTime(s string, loc *time.Location) (time.Time, bool) {
	t, err := time.ParseInLocation("2006/01/02 15:04:05.000", strings.TrimSpace(s), loc)
	if err != nil {
		t, err = time.ParseInLocation("2006/01/02 15:04:05", strings.TrimSpace(s), loc)
	}
	return t, err == nil
}

// parseSetupapi makes one event per section (">>>  [title]" then ">>>  Section start TIME" …
// "<<<  Section end TIME", "<<<  [Exit status: …]") at its start, and one per boot session header.
func parseSetupapi(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "setupapi", emit: emitFn, stats: &st}
	lr := newLineReader(r, &st)
	var (
		title string
		start time.Time
		f     map[string]any
	)
	flush := func() error {
		if f == nil {
			return nil
		}
		msg := title
		if s, ok := f["exit_status"].(string); ok {
			msg += " (" + s + ")"
		}
		err := e.event(start, "Section Start Time", "", msg, f)
		f = nil
		return err
	}
	for b := range lr.raw(ctx) {
		s := strings.TrimRight(string(b), " ")
		switch {
		case strings.HasPrefix(s, "[Boot Session: ") && strings.HasSuffix(s, "]"):
			if err := flush(); err != nil {
				return st, err
			}
			v := s[len("[Boot Session: ") : len(s)-1]
			t, ok := setupapiTime(v, in.loc())
			if !ok {
				st.skip("line %d: bad boot session time %q", lr.n, v)
				continue
			}
			if err := e.event(t, "Boot Session Start Time", "", "boot session", map[string]any{"section_title": "Boot Session"}); err != nil {
				return st, err
			}
		case strings.HasPrefix(s, ">>>  [") && strings.HasSuffix(s, "]"):
			if err := flush(); err != nil {
				return st, err
			}
			title = s[len(">>>  [") : len(s)-1]
			f = nil
		case strings.HasPrefix(s, ">>>  Section start "):
			if err := flush(); err != nil {
				return st, err
			}
			t, ok := setupapiTime(s[len(">>>  Section start "):], in.loc())
			if !ok {
				st.skip("line %d: bad section start time", lr.n)
				continue
			}
			start = t
			f = map[string]any{"section_title": title}
			if kind, dev, ok := strings.Cut(title, " - "); ok {
				f["section_kind"] = kind
				f["device_instance_id"] = dev
			}
		case strings.HasPrefix(s, "<<<  Section end ") && f != nil:
			if t, ok := setupapiTime(s[len("<<<  Section end "):], in.loc()); ok {
				f["end_time"] = t.UTC()
			}
		case strings.HasPrefix(s, "<<<  [Exit status: ") && f != nil:
			f["exit_status"] = strings.TrimSuffix(s[len("<<<  [Exit status: "):], "]")
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	return st, lr.error()
}
