package ntfs

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/windows"
)

// OpenVolume opens the raw volume of drive (`\\.\C:`) for reading. It needs
// administrator rights. The result is an *os.File; close it when done. Its
// signature fits the open argument of Fallback.
func OpenVolume(drive string) (io.ReaderAt, error) {
	d, err := parseDrive(drive)
	if err != nil {
		return nil, err
	}
	name := `\\.\` + d
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, fmt.Errorf("ntfs: open %s: %w", name, err)
	}
	// Other processes keep the volume open for writing; without sharing
	// read, write and delete the open fails with a sharing violation.
	h, err := windows.CreateFile(p, windows.GENERIC_READ,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, fmt.Errorf("ntfs: open %s: %w", name, err)
	}
	return os.NewFile(uintptr(h), name), nil
}
