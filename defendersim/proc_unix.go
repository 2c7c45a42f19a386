//go:build unix

package defendersim

import (
	"errors"
	"os/exec"
	"syscall"
)

// setProcessGroup puts a script in its own process group so that a timeout or cancellation kills
// everything it started.
func setProcessGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

func killGroup(pid int) { syscall.Kill(-pid, syscall.SIGKILL) }

// textBusy reports an exec refused because the program file is open for writing. A program the
// stand-in just downloaded can be: a process forked elsewhere in the emulator at that moment
// inherits the download's descriptor until it execs (golang.org/issue/22315).
func textBusy(err error) bool { return errors.Is(err, syscall.ETXTBSY) }
