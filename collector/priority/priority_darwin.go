package priority

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

const (
	prioDarwinProcess = 4      // PRIO_DARWIN_PROCESS
	prioDarwinBG      = 0x1000 // PRIO_DARWIN_BG: throttled disk and network IO
)

// Lower sets nice 10 and marks the process as background, which throttles
// its IO; setiopolicy_np needs cgo, the setpriority form does not.
func Lower() error {
	var errs []error
	if n, err := unix.Getpriority(unix.PRIO_PROCESS, 0); err == nil && n < Nice {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, Nice); err != nil {
			errs = append(errs, fmt.Errorf("priority: nice: %w", err))
		}
	}
	if err := unix.Setpriority(prioDarwinProcess, 0, prioDarwinBG); err != nil {
		errs = append(errs, fmt.Errorf("priority: background: %w", err))
	}
	return errors.Join(errs...)
}
