package priority

import (
	"errors"
	"fmt"

	"golang.org/x/sys/windows"
)

// Lower puts the process in the below-normal priority class and then in
// background mode, which also lowers its disk and memory priority.
func Lower() error {
	self := windows.CurrentProcess()
	var errs []error
	if err := windows.SetPriorityClass(self, windows.BELOW_NORMAL_PRIORITY_CLASS); err != nil {
		errs = append(errs, fmt.Errorf("priority: below normal: %w", err))
	}
	if err := windows.SetPriorityClass(self, windows.PROCESS_MODE_BACKGROUND_BEGIN); err != nil {
		errs = append(errs, fmt.Errorf("priority: background mode: %w", err))
	}
	return errors.Join(errs...)
}
