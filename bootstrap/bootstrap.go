// Package bootstrap renders the small scripts that Quarry keeps in an XDR platform's script library
// (one per connection and OS family) and runs on a host to start an acquisition: PowerShell for
// Windows, POSIX sh for Linux and macOS. A script downloads quarry-host for the host's platform from
// Quarry, checks the SHA-256 pinned in it, starts the collector detached and prints one line of JSON.
//
// Every value that reaches a script goes through an escaper for the script's language (single-quoted
// strings in both), and values that cannot be escaped safely for every place they are used (the
// Defender emulator's `# quarry-sim:` header, Windows command lines) are refused by Render.
package bootstrap

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"text/template"
)

// MaxScriptSize bounds a rendered script. Defender's library takes 20 MB; a bootstrap is a few KB, and
// anything near this bound means a value went wrong.
const MaxScriptSize = 64 << 10

// Params is what a bootstrap script carries.
type Params struct {
	// OS is the family the script is for: windows (.ps1), linux or macos (.sh).
	OS string
	// ServerURL is Quarry's public URL, as the host reaches it (http or https, no trailing slash needed).
	ServerURL string
	// EnrolToken is the connection's short-lived enrolment token (qe_…).
	EnrolToken string
	// Builds maps "goos/goarch" (windows/amd64, linux/arm64, darwin/arm64, …) to the lowercase hex
	// SHA-256 of that quarry-host build. A .ps1 pins the windows builds, a .sh the linux and darwin ones.
	Builds map[string]string
	// Version is the quarry-host version the builds are, shown in the script and its User-Agent.
	Version string
	// ConnectionID names the script (see LibraryName).
	ConnectionID int64
	// CACertPEM, when set, is a private CA the host must trust for Quarry: for the download and, passed
	// as --ca-cert, for quarry-host's own requests.
	CACertPEM []byte
	// SimPlatform is the goos/goarch of the machine that runs the Defender emulator, whose build the
	// PowerShell script's `# quarry-sim:` header downloads. Empty means this process's platform,
	// which is right when the emulator runs inside Quarry (quarry demo).
	SimPlatform string
}

// Script is a rendered bootstrap.
type Script struct {
	Name    string // library file name, stable per connection and OS family
	Content []byte
	SHA256  string // hex of Content, to tell whether the library copy is current
}

//go:embed bootstrap.ps1.tmpl bootstrap.sh.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Option("missingkey=error").Funcs(template.FuncMap{
	"sh":  shQuote,
	"ps":  psQuote,
	"sim": simWord,
	"cmt": commentText,
}).ParseFS(templateFS, "*.tmpl"))

// LibraryName is the script's file name in the platform library for a connection and OS family
// (windows, linux or macos), e.g. quarry-bootstrap-c12-linux.sh.
func LibraryName(connectionID int64, os string) string {
	ext := ".sh"
	if os == "windows" {
		ext = ".ps1"
	}
	return fmt.Sprintf("quarry-bootstrap-c%d-%s%s", connectionID, os, ext)
}

