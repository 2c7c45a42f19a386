package parse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/collector/livestate"
)

// Live state: the documents quarry-host writes under live/ of a package (package livestate): the
// processes running, the sockets open and the users logged on while it collected. Each process is an
// event at its start time, each session at its login time; a socket has no time of its own, so it
// stands at the collection time. A document that is a JSON string instead of a list says why that
// item was not collected: it is counted as skipped with that reason.

const (
	liveDescStart     = "Process Start Time"
	liveDescLogin     = "Login Time"
	liveDescCollected = "Collection Time"
)

var livestateParser = Parser{
	Name: "livestate",
	Sniff: func(head []byte, in Input) bool {
		if liveKind(in) == "" {
			return false
		}
		h := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
		return len(h) > 0 && (h[0] == '[' || h[0] == '"' || string(h[:min(4, len(h))]) == "null")
	},
	Parse: parseLiveState,
}

// liveKind names the document from its path: live/processes.json and so on.
func liveKind(in Input) string {
	p := slashPath(in.Path)
	if in.HostPath != "" && !strings.HasPrefix(p, "live/") && !strings.Contains(p, "/live/") {
		p = slashPath(in.HostPath)
	}
	if !strings.HasPrefix(p, "live/") && !strings.Contains(p, "/live/") {
		return ""
	}
	switch strings.ToLower(baseName(p)) {
	case livestate.Processes + ".json":
		return livestate.Processes
	case livestate.Network + ".json":
		return livestate.Network
	case livestate.Users + ".json":
		return livestate.Users
	}
	return ""
}

// maxLiveRecord bounds one element of a live-state list: a process with a huge command line is
// skipped rather than held.
const maxLiveRecord = 1 << 20

