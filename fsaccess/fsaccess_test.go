package fsaccess_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/quarry-dfir/quarry/fsaccess"
)

func TestPaths(t *testing.T) {
	tests := []struct {
		goos, in, clean, dir, name, rel string
	}{
		{"windows", `C:\Windows\System32\config\SYSTEM`, `C:\Windows\System32\config\SYSTEM`, `C:\Windows\System32\config`, "SYSTEM", "C/Windows/System32/config/SYSTEM"},
		{"windows", `c:/Windows//x/../y`, `C:\Windows\y`, `C:\Windows`, "y", "C/Windows/y"},
		{"windows", `C:\..\..\x`, `C:\x`, `C:\`, "x", "C/x"},
		{"windows", `C:`, `C:\`, `C:\`, "", "C"},
		{"linux", "/var/log/../log/auth.log", "/var/log/auth.log", "/var/log", "auth.log", "var/log/auth.log"},
		{"linux", "/../../etc/passwd", "/etc/passwd", "/etc", "passwd", "etc/passwd"},
		{"darwin", "/a", "/a", "/", "a", "a"},
	}
	for _, tt := range tests {
		if got := fsaccess.Clean(tt.goos, tt.in); got != tt.clean {
			t.Errorf("Clean(%s, %q) = %q, want %q", tt.goos, tt.in, got, tt.clean)
		}
		dir, name := fsaccess.Split(tt.goos, tt.in)
		if tt.name != "" && (dir != tt.dir || name != tt.name) {
			t.Errorf("Split(%s, %q) = %q, %q, want %q, %q", tt.goos, tt.in, dir, name, tt.dir, tt.name)
		}
		rel, ok := fsaccess.ArchivePath(tt.goos, tt.in)
		if !ok || rel != tt.rel {
			t.Errorf("ArchivePath(%s, %q) = %q, %v, want %q", tt.goos, tt.in, rel, ok, tt.rel)
		}
		if back, ok := fsaccess.FromArchivePath(tt.goos, rel); !ok || back != tt.clean {
			t.Errorf("FromArchivePath(%s, %q) = %q, want %q", tt.goos, rel, back, tt.clean)
		}
	}
	if got := fsaccess.Join("windows", `C:\`, "Users", "a"); got != `C:\Users\a` {
		t.Errorf("Join = %q", got)
	}
	if _, ok := fsaccess.ArchivePath("linux", "relative/x"); ok {
		t.Error("ArchivePath accepted a relative path")
	}
}

func write(t *testing.T, root, rel, data string) string {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOSRootWindowsCaseInsensitive(t *testing.T) {
	root := t.TempDir()
	write(t, root, "C/Windows/System32/drivers/etc/hosts", "127.0.0.1 localhost\n")
	acc, err := fsaccess.NewOS("windows", root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`C:\Windows\System32\drivers\etc\hosts`, `c:\WINDOWS\system32\DRIVERS\etc\HOSTS`, `c:/windows/system32/drivers/etc/hosts`} {
		f, err := acc.Open(p)
		if err != nil {
			t.Errorf("Open(%q) = %v", p, err)
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != "127.0.0.1 localhost\n" {
			t.Errorf("Open(%q) read %q", p, b)
		}
	}
	if got := acc.Roots(); len(got) != 1 || got[0] != `C:\` {
		t.Errorf("Roots() = %q, want [C:\\]", got)
	}
	ents, err := acc.ReadDir(`c:\windows\system32`)
	if err != nil || len(ents) != 1 || ents[0].Path != `C:\Windows\System32\drivers` || !ents[0].IsDir() {
		t.Errorf("ReadDir = %+v, %v", ents, err)
	}
	if _, err := acc.Lstat(`C:\Windows\nope`); !errors.Is(err, fsaccess.ErrNotExist) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lstat(missing) = %v, want ErrNotExist", err)
	}
}

func TestOSRootSymlinks(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	write(t, outside, "etc/secret", "host file")
	write(t, root, "etc/secret", "image file")
	write(t, root, "var/log/auth.log", "log")
	mustSymlink(t, "/etc", filepath.Join(root, "abslink"))                     // absolute: the image's /etc
	mustSymlink(t, "../../../../../../../..", filepath.Join(root, "up"))       // climbs: stays at the root
	mustSymlink(t, "loop2", filepath.Join(root, "loop1"))                      // loop
	mustSymlink(t, "loop1", filepath.Join(root, "loop2"))                      //
	mustSymlink(t, "/dev/null", filepath.Join(root, "var/log/null"))           // device behind a link
	mustSymlink(t, filepath.Join(outside, "etc"), filepath.Join(root, "host")) // absolute path of the host
	acc, err := fsaccess.NewOS("linux", root)
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) (string, error) {
		f, err := acc.Open(p)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		return string(b), err
	}
	tests := []struct {
		path, want string
		err        error
	}{
		{"/abslink/secret", "image file", nil},
		{"/up/etc/secret", "image file", nil},
		{"/up/up/var/log/auth.log", "log", nil},
		{"/loop1/x", "", fsaccess.ErrLoop},
		{"/var/log/null", "", fsaccess.ErrSpecialFile},
		{"/host/secret", "", fsaccess.ErrNotExist},
		{"/abslink", "", fsaccess.ErrSpecialFile},
	}
	for _, tt := range tests {
		got, err := read(tt.path)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("read(%q) = %q, %v, want %q, %v", tt.path, got, err, tt.want, tt.err)
		}
	}
	fi, err := acc.Lstat("/var/log/null")
	if err != nil || fi.Mode&os.ModeSymlink == 0 || fi.Link != "/dev/null" {
		t.Errorf("Lstat(link) = %+v, %v, want a symlink to /dev/null", fi, err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestOSLiveTimes(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "f", "data")
	acc, err := fsaccess.NewOS(runtime.GOOS, "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := acc.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size != 4 || fi.ModTime.IsZero() || fi.AccessTime.IsZero() || fi.ReadVia != "os" {
		t.Errorf("Stat = %+v, want size 4 with mtime and atime", fi)
	}
	if runtime.GOOS != "windows" && fi.ChangeTime.IsZero() {
		t.Errorf("Stat: no ctime on %s", runtime.GOOS)
	}
	if _, err := fsaccess.NewOS("plan9", ""); err == nil {
		t.Error("NewOS accepted an unknown OS")
	}
}

func TestOSPermission(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("running as root (or on Windows): chmod 000 does not keep root out, nothing to test")
	}
	root := t.TempDir()
	p := write(t, root, "secret", "x")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	acc, _ := fsaccess.NewOS("linux", root)
	if _, err := acc.Open("/secret"); !errors.Is(err, fsaccess.ErrPermission) {
		t.Errorf("Open(0000 file) = %v, want ErrPermission", err)
	}
}
