package livestate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// maxBinarySize is the size budget of a stripped quarry-host: it travels
// through Live Response, whose uploads are limited and slow.
const maxBinarySize = 10 << 20

// TestCrossCompile builds the collector with CGO_ENABLED=0 for every
// supported platform and checks the stripped binary stays under 10 MB. It
// lives here because live state is the most OS-specific part of the
// collector. Until cmd/quarry-host exists it compiles the collector packages.
func TestCrossCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling six binaries is slow; runs without -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(root, "cmd", "quarry-host", "main.go"))
	binary := err == nil
	out := t.TempDir()
	sem := make(chan struct{}, 2) // CI has two cores
	for _, goos := range []string{"windows", "linux", "darwin"} {
		for _, goarch := range []string{"amd64", "arm64"} {
			t.Run(goos+"_"+goarch, func(t *testing.T) {
				t.Parallel()
				sem <- struct{}{}
				defer func() { <-sem }()
				exe := filepath.Join(out, fmt.Sprintf("quarry-host-%s-%s", goos, goarch))
				if goos == "windows" {
					exe += ".exe"
				}
				args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", exe, "./cmd/quarry-host"}
				if !binary {
					args = []string{"build", "-trimpath", "./fsaccess/...", "./collector/..."}
				}
				cmd := exec.Command(goTool, args...)
				cmd.Dir = root
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
				if msg, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("go %v: %v\n%s", args, err, msg)
				}
				if !binary {
					t.Logf("%s/%s: collector packages compile (cmd/quarry-host not present yet)", goos, goarch)
					return
				}
				fi, err := os.Stat(exe)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s/%s: %d bytes (%.2f MiB)", goos, goarch, fi.Size(), float64(fi.Size())/(1<<20))
				if fi.Size() > maxBinarySize {
					t.Errorf("%s/%s quarry-host is %d bytes, over the %d byte budget", goos, goarch, fi.Size(), maxBinarySize)
				}
			})
		}
	}
}
