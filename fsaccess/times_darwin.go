package fsaccess

import (
	"io/fs"
	"syscall"
	"time"
)

func fillTimes(out *FileInfo, _ string, fi fs.FileInfo) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		out.AccessTime = time.Unix(st.Atimespec.Unix())
		out.ChangeTime = time.Unix(st.Ctimespec.Unix())
		out.BirthTime = time.Unix(st.Birthtimespec.Unix())
	}
}
