package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// tokenEnv carries the upload token to a detached child, so the token is not on its command line
// where every local user can read it in the process list. It is also read when --token is absent.
const tokenEnv = "QUARRY_TOKEN"

// detach starts `quarry-host collect` again with the flags that were set, minus --detach,
// --token and --enrol-token (the parent enrolled; token is the upload token), in a new session (Unix) or a detached process group (Windows), with its output going to
// a log file in spool, and prints one JSON line describing it. It does not wait: a Live Response
// script must finish in seconds, and the collection may take an hour.
func detach(fs *flag.FlagSet, token string, acquisition int64, spool string, stdout io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	name := fmt.Sprintf("quarry-host-%s-%d.log", time.Now().UTC().Format("20060102T150405Z"), os.Getpid())
	logPath, err := filepath.Abs(filepath.Join(spool, name))
	if err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("detach: log file: %w", err)
	}
	defer logFile.Close()

	args := []string{"collect"}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "detach", "token", "enrol-token":
			return
		}
		if l, ok := f.Value.(*stringList); ok {
			for _, v := range *l {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	env := os.Environ()
	if token != "" {
		env = append(env, tokenEnv+"="+token)
	}
	pid, err := startDetached(func() *exec.Cmd {
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.Env = env
		return cmd
	})
	if err != nil {
		return fmt.Errorf("detach: start: %w", err)
	}
	return json.NewEncoder(stdout).Encode(struct {
		Status      string `json:"status"`
		Acquisition int64  `json:"acquisition,omitempty"` // the server's, when one was asked
		PID         int    `json:"pid"`
		Log         string `json:"log"`
	}{"started", acquisition, pid, logPath})
}
