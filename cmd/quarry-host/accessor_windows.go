package main

import (
	"io"

	"github.com/quarry-dfir/quarry/fsaccess"
	"github.com/quarry-dfir/quarry/fsaccess/ntfs"
)

// liveAccessor reads the live Windows host through the OS and, for files the OS refuses (locked
// registry hives, the $MFT, the USN journal), through the raw NTFS volume. A --root collection, or
// one for another OS, uses the collector's default accessor.
func liveAccessor(root, goos string) (fsaccess.Accessor, func(), error) {
	if root != "" || (goos != "auto" && goos != "windows") {
		return nil, func() {}, nil
	}
	primary, err := fsaccess.NewOS("windows", "")
	if err != nil {
		return nil, nil, err
	}
	acc := ntfs.Fallback(primary, ntfs.OpenVolume)
	return acc, func() {
		if c, ok := acc.(io.Closer); ok {
			c.Close()
		}
	}, nil
}
