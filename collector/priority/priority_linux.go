package priority

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

const (
	ioprioWhoProcess = 1
	ioprioClassShift = 13
	// ioprioClassBE with level 7 is the lowest best-effort priority. The
	// idle class would be gentler still, but on a busy disk it can starve
	// the collection completely, and the collection has a deadline.
	ioprioClassBE = 2
	ioprioLevel   = 7
)

// ioprio is the value given to ioprio_set.
const ioprio = ioprioClassBE<<ioprioClassShift | ioprioLevel

// Lower sets nice 10 and the lowest best-effort IO priority on every thread
// of the process. On Linux both are per thread; threads the Go runtime
// starts later inherit them from the thread that creates them, so all
// existing threads are changed. A thread already at a lower priority is left
// alone.
func Lower() error {
	// Linux sets priorities per thread, and a thread starts with its creator's. A thread the Go
	// runtime starts during a pass, from a thread not lowered yet, is not in that pass's list:
	// pass again until a pass meets no new thread. After that every thread is lowered, and so is
	// every thread they start.
	done := map[int]bool{}
	var errs []error
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("priority: list threads: %w", err)
		}
		fresh := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			done[tid], fresh = true, true
			// getpriority returns 20 - nice on Linux.
			if prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid); err == nil && 20-prio < Nice {
				if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, Nice); err != nil && !errors.Is(err, syscall.ESRCH) {
					errs = append(errs, fmt.Errorf("priority: nice thread %d: %w", tid, err))
				}
			}
			if _, _, e := syscall.Syscall(syscall.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprio); e != 0 && e != syscall.ESRCH {
				errs = append(errs, fmt.Errorf("priority: ioprio thread %d: %w", tid, e))
			}
		}
		if !fresh {
			break
		}
	}
	return errors.Join(errs...)
}
