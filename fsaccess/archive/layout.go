package archive

import (
	"net/url"
	"sort"
	"strings"

	"github.com/quarry-dfir/quarry/fsaccess"
)

// Layout names of the collection tools whose folder structure is recognised.
const (
	LayoutKAPE         = "kape"         // <prefix>/C/Windows/... (one folder per drive letter)
	LayoutVelociraptor = "velociraptor" // <prefix>/uploads/auto/C%3A/... or C%3A/..., names %-encoded
	LayoutUAC          = "uac"          // [root]/var/log/..., live_response/...
	LayoutGeneric      = "archive"      // a folder tree: /etc, /var or /home at some depth, or everything under /
)

// Layout is how entry names map to host paths.
type Layout struct {
	Name string // LayoutKAPE, LayoutVelociraptor, LayoutUAC or LayoutGeneric
	OS   string // "windows", "linux" or "darwin"
	// Prefix is the folder that stands for the host root ("" for the archive's top); for the
	// Windows layouts it holds the drive folders.
	Prefix string
}

// HostPath maps a clean entry name to the host path it was collected from, or reports false for
// entries outside the host root.
func (l Layout) HostPath(name string) (string, bool) {
	rel := name
	if l.Prefix != "" {
		if !strings.HasPrefix(name, l.Prefix+"/") {
			return "", false
		}
		rel = name[len(l.Prefix)+1:]
	}
	parts := strings.Split(rel, "/")
	if l.Name == LayoutVelociraptor {
		for i, p := range parts {
			d, err := url.PathUnescape(p)
			if err != nil || d == "" || d == "." || d == ".." || strings.ContainsAny(d, "/\\\x00") && !(i == 0 && isDrive(d)) {
				return "", false
			}
			parts[i] = d
		}
	}
	if l.OS != "windows" {
		return fsaccess.Clean(l.OS, "/"+strings.Join(parts, "/")), true
	}
	drive := strings.TrimSuffix(parts[0], ":")
	if len(drive) != 1 || !isLetterByte(drive[0]) || len(parts) < 2 {
		return "", false
	}
	for _, p := range parts[1:] {
		if strings.ContainsAny(p, `\:`) {
			return "", false
		}
	}
	return fsaccess.Clean("windows", drive+`:\`+strings.Join(parts[1:], `\`)), true
}

func isDrive(s string) bool { return len(s) == 2 && s[1] == ':' && isLetterByte(s[0]) }

func isLetterByte(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// detectLayout guesses the tool and OS from the entry names. The first rule that fits wins: the
// Velociraptor and UAC markers are unambiguous; a drive-letter folder holding Windows or Users is
// KAPE's; otherwise a Unix tree is looked for at the shallowest depth.
func detectLayout(entries []*Entry) Layout {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name
	}
	sort.Strings(names)
	// Velociraptor: the shallowest folder named X%3A (or its decoded X:).
	best, bestDepth := "", 1<<30
	for _, n := range names {
		parts := strings.Split(n, "/")
		for i, p := range parts[:len(parts)-1] {
			if len(p) == 4 && isLetterByte(p[0]) && strings.EqualFold(p[1:], "%3A") && i < bestDepth {
				best, bestDepth = strings.Join(parts[:i], "/"), i
			}
		}
	}
	if bestDepth < 1<<30 {
		return Layout{Name: LayoutVelociraptor, OS: "windows", Prefix: best}
	}
	// UAC: [root]/ at some depth.
	for _, n := range names {
		parts := strings.Split(n, "/")
		for i, p := range parts[:len(parts)-1] {
			if p == "[root]" {
				prefix := strings.Join(parts[:i+1], "/")
				return Layout{Name: LayoutUAC, OS: unixOS(names, prefix), Prefix: prefix}
			}
		}
	}
	// KAPE: a one-letter folder with Windows/ or Users/ (or $MFT) under it.
	for _, n := range names {
		parts := strings.Split(n, "/")
		for i := 0; i < len(parts)-1; i++ {
			p := parts[i]
			if len(p) == 1 && isLetterByte(p[0]) {
				next := strings.ToLower(parts[i+1])
				if next == "windows" || next == "users" || next == "$mft" || next == "programdata" {
					return Layout{Name: LayoutKAPE, OS: "windows", Prefix: strings.Join(parts[:i], "/")}
				}
			}
		}
	}
	// A Unix tree: the shallowest folder holding etc/ or var/log/.
	best, bestDepth = "", 1<<30
	for _, n := range names {
		parts := strings.Split(n, "/")
		for i := 0; i < len(parts)-1 && i < bestDepth; i++ {
			if parts[i] == "etc" || (parts[i] == "var" && i+1 < len(parts)-1 && parts[i+1] == "log") || parts[i] == "home" {
				best, bestDepth = strings.Join(parts[:i], "/"), i
				break
			}
		}
	}
	if bestDepth < 1<<30 {
		return Layout{Name: LayoutGeneric, OS: unixOS(names, best), Prefix: best}
	}
	return Layout{Name: LayoutGeneric, OS: "linux"}
}

// unixOS tells macOS from Linux by the folders under the root.
func unixOS(names []string, prefix string) string {
	p := ""
	if prefix != "" {
		p = prefix + "/"
	}
	for _, n := range names {
		if strings.HasPrefix(n, p+"System/Library/") || strings.HasPrefix(n, p+"private/var/") || strings.HasPrefix(n, p+"Library/") {
			return "darwin"
		}
	}
	return "linux"
}
