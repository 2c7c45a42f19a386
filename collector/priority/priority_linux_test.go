package priority

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// threadNice reads the nice value of one thread: field 19 of its stat file,
// counted after the parenthesised name.
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc/self/task", strconv.Itoa(tid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatalf("stat of thread %d: %v", tid, err)
	}
	return n
}

func threads(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var tids []int
	for _, e := range entries {
		tid, _ := strconv.Atoi(e.Name())
		tids = append(tids, tid)
	}
	return tids
}

func TestLower(t *testing.T) {
	// One thread is already nicer than Lower's target; it must stay so.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	nicer := syscall.Gettid()
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, nicer, 15); err != nil {
		t.Fatal(err)
	}

	if err := Lower(); err != nil {
		t.Fatalf("Lower: %v", err)
	}
	for _, tid := range threads(t) {
		want := Nice
		if tid == nicer {
			want = 15
		}
		if got := threadNice(t, tid); got != want {
			t.Errorf("thread %d nice = %d, want %d", tid, got, want)
		}
		prio, _, e := syscall.Syscall(syscall.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
		if e != 0 {
			t.Fatalf("ioprio_get(%d): %v", tid, e)
		}
		if class, level := prio>>ioprioClassShift, prio&0xff; class != ioprioClassBE || level != ioprioLevel {
			t.Errorf("thread %d io priority = class %d level %d, want best-effort %d", tid, class, level, ioprioLevel)
		}
	}
	// A second call changes nothing and does not fail.
	if err := Lower(); err != nil {
		t.Fatalf("second Lower: %v", err)
	}
}
