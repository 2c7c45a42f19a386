package defendersim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ScriptResult is the document a RunScript result link serves (§5.2).
type ScriptResult struct {
	ScriptName   string `json:"script_name"`
	ExitCode     int    `json:"exit_code"`
	ScriptOutput string `json:"script_output"`
	ScriptErrors string `json:"script_errors"`
}

// maxScriptOutput caps script_output and script_errors each.
const maxScriptOutput = 4 << 20

var errScriptTimeout = errors.New("timeout")

// runScript runs a library script on the device: `.sh` with bash on Linux and macOS devices, `.ps1`
// through the stand-in on Windows devices. The script is killed after the script timeout.
func (s *Sim) runScript(ctx context.Context, d *device, root, work string, f libraryFile, args string) (ScriptResult, error) {
	name := f.entry.FileName
	ext := strings.ToLower(filepath.Ext(name))
	switch {
	case ext == ".ps1" && d.host.OS == "windows", ext == ".sh" && d.host.OS != "windows":
	default:
		return ScriptResult{}, fmt.Errorf("script '%s' cannot run on %s: only %s scripts run there", name, d.m.OSPlatform, map[bool]string{true: ".ps1", false: ".sh"}[d.host.OS == "windows"])
	}
	argv, err := splitArgs(args)
	if err != nil {
		return ScriptResult{}, fmt.Errorf("script arguments: %w", err)
	}
	if err := replaceFile(filepath.Join(work, name), f.data, 0o755, false); err != nil {
		return ScriptResult{}, errors.New("failed to copy the script to the device")
	}
	timeout := s.clock.real(s.limits.ScriptTimeout)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errScriptTimeout)
	defer cancel()
	if !scriptNamesRoot(f.data) {
		root = "" // see needsRoot
	}
	env := s.scriptEnv(d, root, work)
	var res ScriptResult
	if ext == ".sh" {
		res, err = s.runBash(ctx, work, name, argv, env)
	} else {
		res, err = s.runStandIn(ctx, work, name, f.data, argv, env)
	}
	if errors.Is(context.Cause(ctx), errScriptTimeout) {
		return ScriptResult{}, fmt.Errorf("script execution timed out after %s", s.limits.ScriptTimeout)
	}
	if ctx.Err() != nil {
		return ScriptResult{}, errors.New("script execution was cancelled")
	}
	res.ScriptName = name
	return res, err
}

// scriptEnv is the whole environment of a script: nothing of the emulator's own leaks in except the
// PATH and TLS trust settings a collector needs.
func (s *Sim) scriptEnv(d *device, root, work string) []string {
	env := []string{
		"QUARRY_SIM_MACHINE_ID=" + d.m.ID,
		"QUARRY_SIM_HOSTNAME=" + d.m.ComputerDNSName,
		"QUARRY_SIM_OS=" + d.host.OS,
		"HOME=" + work,
		"TMPDIR=" + work,
		"LANG=C.UTF-8",
		"TZ=UTC",
	}
	if root != "" {
		env = append(env, "QUARRY_ROOT="+root)
	}
	for _, k := range []string{"PATH", "SSL_CERT_FILE", "SSL_CERT_DIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// runProcess runs a program in its own process group, waits for it, and kills the group when ctx
// ends. Output goes through files, not pipes, so a child the script leaves running in the
// background (the bootstrap's detached collector) does not hold the command open.
func (s *Sim) runProcess(ctx context.Context, dir string, env []string, prog string, args ...string) (stdout, stderr []byte, exit int, err error) {
	outF, err := os.CreateTemp(dir, ".stdout-*")
	if err != nil {
		return nil, nil, -1, err
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	errF, err := os.CreateTemp(dir, ".stderr-*")
	if err != nil {
		return nil, nil, -1, err
	}
	defer os.Remove(errF.Name())
	defer errF.Close()

	cmd, err := startCommand(func() *exec.Cmd {
		cmd := exec.Command(prog, args...)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, outF, errF
		return cmd
	})
	if err != nil {
		return nil, nil, -1, err
	}
	s.trackProcess(cmd.Process.Pid)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		killGroup(cmd.Process.Pid)
		werr = <-waited
	}
	exit = 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		exit = ee.ExitCode()
	} else if werr != nil {
		return nil, nil, -1, werr
	}
	stdout, _ = readCapped(outF.Name())
	stderr, _ = readCapped(errF.Name())
	return stdout, stderr, exit, nil
}

func readCapped(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxScriptOutput))
}

func (s *Sim) runBash(ctx context.Context, work, name string, argv, env []string) (ScriptResult, error) {
	stdout, stderr, exit, err := s.runProcess(ctx, work, env, "bash", append([]string{"./" + name}, argv...)...)
	if err != nil && ctx.Err() == nil {
		return ScriptResult{}, errors.New("failed to start bash on the device")
	}
	return ScriptResult{ExitCode: exit, ScriptOutput: string(stdout), ScriptErrors: string(stderr)}, nil
}

