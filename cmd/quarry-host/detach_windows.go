package main

import (
	"os/exec"
	"syscall"
)

// Process creation flags (winbase.h).
const (
	detachedProcess        = 0x00000008
	createNewProcessGroup  = 0x00000200
	createBreakawayFromJob = 0x01000000
)

// startDetached starts the command without a console, in its own process group, and if the job
// object of the Live Response session allows it, outside that job, so that closing the session
// does not kill the collection. A job that forbids breakaway makes the first try fail with access
// denied; the second try stays in the job, which is the best that can be done then.
func startDetached(newCmd func() *exec.Cmd) (int, error) {
	var err error
	for _, flags := range []uint32{
		detachedProcess | createNewProcessGroup | createBreakawayFromJob,
		detachedProcess | createNewProcessGroup,
	} {
		cmd := newCmd()
		cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: flags, HideWindow: true}
		if err = cmd.Start(); err == nil {
			pid := cmd.Process.Pid
			return pid, cmd.Process.Release()
		}
	}
	return 0, err
}