var (
	tokenRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{8,256}$`)
	platformRE = regexp.MustCompile(`^(windows|linux|darwin)/[a-z0-9]{1,16}$`)
	sha256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// build is one pinned build in a template.
type build struct{ Platform, SHA256 string }

// data is what the templates see; every string is raw and the templates escape it.
type data struct {
	Params
	Name      string // the library file name
	ServerURL string // without a trailing slash
	Family    string // goos of the script's hosts: windows, linux or darwin
	Builds    []build
	SimBuild  *build // the emulator platform's build, nil when there is none
	CACertPEM string
	CAThumb   string // SHA-1 hex of the CA certificate, as Windows names certificates
}

// Render produces the bootstrap script for p.OS.
func Render(p Params) (Script, error) {
	d, err := prepare(p)
	if err != nil {
		return Script{}, err
	}
	tmpl := "bootstrap.sh.tmpl"
	if p.OS == "windows" {
		tmpl = "bootstrap.ps1.tmpl"
	}
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, tmpl, d); err != nil {
		return Script{}, fmt.Errorf("bootstrap: render %s: %w", p.OS, err)
	}
	if buf.Len() > MaxScriptSize {
		return Script{}, fmt.Errorf("bootstrap: %s script is %d bytes, more than %d", p.OS, buf.Len(), MaxScriptSize)
	}
	sum := sha256.Sum256(buf.Bytes())
	return Script{Name: LibraryName(p.ConnectionID, p.OS), Content: buf.Bytes(), SHA256: hex.EncodeToString(sum[:])}, nil
}

// prepare validates p and turns it into template data.
func prepare(p Params) (*data, error) {
	d := &data{Params: p, Name: LibraryName(p.ConnectionID, p.OS)}
	switch p.OS {
	case "windows", "linux":
		d.Family = p.OS
	case "macos":
		d.Family = "darwin"
	default:
		return nil, fmt.Errorf("bootstrap: os %q: want windows, linux or macos", p.OS)
	}
	if p.ConnectionID <= 0 {
		return nil, fmt.Errorf("bootstrap: connection id %d: want a positive id", p.ConnectionID)
	}
	u, err := url.Parse(p.ServerURL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("bootstrap: server url: %w", err)
	case u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("bootstrap: server url %q: want http(s)://host[:port][/path]", p.ServerURL)
	case strings.ContainsAny(p.ServerURL, " \t\"\\`") || !printableASCII(p.ServerURL):
		// A Windows command line cannot carry quotes or backslashes unharmed through every layer,
		// and none belongs in a URL anyway.
		return nil, fmt.Errorf("bootstrap: server url %q: blanks, quotes, backslashes and non-ASCII are not allowed", p.ServerURL)
	}
	d.ServerURL = strings.TrimRight(p.ServerURL, "/")
	if !tokenRE.MatchString(p.EnrolToken) {
		return nil, errors.New("bootstrap: enrolment token: want 8-256 characters of A-Z a-z 0-9 _ -")
	}
	// Windows PowerShell reads a script without a byte-order mark as ANSI, so values stay ASCII.
	if !printableASCII(strings.ReplaceAll(p.Version, " ", "_")) && p.Version != "" || len(p.Version) > 128 {
		return nil, fmt.Errorf("bootstrap: version %q: want one short line of printable ASCII", p.Version)
	}
	for plat, sum := range p.Builds {
		if !platformRE.MatchString(plat) || !sha256RE.MatchString(sum) {
			return nil, fmt.Errorf("bootstrap: build %q: want goos/goarch and a lowercase hex SHA-256, got %q", plat, sum)
		}
		// A .sh pins every Unix build: the emulator runs macOS devices' scripts on its own Linux
		// machine, and a host filed under the wrong family still gets the right build.
		if (p.OS == "windows") == strings.HasPrefix(plat, "windows/") {
			d.Builds = append(d.Builds, build{plat, sum})
		}
	}
	slices.SortFunc(d.Builds, func(a, b build) int { return strings.Compare(a.Platform, b.Platform) })
	if len(d.Builds) == 0 {
		return nil, fmt.Errorf("bootstrap: no quarry-host build for %s hosts (have %d for other systems)", p.OS, len(p.Builds))
	}
	sim := p.SimPlatform
	if sim == "" {
		sim = runtime.GOOS + "/" + runtime.GOARCH
	}
	if sum, ok := p.Builds[sim]; ok {
		d.SimBuild = &build{sim, sum}
	} else {
		d.SimBuild = &build{Platform: sim}
	}
	if len(p.CACertPEM) > 0 {
		blk, _ := pem.Decode(p.CACertPEM)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, errors.New("bootstrap: ca certificate: want a PEM CERTIFICATE block")
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return nil, fmt.Errorf("bootstrap: ca certificate: %w", err)
		}
		d.CACertPEM = string(pem.EncodeToMemory(blk)) // only the certificate, normalised
		d.CAThumb = thumbprint(blk.Bytes)
	}
	return d, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
