//go:build unix

package defendersim

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts a script in its own process group so that a timeout or cancellation kills
// everything it started.
func setProcessGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

func killGroup(pid int) { syscall.Kill(-pid, syscall.SIGKILL) }
