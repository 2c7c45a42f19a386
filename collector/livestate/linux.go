//go:build linux

package livestate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// userHZ is the unit of the start time in /proc/PID/stat. The kernel reports
// it as USER_HZ, which is 100 on every architecture Quarry is built for.
const userHZ = 100

func processes(ctx context.Context, h *hasher) ([]Process, error) {
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	boot, err := bootTime(procRoot)
	if err != nil {
		return nil, err
	}
	names := userNames{}
	out := make([]Process, 0, len(pids))
	for _, pid := range pids {
		p, ok := readProcess(procRoot, pid, boot, names)
		if !ok {
			continue // exited while we were looking
		}
		exe := filepath.Join(procRoot, strconv.Itoa(pid), "exe")
		if p.Exe != "" {
			// /proc/PID/exe opens the very file the process runs, even if it
			// was deleted or lives in another mount namespace.
			p.ExeSHA256, p.ExeError = h.hash(ctx, fileID(exe), func() (*os.File, error) { return os.Open(exe) })
		}
		out = append(out, p)
	}
	return out, nil
}

// listPIDs returns the numeric entries of /proc in ascending order.
func listPIDs(root string) ([]int, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// bootTime reads btime from /proc/stat.
func bootTime(root string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(root, "stat"))
	if err != nil {
		return time.Time{}, fmt.Errorf("boot time: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("boot time: %w", err)
			}
			return time.Unix(sec, 0).UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("boot time: no btime in %s/stat", root)
}

// readProcess reads one /proc/PID folder. Fields the collector may not read
// (other users' exe links without root) are left empty.
func readProcess(root string, pid int, boot time.Time, names userNames) (Process, bool) {
	dir := filepath.Join(root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Process{}, false
	}
	p, ok := parseStat(stat, boot)
	if !ok {
		return Process{}, false
	}
	p.PID = pid
	if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.CommandLine = strings.Join(strings.FieldsFunc(string(bytes.TrimRight(cmd, "\x00")), func(r rune) bool { return r == 0 }), " ")
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		p.User = names.lookup(parseUID(status))
	}
	// Kernel threads have no executable (ENOENT); other failures, such as
	// another user's process without root, are worth stating.
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		p.Exe = exe
	} else if !errors.Is(err, fs.ErrNotExist) {
		p.ExeError = err.Error()
	}
	return p, true
}

// parseStat reads name, parent and start time from /proc/PID/stat. The name
// sits in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(b []byte, boot time.Time) (Process, bool) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Process{}, false
	}
	p := Process{Name: string(b[open+1 : end])}
	fields := strings.Fields(string(b[end+1:]))
	// fields[0] is the state; ppid is field 4 of stat, starttime field 22.
	if len(fields) < 20 {
		return Process{}, false
	}
	p.PPID, _ = strconv.Atoi(fields[1])
	if ticks, err := strconv.ParseInt(fields[19], 10, 64); err == nil && !boot.IsZero() {
		p.StartTime = boot.Add(time.Duration(ticks) * time.Second / userHZ).UTC()
	}
	return p, true
}

// parseUID returns the real uid from /proc/PID/status, or -1.
func parseUID(status []byte) int {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				if uid, err := strconv.Atoi(f[0]); err == nil {
					return uid
				}
			}
		}
	}
	return -1
}

// userNames caches uid → name lookups (os/user reads /etc/passwd without cgo).
type userNames map[int]string

func (u userNames) lookup(uid int) string {
	if uid < 0 {
		return ""
	}
	if name, ok := u[uid]; ok {
		return name
	}
	name := strconv.Itoa(uid)
	if usr, err := user.LookupId(name); err == nil {
		name = usr.Username
	}
	u[uid] = name
	return name
}

// fileID names a file by device and inode, so each executable is hashed once
// however many processes run it.
func fileID(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func connections(ctx context.Context) ([]Connection, error) {
	owners := socketOwners(procRoot)
	var out []Connection
	var errs []string
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(filepath.Join(procRoot, "net", proto))
		if os.IsNotExist(err) {
			continue // IPv6 disabled
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		conns, err := parseProcNet(proto, b, owners)
		if err != nil {
			errs = append(errs, err.Error())
		}
		out = append(out, conns...)
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// socketOwners maps socket inodes to the pid holding them, from the
// /proc/PID/fd links ("socket:[12345]"). Without root only the collector's
// own processes are visible; their sockets then have no pid.
func socketOwners(root string) map[uint64]int {
	owners := map[uint64]int{}
	pids, _ := listPIDs(root)
	for _, pid := range pids {
		fdDir := filepath.Join(root, strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			if v, ok := strings.CutPrefix(link, "socket:["); ok {
				if inode, err := strconv.ParseUint(strings.TrimSuffix(v, "]"), 10, 64); err == nil {
					if _, seen := owners[inode]; !seen {
						owners[inode] = pid
					}
				}
			}
		}
	}
	return owners
}

func users(context.Context) ([]User, error) {
	f, err := os.Open("/var/run/utmp")
	if err != nil {
		return nil, fmt.Errorf("utmp: %w", err)
	}
	defer f.Close()
	return parseUtmp(f)
}
