//go:build unix

package bootstrap

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/defendersim"
)

// TestScriptsInEmulator runs the rendered scripts through Defender Live Response in the emulator:
// bash for Linux and macOS devices, the `# quarry-sim:` steps for Windows ones. Each must start the
// collector on the device's file system, as that device's OS, and print its started line.
func TestScriptsInEmulator(t *testing.T) {
	q := newQuarry(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := defendersim.Start(ctx, defendersim.Options{Machines: 40, Seed: 7, TimeScale: 60})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	app := s.DefaultApp()
	c, err := defender.New(defender.Config{TenantID: app.TenantID, ClientID: app.ClientID, ClientSecret: app.ClientSecret,
		APIURL: s.APIURL(), AuthorityURL: s.AuthorityURL(), CACertPEM: s.CACertPEM(),
		Limits: defender.Limits{TimeScale: 60, BaseBackoff: 3 * time.Second, MaxBackoff: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	families := map[string]struct{ platform, goos string }{
		"windows": {"Windows", "windows"}, "linux": {"Linux", "linux"}, "macos": {"macOS", "darwin"},
	}
	for family, fam := range families {
		t.Run(family, func(t *testing.T) {
			var id string
			for _, m := range s.Machines() {
				if strings.HasPrefix(m.OSPlatform, fam.platform) {
					id = m.ID
					break
				}
			}
			if id == "" {
				t.Fatalf("the emulator has no %s device", fam.platform)
			}
			s.SetMachineOnline(id, true)
			p := testParams(family)
			p.ServerURL, p.Builds = q.URL, allBuilds(q.payload)
			sc, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.UploadLibraryFile(ctx, defender.LibraryUpload{FileName: sc.Name, Content: sc.Content, HasParameters: true, OverrideIfExists: true}); err != nil {
				t.Fatal(err)
			}
			a, err := c.RunLiveResponse(ctx, id, defender.LiveResponseRequest{Commands: []defender.Command{defender.RunScriptCommand(sc.Name, "42 full")}, Comment: "bootstrap test"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.WaitForAction(ctx, a.ID, defender.WaitOptions{Interval: time.Second}); err != nil {
				t.Fatal(err)
			}
			res, err := c.GetScriptResult(ctx, a.ID, 0)
			if err != nil {
				t.Fatal(err)
			}
			var status map[string]any
			for _, l := range strings.Split(res.ScriptOutput, "\n") {
				if strings.HasPrefix(l, "{") {
					json.Unmarshal([]byte(l), &status)
				}
			}
			if res.ExitCode != 0 || status["status"] != "started" || status["acquisition"] != 42.0 {
				t.Fatalf("script result %+v, status %v", res, status)
			}
			root, err := s.DeviceRoot(id)
			if err != nil {
				t.Fatal(err)
			}
			rec := filepath.Join(root, ".fake-collector-argv")
			var argv string
			for i := 0; i < 1000 && !strings.HasSuffix(argv, "\n"+fam.goos+"\n"); i++ { // Windows: started in the background
				b, _ := os.ReadFile(rec)
				argv = string(b)
				time.Sleep(5 * time.Millisecond)
			}
			want := "--server\n" + q.URL + "\n--enrol-token\n" + testToken + "\n--acquisition\n42\n--profile\nfull\n--root\n" + root + "\n--os\n" + fam.goos + "\n"
			if !strings.HasSuffix(argv, want) {
				t.Errorf("collector argv = %q, want it to end with %q", argv, want)
			}
		})
	}
}
