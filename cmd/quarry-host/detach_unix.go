//go:build !windows

package main

import (
	"os/exec"
	"syscall"
)

// startDetached starts the command in a new session, so it has no controlling terminal and is not
// in the process group that a Live Response session or a shell kills when it ends.
func startDetached(newCmd func() *exec.Cmd) (int, error) {
	cmd := newCmd()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	return pid, cmd.Process.Release()
}
