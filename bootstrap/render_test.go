package bootstrap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

const testToken = "qe_Zm9vYmFyYmF6cXV4"

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// allBuilds pins the same content for every platform the scripts know.
func allBuilds(content []byte) map[string]string {
	m := map[string]string{}
	for _, p := range []string{"windows/amd64", "windows/arm64", "linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"} {
		m[p] = sum(content)
	}
	return m
}

func testParams(os string) Params {
	return Params{OS: os, ServerURL: "https://quarry.example:8443/", EnrolToken: testToken,
		Builds: allBuilds([]byte("x")), Version: "1.2.3", ConnectionID: 12}
}

func TestLibraryName(t *testing.T) {
	for _, tc := range []struct {
		id   int64
		os   string
		want string
	}{
		{12, "windows", "quarry-bootstrap-c12-windows.ps1"},
		{12, "linux", "quarry-bootstrap-c12-linux.sh"},
		{3, "macos", "quarry-bootstrap-c3-macos.sh"},
	} {
		if got := LibraryName(tc.id, tc.os); got != tc.want {
			t.Errorf("LibraryName(%d, %q) = %q, want %q", tc.id, tc.os, got, tc.want)
		}
	}
}

func TestRender(t *testing.T) {
	for _, os := range []string{"windows", "linux", "macos"} {
		t.Run(os, func(t *testing.T) {
			p := testParams(os)
			s, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name != LibraryName(12, os) || s.SHA256 != sum(s.Content) {
				t.Errorf("Render = name %q sha %s", s.Name, s.SHA256)
			}
			if len(s.Content) >= MaxScriptSize {
				t.Errorf("script is %d bytes, want < %d", len(s.Content), MaxScriptSize)
			}
			again, _ := Render(p)
			if !bytes.Equal(again.Content, s.Content) {
				t.Error("two renders of the same params differ")
			}
			c := string(s.Content)
			// The trailing slash of the URL is dropped, the token and version are in.
			for _, want := range []string{"'https://quarry.example:8443'", "'" + testToken + "'", "'1.2.3'"} {
				if !strings.Contains(c, want) {
					t.Errorf("script lacks %s", want)
				}
			}
			if os == "windows" {
				if strings.Contains(c, "linux/amd64'") || !strings.Contains(c, "'windows/arm64' = ") {
					t.Error("the .ps1 must pin the windows builds and only those")
				}
				first := ""
				for _, l := range strings.Split(c, "\n") {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
						first = l
						break
					}
				}
				if !strings.HasPrefix(first, "param(") {
					t.Errorf("first statement = %q, PowerShell wants param() first", first)
				}
				return
			}
			if strings.Contains(c, "windows/") || !strings.Contains(c, "'darwin/arm64')") || !strings.Contains(c, "'linux/amd64')") {
				t.Error("a .sh must pin the linux and darwin builds and no windows one")
			}
			if out, err := exec.Command("sh", "-n", "-c", c).CombinedOutput(); err != nil {
				t.Errorf("sh -n: %v: %s", err, out)
			}
		})
	}
}

// TestRenderSimHeader checks the emulator's steps in the .ps1: the build of the emulator's platform,
// the enrolment token as bearer, and the collector run against the device's root as Windows.
func TestRenderSimHeader(t *testing.T) {
	p := testParams("windows")
	p.Builds["linux/amd64"] = strings.Repeat("a", 64)
	p.SimPlatform = "linux/amd64"
	s, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# quarry-sim: download https://quarry.example:8443/api/v1/collector/download/linux/amd64 sha256 " + strings.Repeat("a", 64) + " to quarry-host bearer " + testToken + "\n",
		"# quarry-sim: start quarry-host collect --server https://quarry.example:8443 --enrol-token " + testToken + " --acquisition {arg1} --profile {arg2} --root {root} --os windows\n",
		"# quarry-sim: echo '{\"status\":\"started\",\"acquisition\":{arg1}}'\n",
	} {
		if !strings.Contains(string(s.Content), want) {
			t.Errorf("script lacks %q", want)
		}
	}
	p.SimPlatform = "plan9/mips"
	s, err = Render(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := string(s.Content); strings.Contains(c, "quarry-sim: download") || !strings.Contains(c, "# quarry-sim: exit 1") {
		t.Error("without a build for the emulator's platform the header must fail the run")
	}
	p.SimPlatform = ""
	s, _ = Render(p)
	if !strings.Contains(string(s.Content), "/download/"+runtime.GOOS+"/"+runtime.GOARCH+" ") {
		t.Error("SimPlatform defaults to this process's platform")
	}
}

func TestRenderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Params)
		want string
	}{
		{"OS", func(p *Params) { p.OS = "plan9" }, "os"},
		{"ConnectionID", func(p *Params) { p.ConnectionID = 0 }, "connection id"},
		{"NoScheme", func(p *Params) { p.ServerURL = "quarry.example" }, "server url"},
		{"FTP", func(p *Params) { p.ServerURL = "ftp://quarry.example" }, "server url"},
		{"UserInfo", func(p *Params) { p.ServerURL = "https://u:p@quarry.example" }, "server url"},
		{"Query", func(p *Params) { p.ServerURL = "https://quarry.example/?a=b" }, "server url"},
		{"Blank", func(p *Params) { p.ServerURL = "https://quarry.example/a b" }, "server url"},
		{"DoubleQuote", func(p *Params) { p.ServerURL = `https://quarry.example/a"b` }, "server url"},
		{"Backslash", func(p *Params) { p.ServerURL = `https://quarry.example/a\b` }, "server url"},
		{"Newline", func(p *Params) { p.ServerURL = "https://quarry.example/\nx" }, "server url"},
		{"TokenQuote", func(p *Params) { p.EnrolToken = "qe_abc'def" }, "token"},
		{"TokenShort", func(p *Params) { p.EnrolToken = "qe_" }, "token"},
		{"VersionNewline", func(p *Params) { p.Version = "1\n# quarry-sim: run /bin/sh" }, "version"},
		{"VersionNonASCII", func(p *Params) { p.Version = "1.0‘" }, "version"},
		{"BuildKey", func(p *Params) { p.Builds["linux/amd64'"] = strings.Repeat("a", 64) }, "build"},
		{"BuildHash", func(p *Params) { p.Builds["linux/amd64"] = "ABC" }, "build"},
		{"NoBuild", func(p *Params) { p.Builds = map[string]string{"windows/amd64": strings.Repeat("a", 64)} }, "no quarry-host build"},
		{"CA", func(p *Params) {
			p.CACertPEM = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}, "ca certificate"},
		{"CAKey", func(p *Params) {
			p.CACertPEM = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}, "ca certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testParams("linux")
			tc.edit(&p)
			if _, err := Render(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render = %v, want an error about %q", err, tc.want)
			}
		})
	}
}
