//go:build !linux && !windows && !darwin

package priority

import (
	"fmt"
	"syscall"
)

// Lower sets nice 10 where only the portable setpriority is known.
func Lower() error {
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, Nice); err != nil {
		return fmt.Errorf("priority: nice: %w", err)
	}
	return nil
}
