package fsaccess

import (
	"io/fs"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fillTimes adds atime and ctime from the stat result and the birth time from statx, when the file
// system records one.
func fillTimes(out *FileInfo, host string, fi fs.FileInfo) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		out.AccessTime = time.Unix(st.Atim.Unix())
		out.ChangeTime = time.Unix(st.Ctim.Unix())
	}
	var stx unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, host, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &stx) == nil && stx.Mask&unix.STATX_BTIME != 0 {
		out.BirthTime = time.Unix(stx.Btime.Sec, int64(stx.Btime.Nsec))
	}
}
