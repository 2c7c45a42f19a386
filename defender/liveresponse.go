package defender

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Command is one Live Response command: {"type": ..., "params": [{"key", "value"}]} (mde-api.md §5.1).
type Command struct {
	Type   string  `json:"type"`
	Params []Param `json:"params"`
}

// Param is a command parameter.
type Param struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Live Response command types, in the order the service requires them in one request.
const (
	CommandPutFile   = "PutFile"
	CommandRunScript = "RunScript"
	CommandGetFile   = "GetFile"
)

// Param returns the value of the first parameter named key ("" if none).
func (c Command) Param(key string) string {
	for _, p := range c.Params {
		if p.Key == key {
			return p.Value
		}
	}
	return ""
}

// PutFileCommand copies a library file to the device.
func PutFileCommand(fileName string) Command {
	return Command{Type: CommandPutFile, Params: []Param{{Key: "FileName", Value: fileName}}}
}

// RunScriptCommand runs a library script; args, if any, reach the script only when its library entry
// was uploaded with HasParameters.
func RunScriptCommand(scriptName, args string) Command {
	c := Command{Type: CommandRunScript, Params: []Param{{Key: "ScriptName", Value: scriptName}}}
	if args != "" {
		c.Params = append(c.Params, Param{Key: "Args", Value: args})
	}
	return c
}

// GetFileCommand uploads a file from the device.
func GetFileCommand(path string) Command {
	return Command{Type: CommandGetFile, Params: []Param{{Key: "Path", Value: path}}}
}

// LiveResponseRequest is the runliveresponse body. The keys are PascalCase, as the service requires.
type LiveResponseRequest struct {
	Commands []Command `json:"Commands"`
	Comment  string    `json:"Comment"`
}

// Validate checks what the service would refuse: no commands, unknown types, missing parameters, and
// an order other than PutFile, then RunScript, then GetFile.
func (r LiveResponseRequest) Validate() error {
	if len(r.Commands) == 0 {
		return errors.New("no commands")
	}
	rank := map[string]int{CommandPutFile: 0, CommandRunScript: 1, CommandGetFile: 2}
	need := map[string]string{CommandPutFile: "FileName", CommandRunScript: "ScriptName", CommandGetFile: "Path"}
	last := 0
	for i, c := range r.Commands {
		rk, ok := rank[c.Type]
		if !ok {
			return fmt.Errorf("command %d: unknown type %q", i, c.Type)
		}
		if rk < last {
			return fmt.Errorf("command %d: %s after a later kind; order must be PutFile, RunScript, GetFile", i, c.Type)
		}
		last = rk
		if c.Param(need[c.Type]) == "" {
			return fmt.Errorf("command %d: %s needs %s", i, c.Type, need[c.Type])
		}
	}
	return nil
}

// markerPrefix starts the tag the client adds to every runliveresponse comment, so the action a lost
// answer created can be recognised among the device's actions.
const markerPrefix = "quarry-req:"

func newMarker() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return markerPrefix + hex.EncodeToString(b[:])
}

// RunLiveResponse starts a Live Response request on a machine and returns the Pending action.
//
// The call is never repeated blindly: the service would run the commands twice or, more likely, refuse
// the second request with ErrActiveRequestAlreadyExists while the first one runs. The comment gets a
// unique tag; after an answer that leaves the outcome open (5xx, timeout, connection lost after
// sending) the client looks for an action with that tag on the machine, created since the attempt
// began, and returns it if the first request did land. Only when it is certainly absent is the request
// sent again. If the client cannot tell, the error matches ErrOutcomeUnknown.
func (c *Client) RunLiveResponse(ctx context.Context, machineID string, req LiveResponseRequest) (*MachineAction, error) {
	op := "run live response on machine " + machineID
	if machineID == "" {
		return nil, errors.New("defender: run live response: empty machine id")
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("defender: %s: %w", op, err)
	}
	marker := newMarker()
	req.Comment = strings.TrimSpace(req.Comment + " [" + marker + "]")
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	r := request{fam: famRunLR, method: http.MethodPost, path: "/api/machines/" + url.PathEscape(machineID) + "/runliveresponse",
		body: body, contentType: "application/json", retry: retryNever}
	since := c.now().Add(-c.limits.ClockSkew)
	var last error
	for attempt := 1; attempt <= c.limits.MaxAttempts; attempt++ {
		var a MachineAction
		err := c.call(ctx, r, &a)
		if err == nil {
			return &a, nil
		}
		last = err
		// A refusal because the device is busy may be our own earlier attempt, answered too late.
		busyByUs := attempt > 1 && errors.Is(err, ErrActiveRequestAlreadyExists)
		if !errors.Is(err, ErrOutcomeUnknown) && !busyByUs {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, err
		}
		found, lerr := c.findMarked(ctx, machineID, marker, since)
		if lerr != nil {
			return nil, outcomeUnknown(fmt.Errorf("%w; looking for the action: %w", err, lerr))
		}
		if found != nil {
			c.log.Info("defender runliveresponse answer was lost but the action exists", "machine", machineID, "action", found.ID)
			return found, nil
		}
		if busyByUs || attempt == c.limits.MaxAttempts {
			return nil, err
		}
		c.log.Warn("defender runliveresponse failed and created no action, sending again", "machine", machineID, "attempt", attempt, "err", err)
		if err := c.sleep(ctx, c.backoff(attempt)); err != nil {
			return nil, errors.Join(last, err)
		}
	}
	return nil, last
}

