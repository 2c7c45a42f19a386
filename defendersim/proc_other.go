//go:build !unix

package defendersim

import (
	"os"
	"os/exec"
)

// Without process groups only the script itself can be killed; the emulator is meant for Unix hosts.
func setProcessGroup(cmd *exec.Cmd) {}

func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}

func textBusy(error) bool { return false }
