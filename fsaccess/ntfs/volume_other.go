//go:build !windows

package ntfs

import (
	"fmt"
	"io"
	"runtime"
)

// OpenVolume opens the raw volume of a drive letter, which exists only on
// Windows; elsewhere it always fails. Images are read with New.
func OpenVolume(drive string) (io.ReaderAt, error) {
	return nil, fmt.Errorf("ntfs: open volume %s: raw volumes are only opened on windows, not %s", drive, runtime.GOOS)
}