func parseLiveState(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "livestate", emit: emitFn, stats: &st}
	kind := liveKind(in)
	if kind == "" {
		return st, fmt.Errorf("livestate: %w: %s is not live/processes.json, network.json or users.json", ErrFormat, in.Path)
	}
	dec := json.NewDecoder(r)
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("livestate: %w: %v", ErrFormat, err)
	}
	switch t := tok.(type) {
	case string:
		// The collector could not gather this item and said why.
		st.Records++
		st.skip("%s not collected: %s", kind, t)
		return st, nil
	case nil:
		return st, nil
	case json.Delim:
		if t != '[' {
			return st, fmt.Errorf("livestate: %w: %s is a JSON %c, not a list", ErrFormat, kind, t)
		}
	default:
		return st, fmt.Errorf("livestate: %w: %s is not a list", ErrFormat, kind)
	}
	collected := in.Collected
	if collected.IsZero() {
		collected = in.ModTime
	}
	for i := 0; dec.More(); i++ {
		if err := ctxErr(ctx, i); err != nil {
			return st, err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			// A syntax error leaves the decoder nowhere to resume from.
			st.Records++
			st.skip("element %d: %v", i, err)
			return st, nil
		}
		st.Records++
		if len(raw) > maxLiveRecord {
			st.skip("element %d: %d bytes, over the %d byte limit", i, len(raw), maxLiveRecord)
			continue
		}
		var err error
		switch kind {
		case livestate.Processes:
			err = liveProcess(e, raw, i, collected)
		case livestate.Network:
			err = liveConnection(e, raw, i, collected)
		case livestate.Users:
			err = liveUser(e, raw, i, collected)
		}
		var skip *liveSkip
		if errors.As(err, &skip) {
			st.skip("element %d: %s", i, skip.reason)
			continue
		}
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

type liveSkip struct{ reason string }

func (s *liveSkip) Error() string { return s.reason }

func skipf(format string, args ...any) error { return &liveSkip{fmt.Sprintf(format, args...)} }

// timeOr returns t, or the collection time with its description when t is unknown.
func timeOr(t time.Time, desc string, collected time.Time) (time.Time, string, bool) {
	if !t.IsZero() && t.Unix() > 0 {
		return t, desc, true
	}
	if collected.IsZero() {
		return time.Time{}, "", false
	}
	return collected, liveDescCollected, true
}

func liveProcess(e *emitter, raw []byte, i int, collected time.Time) error {
	var p livestate.Process
	if err := json.Unmarshal(raw, &p); err != nil {
		return skipf("not a process: %v", err)
	}
	if p.PID < 0 || p.PPID < 0 {
		return skipf("negative pid")
	}
	ts, desc, ok := timeOr(p.StartTime, liveDescStart, collected)
	if !ok {
		return skipf("process %d has no start time and the collection time is unknown", p.PID)
	}
	f := map[string]any{"kind": "process", "pid": int64(p.PID), "ppid": int64(p.PPID), "process_name": p.Name, "record": int64(i)}
	put(f, "command_line", p.CommandLine)
	put(f, "user", p.User)
	put(f, "exe", p.Exe)
	put(f, "exe_sha256", p.ExeSHA256)
	put(f, "exe_error", p.ExeError)
	what := p.CommandLine
	if what == "" {
		what = p.Exe
	}
	if what == "" {
		what = p.Name
	}
	msg := fmt.Sprintf("process %s (pid %d, parent %d)", orDash(p.Name), p.PID, p.PPID)
	if p.User != "" {
		msg += " user " + p.User
	}
	if what != p.Name {
		msg += ": " + what
	}
	if desc == liveDescCollected {
		msg += " [running at collection, start time unknown]"
	}
	return e.event(ts, desc, p.User, msg, f)
}

func liveConnection(e *emitter, raw []byte, i int, collected time.Time) error {
	var c livestate.Connection
	if err := json.Unmarshal(raw, &c); err != nil {
		return skipf("not a connection: %v", err)
	}
	if collected.IsZero() {
		return skipf("the collection time is unknown")
	}
	if c.Proto == "" || c.LocalPort < 0 || c.LocalPort > 65535 || c.RemotePort < 0 || c.RemotePort > 65535 {
		return skipf("bad protocol or port")
	}
	f := map[string]any{"kind": "connection", "proto": c.Proto, "local_addr": c.LocalAddr, "local_port": int64(c.LocalPort), "record": int64(i)}
	put(f, "remote_addr", c.RemoteAddr)
	if c.RemotePort != 0 {
		f["remote_port"] = int64(c.RemotePort)
	}
	put(f, "state", c.State)
	if c.PID != 0 {
		f["pid"] = int64(c.PID)
	}
	if c.RemoteAddr != "" {
		f["src_ip"], f["dst_ip"] = c.LocalAddr, c.RemoteAddr
	}
	msg := c.Proto + " " + hostPort(c.LocalAddr, c.LocalPort)
	switch {
	case c.State == "LISTEN":
		msg += " listening"
	case c.RemoteAddr != "":
		msg += " ↔ " + hostPort(c.RemoteAddr, c.RemotePort)
		if c.State != "" {
			msg += " " + c.State
		}
	case c.State != "":
		msg += " " + c.State
	}
	if c.PID != 0 {
		msg += " pid " + strconv.Itoa(c.PID)
	}
	return e.event(collected, liveDescCollected, "", msg, f)
}

func liveUser(e *emitter, raw []byte, i int, collected time.Time) error {
	var u livestate.User
	if err := json.Unmarshal(raw, &u); err != nil {
		return skipf("not a user session: %v", err)
	}
	if u.Name == "" {
		return skipf("session without a user name")
	}
	ts, desc, ok := timeOr(u.LoginTime, liveDescLogin, collected)
	if !ok {
		return skipf("session of %s has no login time and the collection time is unknown", u.Name)
	}
	f := map[string]any{"kind": "session", "user": u.Name, "record": int64(i)}
	put(f, "terminal", u.Terminal)
	put(f, "remote_host", u.Host)
	if u.PID != 0 {
		f["pid"] = int64(u.PID)
	}
	if u.Session != 0 {
		f["session"] = int64(u.Session)
	}
	msg := "user " + u.Name + " logged on"
	if u.Terminal != "" {
		msg += " at " + u.Terminal
	}
	if u.Host != "" {
		msg += " from " + u.Host
	}
	if desc == liveDescCollected {
		msg += " [logged on at collection, login time unknown]"
	}
	return e.event(ts, desc, u.Name, msg, f)
}

func put(f map[string]any, k, v string) {
	if v != "" {
		f[k] = v
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func hostPort(h string, port int) string {
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return h + ":" + strconv.Itoa(port)
}
