//go:build unix

package collector_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/quarry-dfir/quarry/collector"
)

func TestCollectHostileTree(t *testing.T) {
	root := t.TempDir()
	long := strings.Repeat("L", 250) + ".log"
	writeFiles(t, root, map[string]string{
		"var/log/ok.log":                 "fine",
		"var/log/" + long:                "long but legal",
		"var/log/bad\xff.log":            "invalid utf-8",
		"var/log/new\nline.log":          "newline",
		"var/log/invoice\u202Egol.exe":   "rtl override",
		"var/log/deep/a/b/c/d/e/f/g.log": "deep",
	})
	dir := filepath.Join(root, "var/log")
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.log"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"null.log": "/dev/null", "loopA": "loopB", "loopB": "loopA", "self": "."} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	unreadable := filepath.Join(dir, "secret.log")
	writeFiles(t, root, map[string]string{"var/log/secret.log": "secret"})
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	res, _ := collect(t, collector.Options{Root: root, OS: "linux", Groups: []string{"linux.logs"}})
	got, skips := collectedPaths(res.Manifest), skipReasons(res.Manifest)
	for _, p := range []string{"/var/log/ok.log", "/var/log/" + long, "/var/log/deep/a/b/c/d/e/f/g.log"} {
		if got[p] == "" {
			t.Errorf("%s not collected", p)
		}
	}
	want := map[string]string{
		"/var/log/bad\xff.log":          collector.ReasonName,
		"/var/log/new\nline.log":        collector.ReasonName,
		"/var/log/invoice\u202Egol.exe": collector.ReasonName,
		"/var/log/pipe.log":             collector.ReasonSpecialFile,
		"/var/log/null.log":             collector.ReasonSymlink,
		"/var/log/loopA":                collector.ReasonSymlink,
		"/var/log/self":                 collector.ReasonSymlink,
	}
	for p, reason := range want {
		if skips[p] != reason {
			t.Errorf("skip %q = %q, want %q", p, skips[p], reason)
		}
	}
	if os.Geteuid() == 0 {
		t.Log("running as root: chmod 000 does not stop root, the unreadable-file case is not exercised here")
		if got["/var/log/secret.log"] == "" {
			t.Error("root could not collect secret.log")
		}
	} else if skips["/var/log/secret.log"] != collector.ReasonPermission {
		t.Errorf("secret.log skip = %q, want permission", skips["/var/log/secret.log"])
	}
}
