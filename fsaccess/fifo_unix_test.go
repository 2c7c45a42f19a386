//go:build unix

package fsaccess_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/quarry-dfir/quarry/fsaccess"
)

func TestOSOpenFIFO(t *testing.T) {
	root := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(root, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	acc, err := fsaccess.NewOS("linux", root)
	if err != nil {
		t.Fatal(err)
	}
	// A blocking open of a FIFO without a writer would hang this test forever.
	if _, err := acc.Open("/pipe"); !errors.Is(err, fsaccess.ErrSpecialFile) {
		t.Errorf("Open(fifo) = %v, want ErrSpecialFile", err)
	}
	fi, err := acc.Lstat("/pipe")
	if err != nil || fi.Mode&os.ModeNamedPipe == 0 {
		t.Errorf("Lstat(fifo) = %+v, %v", fi, err)
	}
}
