//go:build darwin

package livestate

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// processes lists processes through sysctl kern.proc.all and reads each
// command line from kern.procargs2, which needs no cgo.
func processes(ctx context.Context, h *hasher) ([]Process, error) {
	kps, err := unix.SysctlKinfoProcSlice("kern.proc.all")
	if err != nil {
		return nil, fmt.Errorf("sysctl kern.proc.all: %w", err)
	}
	names := map[uint32]string{}
	out := make([]Process, 0, len(kps))
	for _, kp := range kps {
		p := Process{
			PID:  int(kp.Proc.P_pid),
			PPID: int(kp.Eproc.Ppid),
			Name: cString(kp.Proc.P_comm[:]),
		}
		if tv := kp.Proc.P_starttime; tv.Sec > 0 {
			p.StartTime = time.Unix(int64(tv.Sec), int64(tv.Usec)*1000).UTC()
		}
		uid := kp.Eproc.Pcred.P_ruid
		if _, ok := names[uid]; !ok {
			names[uid] = strconv.Itoa(int(uid))
			if u, err := user.LookupId(names[uid]); err == nil {
				names[uid] = u.Username
			}
		}
		p.User = names[uid]
		if args, err := unix.SysctlRaw("kern.procargs2", p.PID); err == nil {
			p.Exe, p.CommandLine = parseProcArgs(args)
		}
		if exe := p.Exe; exe != "" {
			p.ExeSHA256, p.ExeError = h.hash(ctx, exe, func() (*os.File, error) { return os.Open(exe) })
		}
		out = append(out, p)
	}
	return out, nil
}

func connections(context.Context) ([]Connection, error) {
	return nil, fmt.Errorf("network connections on darwin: %w", errUnsupported)
}

func users(context.Context) ([]User, error) {
	return nil, fmt.Errorf("logged-on users on darwin: %w", errUnsupported)
}