func (s *Sim) trackProcess(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs[pid] = struct{}{}
}

// killProcesses ends every process group a script started, including children left in the background.
func (s *Sim) killProcesses() {
	s.mu.Lock()
	pids := make([]int, 0, len(s.procs))
	for pid := range s.procs {
		pids = append(pids, pid)
	}
	s.procs = map[int]struct{}{}
	s.mu.Unlock()
	for _, pid := range pids {
		killGroup(pid)
	}
}

// splitArgs splits a script's Args string into words at blanks; single or double quotes group words.
// Backslashes are literal, so Windows paths pass through unchanged; nothing is expanded.
func splitArgs(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'' || c == '"':
			inWord = true
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c quote", c)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// standInStep is one `# quarry-sim:` header line of a PowerShell script (see doc.go).
type standInStep struct {
	verb string
	args []string
	line int
}

// standInVerbs are the verbs the stand-in implements; doc.go documents each (a test keeps them in step).
var standInVerbs = map[string]int{ // verb → minimum number of arguments
	"echo": 0, "download": 5, "run": 1, "start": 1, "write": 2, "sleep": 1, "exit": 1,
}

const standInPrefix = "quarry-sim:"

// parseStandIn reads the `# quarry-sim:` lines of a script.
func parseStandIn(script []byte) ([]standInStep, error) {
	var steps []standInStep
	for n, line := range strings.Split(string(script), "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "#") {
			continue
		}
		t = strings.TrimSpace(strings.TrimPrefix(t, "#"))
		if !strings.HasPrefix(t, standInPrefix) {
			continue
		}
		words, err := splitArgs(strings.TrimSpace(t[len(standInPrefix):]))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		if len(words) == 0 {
			return nil, fmt.Errorf("line %d: empty quarry-sim step", n+1)
		}
		verb := strings.ToLower(words[0])
		minArgs, ok := standInVerbs[verb]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown quarry-sim verb %q", n+1, words[0])
		}
		if len(words)-1 < minArgs {
			return nil, fmt.Errorf("line %d: %s needs at least %d arguments", n+1, verb, minArgs)
		}
		if verb == "download" && (!strings.EqualFold(words[2], "sha256") || !strings.EqualFold(words[4], "to") ||
			len(words) != 6 && (len(words) != 8 || !strings.EqualFold(words[6], "bearer"))) {
			return nil, fmt.Errorf("line %d: download must read: download <url> sha256 <hex> to <name> [bearer <token>]", n+1)
		}
		steps = append(steps, standInStep{verb: verb, args: words[1:], line: n + 1})
	}
	return steps, nil
}

// expand replaces the placeholders {args}, {argN}, {root} and {work} in a step's words.
func expand(words, argv []string, root, work string) []string {
	var out []string
	for _, w := range words {
		if w == "{args}" {
			out = append(out, argv...)
			continue
		}
		w = strings.ReplaceAll(w, "{root}", root)
		w = strings.ReplaceAll(w, "{work}", work)
		for i := len(argv); i >= 1; i-- {
			w = strings.ReplaceAll(w, "{arg"+strconv.Itoa(i)+"}", argv[i-1])
		}
		out = append(out, w)
	}
	return out
}

