package fsaccess

import (
	"path"
	"strings"
)

// Windows paths use backslashes and a drive prefix; every other OS uses POSIX paths.
func isWindows(goos string) bool { return goos == "windows" }

// Clean returns the shortest equivalent of p in goos's syntax. Windows paths accept either slash and come
// back with backslashes and an upper-case drive letter (`c:/x/../y` → `C:\y`); ".." never climbs above the
// root.
func Clean(goos, p string) string {
	if !isWindows(goos) {
		if p == "" {
			return "."
		}
		return path.Clean(p)
	}
	p = strings.ReplaceAll(p, `\`, "/")
	drive := ""
	if len(p) >= 2 && p[1] == ':' && isLetter(p[0]) {
		drive = strings.ToUpper(p[:1]) + ":"
		p = p[2:]
	}
	c := path.Clean(p)
	if drive != "" && !strings.HasPrefix(c, "/") {
		c = "/" + strings.TrimPrefix(c, ".")
		c = path.Clean(c)
	}
	return drive + strings.ReplaceAll(c, "/", `\`)
}

// Join joins path elements with goos's separator and cleans the result.
func Join(goos string, elem ...string) string {
	sep := "/"
	if isWindows(goos) {
		sep = `\`
	}
	var nonEmpty []string
	for _, e := range elem {
		if e != "" {
			nonEmpty = append(nonEmpty, e)
		}
	}
	if len(nonEmpty) == 0 {
		return ""
	}
	return Clean(goos, strings.Join(nonEmpty, sep))
}

// Split splits a cleaned path after its last separator: Split("windows", `C:\a\b`) = `C:\a`, "b";
// Split("linux", "/a") = "/", "a". The dir of a root is the root itself with an empty name.
func Split(goos, p string) (dir, name string) {
	p = Clean(goos, p)
	sep := "/"
	if isWindows(goos) {
		sep = `\`
	}
	i := strings.LastIndex(p, sep)
	if i < 0 {
		return "", p
	}
	dir, name = p[:i], p[i+1:]
	if dir == "" || (isWindows(goos) && len(dir) == 2 && dir[1] == ':') {
		dir += sep
	}
	return dir, name
}

// Components splits a path into its root (`/` or `C:\`) and its names.
func Components(goos, p string) (root string, names []string) {
	p = Clean(goos, p)
	sep := "/"
	if isWindows(goos) {
		sep = `\`
		if len(p) >= 2 && p[1] == ':' {
			root, p = p[:2]+sep, p[2:]
		}
	}
	if root == "" && strings.HasPrefix(p, sep) {
		root = sep
	}
	for _, n := range strings.Split(p, sep) {
		if n != "" && n != "." {
			names = append(names, n)
		}
	}
	return root, names
}

// ArchivePath maps an OS path to its slash path inside a package or a --root folder, without the leading
// "files/" or folder: `C:\Windows\x` → "C/Windows/x", "/var/log/x" → "var/log/x". ok is false for paths that
// are not absolute (they have no place in either layout).
func ArchivePath(goos, p string) (rel string, ok bool) {
	root, names := Components(goos, p)
	if root == "" {
		return "", false
	}
	if isWindows(goos) {
		if len(root) < 2 || root[1] != ':' {
			return "", false
		}
		names = append([]string{root[:1]}, names...)
	}
	for _, n := range names {
		if n == ".." || strings.Contains(n, "/") {
			return "", false
		}
	}
	return strings.Join(names, "/"), true
}

// FromArchivePath is the inverse of ArchivePath.
func FromArchivePath(goos, rel string) (string, bool) {
	names := strings.Split(rel, "/")
	if rel == "" || len(names) == 0 {
		return "", false
	}
	if !isWindows(goos) {
		return Clean(goos, "/"+rel), true
	}
	if len(names[0]) != 1 || !isLetter(names[0][0]) {
		return "", false
	}
	return Clean(goos, names[0]+`:\`+strings.Join(names[1:], `\`)), true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