// findMarked looks for the Live Response action on machineID whose comment carries marker. It asks
// for the machine's actions created since the attempt began; a service that refuses that date filter
// is asked for all of the machine's actions instead.
func (c *Client) findMarked(ctx context.Context, machineID, marker string, since time.Time) (*MachineAction, error) {
	actions, err := c.ListMachineActions(ctx, ActionQuery{MachineID: machineID, CreatedAfter: since})
	if errors.Is(err, ErrBadRequest) {
		actions, err = c.ListMachineActions(ctx, ActionQuery{MachineID: machineID})
	}
	if err != nil {
		return nil, err
	}
	for i := range actions {
		a := &actions[i]
		if a.IsLiveResponse() && strings.Contains(a.RequestorComment, marker) {
			return a, nil
		}
	}
	return nil, nil
}

// GetLiveResponseResultURL returns the pre-signed download URL of the result of command index of a
// Live Response action (RunScript and GetFile only; PutFile has no result). The URL is valid for about
// 30 minutes and a new one can be asked for at any time.
func (c *Client) GetLiveResponseResultURL(ctx context.Context, actionID string, index int) (string, error) {
	if actionID == "" || index < 0 {
		return "", errors.New("defender: live response result: empty action id or negative index")
	}
	r := request{fam: famResultLink, method: http.MethodGet,
		path: "/api/machineactions/" + url.PathEscape(actionID) + "/GetLiveResponseResultDownloadLink(index=" + strconv.Itoa(index) + ")"}
	return c.link(ctx, r)
}

// link calls a function that answers one URL, such as the result link or the package URI.
func (c *Client) link(ctx context.Context, r request) (string, error) {
	var s odataString
	if err := c.call(ctx, r, &s); err != nil {
		return "", err
	}
	// The package-URI page shows the URL wrapped in an extra pair of quotes; tolerate that.
	v := strings.Trim(strings.TrimSpace(s.Value), `"`)
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("defender: %s: answer is not a URL", r.op())
	}
	return v, nil
}

// DownloadResult writes the content behind a result URL to w and returns the byte count. The URL is
// pre-signed, so no Authorization header is sent with it. Content is passed through as stored: a
// GetFile result may be gzip-compressed by the service (mde-api.md §5.2); see IsGzip. A failed attempt
// is retried only while nothing has been written to w.
func (c *Client) DownloadResult(ctx context.Context, resultURL string, w io.Writer) (int64, error) {
	u, err := url.Parse(resultURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return 0, errors.New("defender: download result: not an http(s) URL")
	}
	var last error
	for attempt := 1; attempt <= c.limits.MaxAttempts; attempt++ {
		n, status, err := c.downloadOnce(ctx, u.String(), w)
		switch {
		case err == nil:
			return n, nil
		case n > 0 || ctx.Err() != nil:
			return n, fmt.Errorf("defender: download result from %s: %w", u.Host, err)
		case status == http.StatusForbidden || status == http.StatusNotFound:
			return 0, fmt.Errorf("%w: status %d from %s", ErrLinkExpired, status, u.Host)
		case status != 0 && status < 500 && status != http.StatusTooManyRequests:
			return 0, fmt.Errorf("defender: download result from %s: status %d", u.Host, status)
		}
		last = err
		if attempt < c.limits.MaxAttempts {
			if err := c.sleep(ctx, c.backoff(attempt)); err != nil {
				return 0, errors.Join(last, err)
			}
		}
	}
	return 0, fmt.Errorf("defender: download result from %s: %w", u.Host, last)
}

func (c *Client) downloadOnce(ctx context.Context, u string, w io.Writer) (int64, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return 0, resp.StatusCode, fmt.Errorf("status %d", resp.StatusCode)
	}
	n, err := io.Copy(w, resp.Body)
	return n, resp.StatusCode, err
}

// IsGzip reports whether b starts with the gzip magic bytes.
func IsGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// ScriptResult is the document a RunScript command leaves behind (mde-api.md §5.2).
type ScriptResult struct {
	ScriptName   string `json:"script_name"`
	ExitCode     int    `json:"exit_code"`
	ScriptOutput string `json:"script_output"`
	ScriptErrors string `json:"script_errors"`
}

// maxScriptResult bounds a RunScript result; a script's captured output is small, a GetFile result is not
// read this way.
const maxScriptResult = 64 << 20

// GetScriptResult fetches and decodes the result of the RunScript command at index. Trailing NUL
// characters, which Windows output may end with, are removed. An expired link is asked for again once.
func (c *Client) GetScriptResult(ctx context.Context, actionID string, index int) (*ScriptResult, error) {
	op := fmt.Sprintf("defender: script result of action %s command %d", actionID, index)
	var buf bytes.Buffer
	for try := 0; ; try++ {
		link, err := c.GetLiveResponseResultURL(ctx, actionID, index)
		if err != nil {
			return nil, err
		}
		buf.Reset()
		_, err = c.DownloadResult(ctx, link, &limitedWriter{w: &buf, n: maxScriptResult})
		if errors.Is(err, ErrLinkExpired) && try == 0 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		break
	}
	data := buf.Bytes()
	if IsGzip(data) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		data, err = io.ReadAll(io.LimitReader(zr, maxScriptResult+1))
		if err != nil {
			return nil, fmt.Errorf("%s: gunzip: %w", op, err)
		}
		if len(data) > maxScriptResult {
			return nil, fmt.Errorf("%s: larger than %d bytes", op, maxScriptResult)
		}
	}
	var res ScriptResult
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("%s: decode: %w", op, err)
	}
	res.ScriptOutput = strings.TrimRight(res.ScriptOutput, "\x00")
	res.ScriptErrors = strings.TrimRight(res.ScriptErrors, "\x00")
	return &res, nil
}

// limitedWriter fails once more than n bytes were written, so a hostile result cannot fill memory.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("result larger than allowed")
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