// runStandIn performs the steps a PowerShell script declares, since PowerShell cannot run here.
func (s *Sim) runStandIn(ctx context.Context, work, name string, script []byte, argv, env []string) (ScriptResult, error) {
	var out, errs strings.Builder
	out.WriteString(`Transcript started, output file is C:\ProgramData\Microsoft\Windows Defender Advanced Threat Protection\Temp\PSScriptOutputs\PSScript_Transcript_{` + strings.ToUpper(newGUID()) + "}.txt\n")
	res := func(code int) (ScriptResult, error) {
		return ScriptResult{ExitCode: code, ScriptOutput: out.String(), ScriptErrors: errs.String()}, nil
	}
	steps, err := parseStandIn(script)
	if err != nil {
		fmt.Fprintf(&errs, "quarry-sim: %v\n", err)
		return res(1)
	}
	if len(steps) == 0 {
		errs.WriteString("quarry-sim: the script declares no '# quarry-sim:' steps, so nothing was run\n")
		return res(0)
	}
	root := envValue(env, "QUARRY_ROOT")
	for _, st := range steps {
		if ctx.Err() != nil {
			return res(1)
		}
		a := expand(st.args, argv, root, work)
		switch st.verb {
		case "echo":
			out.WriteString(strings.Join(a, " ") + "\n")
		case "write":
			p, err := workPath(work, a[0])
			if err == nil {
				err = replaceFile(p, []byte(strings.Join(a[1:], " ")+"\n"), 0o644, false)
			}
			if err != nil {
				fmt.Fprintf(&errs, "write %s: %v\n", a[0], err)
				return res(1)
			}
		case "sleep":
			dur, err := time.ParseDuration(a[0])
			if err != nil {
				fmt.Fprintf(&errs, "sleep: %v\n", err)
				return res(1)
			}
			t := time.NewTimer(s.clock.real(dur))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return res(1)
			}
		case "exit":
			code, err := strconv.Atoi(a[0])
			if err != nil {
				fmt.Fprintf(&errs, "exit: %v\n", err)
				return res(1)
			}
			return res(code)
		case "download":
			bearer := ""
			if len(a) == 7 {
				bearer = a[6]
			}
			if err := s.download(ctx, a[0], a[2], work, a[4], bearer); err != nil {
				fmt.Fprintf(&errs, "download %s: %v\n", a[0], err)
				return res(1)
			}
			fmt.Fprintf(&out, "Downloaded %s\n", a[4])
		case "run", "start":
			prog, err := programPath(work, a[0])
			if err != nil {
				fmt.Fprintf(&errs, "%s %s: %v\n", st.verb, a[0], err)
				return res(1)
			}
			if st.verb == "start" {
				if err := s.startDetached(work, env, prog, a[1:]); err != nil {
					fmt.Fprintf(&errs, "start %s: %v\n", a[0], err)
					return res(1)
				}
				fmt.Fprintf(&out, "Started %s\n", a[0])
				continue
			}
			stdout, stderr, code, err := s.runProcess(ctx, work, env, prog, a[1:]...)
			if err != nil {
				fmt.Fprintf(&errs, "run %s: %v\n", a[0], err)
				return res(1)
			}
			out.Write(stdout)
			errs.Write(stderr)
			if code != 0 {
				return res(code)
			}
		}
	}
	return res(0)
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// workPath resolves a file name inside the working folder; names may not leave it.
func workPath(work, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("%q must be a plain file name in the working folder", name)
	}
	return filepath.Join(work, name), nil
}

// programPath resolves what run/start execute: a file in the working folder or an absolute path.
func programPath(work, name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	return workPath(work, name)
}

// startDetached starts a program that outlives the script, as the bootstrap starts quarry-host.
// startCommand starts the command newCmd makes in its own process group, trying again for a
// moment while the program file is busy (textBusy).
func startCommand(newCmd func() *exec.Cmd) (*exec.Cmd, error) {
	for try := 0; ; try++ {
		cmd := newCmd()
		setProcessGroup(cmd)
		err := cmd.Start()
		if err == nil || !textBusy(err) || try == 50 {
			return cmd, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Sim) startDetached(work string, env []string, prog string, args []string) error {
	logf, err := os.OpenFile(filepath.Join(work, filepath.Base(prog)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd, err := startCommand(func() *exec.Cmd {
		cmd := exec.Command(prog, args...)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = work, env, logf, logf
		return cmd
	})
	if err != nil {
		logf.Close()
		return err
	}
	s.trackProcess(cmd.Process.Pid)
	s.goBackground(func() {
		cmd.Wait()
		logf.Close()
	})
	return nil
}

// fetch makes one download: its body (bounded) and status.
func fetch(client *http.Client, req *http.Request) ([]byte, int, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDownload+1))
	return data, resp.StatusCode, err
}

// downloadTries and downloadRetryDelay are the Windows bootstrap's download retries.
const (
	downloadTries      = 7
	downloadRetryDelay = 5 * time.Second
)

// maxDownload bounds the stand-in's downloads.
const maxDownload = 512 << 20

// download fetches a program for the stand-in; bearer, when set, is sent as the Authorization, as a
// bootstrap sends its enrolment token to Quarry's collector download.
func (s *Sim) download(ctx context.Context, rawURL, wantHex, work, name, bearer string) error {
	dest, err := workPath(work, name)
	if err != nil {
		return err
	}
	want, err := hex.DecodeString(wantHex)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%q is not a SHA-256 in hex", wantHex)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	client := s.opts.DownloadClient
	if client == nil {
		client = http.DefaultClient
	}
	// As the Windows bootstrap does: no connection, a cut-off body, 429 or 5xx is tried again
	// every 5 s (real seconds, as on a host) up to seven times.
	var data []byte
	for try := 1; ; try++ {
		var status int
		data, status, err = fetch(client, req)
		transient := err != nil || status == http.StatusTooManyRequests || status >= 500
		if !transient || try >= downloadTries || ctx.Err() != nil {
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("HTTP %d", status)
			}
			break
		}
		select {
		case <-time.After(downloadRetryDelay):
		case <-ctx.Done():
		}
	}
	if err != nil {
		return err
	}
	if len(data) > maxDownload {
		return errors.New("download too large")
	}
	got := sha256.Sum256(data)
	if !bytes.Equal(got[:], want) {
		return fmt.Errorf("SHA-256 mismatch: got %x", got)
	}
	return replaceFile(dest, data, 0o755, false)
}
