//go:build windows

package fsaccess

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"
)

func openNoBlock(name string) (*os.File, error) { return os.Open(name) }

// isLocked recognises ERROR_SHARING_VIOLATION and ERROR_LOCK_VIOLATION: files the system holds open
// (hives, the pagefile) that only the raw NTFS accessor can read.
func isLocked(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == 32 || errno == 33)
}

func fillTimes(out *FileInfo, _ string, fi fs.FileInfo) {
	if d, ok := fi.Sys().(*syscall.Win32FileAttributeData); ok {
		out.AccessTime = time.Unix(0, d.LastAccessTime.Nanoseconds())
		out.BirthTime = time.Unix(0, d.CreationTime.Nanoseconds())
	}
}
