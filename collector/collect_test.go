package collector_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/collector"
	"github.com/quarry-dfir/quarry/fsaccess"
)

func TestCollectSimhost(t *testing.T) {
	trees := map[string]string{"windows": simTree(t, "windows"), "linux": simTree(t, "linux"), "macos": simTree(t, "macos")}
	tests := []struct {
		name, tree, profile string
		groups              []string
		want                map[string]string // path → target
		notWant             []string
		skips               map[string]string // path → reason
		listed              string            // a path some listing must contain
	}{
		{
			name: "WindowsTriage", tree: "windows", profile: "triage",
			want: map[string]string{
				`C:\Windows\System32\drivers\etc\hosts`: "windows.hosts",
				`C:\Users\itadmin\AppData\Roaming\Microsoft\Windows\PowerShell\PSReadLine\ConsoleHost_history.txt`: "windows.powershell_history",
				`C:\Windows\System32\Tasks\Microsoft\Windows\Defrag\ScheduledDefrag`:                               "windows.scheduled_tasks",
				`C:\Windows\INF\setupapi.dev.log`:                                                                  "windows.setupapi",
			},
			notWant: []string{`C:\Users\chen.sato\Documents\Budget 2026.pdf`, `C:\Users\itadmin\AppData\Roaming\Microsoft\RuntimeBroker.exe`},
			skips: map[string]string{
				`C:\$MFT`: "not_found", `C:\$Extend\$UsnJrnl:$J`: "not_found", `C:\Windows\System32\config\SYSTEM`: "not_found",
			},
		},
		{
			name: "WindowsFull", tree: "windows", profile: "full",
			want: map[string]string{
				`C:\Users\chen.sato\Documents\Budget 2026.pdf`: "windows.user_documents",
				`C:\Windows\INF\setupapi.dev.log`:              "windows.setupapi",
			},
		},
		{
			name: "WindowsGroupNamesFullTarget", tree: "windows", profile: "triage", groups: []string{"windows.user_documents"},
			want:    map[string]string{`C:\Users\chen.sato\Documents\Budget 2026.pdf`: "windows.user_documents"},
			notWant: []string{`C:\Windows\INF\setupapi.dev.log`},
		},
		{
			name: "LinuxTriage", tree: "linux", profile: "triage",
			want: map[string]string{
				"/var/log/auth.log":                         "linux.logs",
				"/var/log/wtmp":                             "linux.logs",
				"/var/log/dpkg.log":                         "linux.packages", // the specific target wins over /var/log/**
				"/home/deploy/.bash_history":                "unix.shell_history",
				"/root/.ssh/authorized_keys":                "unix.ssh",
				"/etc/sudoers.d/90-deploy":                  "unix.accounts",
				"/etc/systemd/system/snapd-refresh.service": "linux.systemd",
				"/run/utmp":                                 "linux.utmp",
				"/etc/crontab":                              "linux.cron",
			},
			notWant: []string{"/dev/shm/sysupdate", "/var/www/html/img/thumb.php", "/home/deploy/.bashrc"},
			listed:  "/dev/shm/sysupdate",
		},
		{
			name: "LinuxFull", tree: "linux", profile: "full",
			want: map[string]string{"/home/deploy/.bashrc": "linux.home_files"},
		},
		{
			name: "LinuxPersistenceGroup", tree: "linux", profile: "triage", groups: []string{"persistence"},
			want:    map[string]string{"/etc/crontab": "linux.cron", "/home/zoe/.ssh/authorized_keys": "unix.ssh"},
			notWant: []string{"/var/log/auth.log", "/etc/passwd"},
		},
		{
			name: "Macos", tree: "macos", profile: "light",
			want: map[string]string{
				"/Users/yokafor/.zsh_history":                                 "unix.shell_history",
				"/Users/yokafor/Library/LaunchAgents/com.apple.updater.plist": "darwin.launch",
				"/var/log/install.log":                                        "darwin.logs",
				"/etc/hosts":                                                  "unix.system_info",
			},
			notWant: []string{"/Users/yokafor/Downloads/Zoom.pkg"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := trees[tt.tree]
			res, pkg := collect(t, collector.Options{Root: root, Profile: tt.profile, Groups: tt.groups, Version: "test"})
			m := res.Manifest
			got := collectedPaths(m)
			for p, target := range tt.want {
				if got[p] != target {
					t.Errorf("%s collected by %q, want %q", p, got[p], target)
				}
			}
			for _, p := range tt.notWant {
				if _, ok := got[p]; ok {
					t.Errorf("%s collected, want not", p)
				}
			}
			skips := skipReasons(m)
			for p, reason := range tt.skips {
				if skips[p] != reason {
					t.Errorf("skip %s = %q, want %q", p, skips[p], reason)
				}
			}
			if tt.listed != "" && !listingHas(t, pkg, m, tt.listed) {
				t.Errorf("no listing names %s", tt.listed)
			}
			checkContents(t, pkg, m, root)
			if m.Host.Live || m.Host.Root != root || m.Profile != tt.profile || m.Collector.Version != "test" {
				t.Errorf("manifest header = %+v", m)
			}
		})
	}
}

// checkContents compares every collected file with the original on disk: the manifest hash, the hash of
// the bytes in the package and the file itself must agree.
func checkContents(t *testing.T, pkg *collector.Package, m *collector.Manifest, root string) {
	t.Helper()
	if bad := pkg.Verify(context.Background()); len(bad) > 0 {
		t.Errorf("Verify = %+v", bad)
	}
	for _, fe := range m.Files {
		rel, _ := fsaccess.ArchivePath(m.Host.OS, fe.Path)
		disk, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			t.Errorf("read original of %s: %v", fe.Path, err)
			continue
		}
		sum := sha256.Sum256(disk)
		if hex.EncodeToString(sum[:]) != fe.SHA256 || int64(len(disk)) != fe.Size {
			t.Errorf("%s: manifest sha256 %s size %d, disk %x size %d", fe.Path, fe.SHA256, fe.Size, sum, len(disk))
		}
		f, err := pkg.Open(fe.Path)
		if err != nil {
			t.Errorf("package Open(%s): %v", fe.Path, err)
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Equal(b, disk) {
			t.Errorf("package content of %s differs from disk", fe.Path)
		}
	}
}

func listingHas(t *testing.T, pkg *collector.Package, m *collector.Manifest, p string) bool {
	t.Helper()
	for _, l := range m.Listings {
		rc, err := pkg.OpenEntry(l.ArchivePath)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if bytes.Contains(b, []byte(`"path":"`+p+`"`)) {
			return true
		}
	}
	return false
}

func TestCollectIncludeExclude(t *testing.T) {
	root := simTree(t, "linux")
	res, _ := collect(t, collector.Options{
		Root: root, OS: "linux", Groups: []string{"logs", "users"},
		Include: []string{"/var/www/**"},
		Exclude: []string{"/home/*/.bash_history", "/var/log/apache2/**"},
	})
	got := collectedPaths(res.Manifest)
	if got["/var/www/html/img/thumb.php"] != "custom.include" {
		t.Errorf("include: thumb.php collected by %q", got["/var/www/html/img/thumb.php"])
	}
	for _, p := range []string{"/home/deploy/.bash_history", "/var/log/apache2/access.log"} {
		if _, ok := got[p]; ok {
			t.Errorf("exclude: %s collected", p)
		}
	}
	if got["/root/.bash_history"] == "" || got["/var/log/auth.log"] == "" {
		t.Errorf("exclude removed too much: %v", sortedKeys(got))
	}
	if _, err := collector.Collect(context.Background(), io.Discard, collector.Options{Root: root, Include: []string{"relative/x"}}); err == nil {
		t.Error("Collect accepted a relative --include")
	}
	if _, err := collector.Collect(context.Background(), io.Discard, collector.Options{Root: root, Groups: []string{"nope"}}); err == nil {
		t.Error("Collect accepted an unknown group")
	}
}

func TestCollectWindowsCaseInsensitive(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"c/WINDOWS/system32/WINEVT/logs/Security.EVTX":                      "ElfFile\x00security",
		"c/WINDOWS/system32/Config/sam":                                     "regf sam",
		"c/Users/Bob/NTUSER.dat":                                            "regf bob",
		"c/Users/Bob/AppData/Local/Google/Chrome/User Data/Default/History": "SQLite format 3",
		"c/Users/Eve/ntuser.dat":                                            "regf eve",
	})
	res, pkg := collect(t, collector.Options{Root: root, Exclude: []string{`C:\USERS\EVE\**`}})
	got := collectedPaths(res.Manifest)
	// The package reader resolves Windows names case-insensitively too.
	if f, err := pkg.Open(`c:\windows\SYSTEM32\winevt\LOGS\security.evtx`); err != nil {
		t.Errorf("package Open with other case: %v", err)
	} else {
		f.Close()
	}
	for _, p := range []string{
		`C:\WINDOWS\system32\WINEVT\logs\Security.EVTX`,
		`C:\WINDOWS\system32\Config\sam`,
		`C:\Users\Bob\NTUSER.dat`,
		`C:\Users\Bob\AppData\Local\Google\Chrome\User Data\Default\History`,
	} {
		if got[p] == "" {
			t.Errorf("%s not collected; got %v", p, sortedKeys(got))
		}
	}
	if got[`C:\Users\Eve\ntuser.dat`] != "" {
		t.Error("case-insensitive exclude did not apply")
	}
	if res.Manifest.Host.OS != "windows" {
		t.Errorf("auto-detected os %q, want windows", res.Manifest.Host.OS)
	}
}

func TestCollectCaps(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"var/log/big.log": strings.Repeat("x", 2000),
		"etc/passwd":      "root:x:0:0::/root:/bin/bash\n",
	}
	for i := 0; i < 10; i++ {
		files["var/log/f"+string(rune('0'+i))+".log"] = strings.Repeat("y", 400)
	}
	writeFiles(t, root, files)
	count := func(m *collector.Manifest, reason string) int {
		n := 0
		for _, s := range m.Skipped {
			if s.Reason == reason {
				n++
			}
		}
		return n
	}
	t.Run("PerFile", func(t *testing.T) {
		res, _ := collect(t, collector.Options{Root: root, OS: "linux", MaxFileSize: 1000})
		if r := skipReasons(res.Manifest)["/var/log/big.log"]; r != collector.ReasonSizeCap {
			t.Errorf("big.log skip reason %q, want size_cap", r)
		}
		if res.Manifest.Stats.Files != 11 {
			t.Errorf("collected %d files, want 11", res.Manifest.Stats.Files)
		}
	})
	t.Run("Total", func(t *testing.T) {
		res, _ := collect(t, collector.Options{Root: root, OS: "linux", MaxTotalSize: 1000, Groups: []string{"logs"}})
		if res.Manifest.Stats.Bytes > 1000 || res.Manifest.Stats.Files != 2 || count(res.Manifest, collector.ReasonTotalCap) != 9 {
			t.Errorf("stats %+v, total_cap skips %d; want 2 files, 9 total_cap", res.Manifest.Stats, count(res.Manifest, collector.ReasonTotalCap))
		}
	})
	t.Run("Time", func(t *testing.T) {
		// Count the clock reads of a whole run, then give a second run half of them.
		calls := 0
		counting := func() time.Time { calls++; return anchor }
		collect(t, collector.Options{Root: root, OS: "linux", Clock: counting})
		res, _ := collect(t, collector.Options{Root: root, OS: "linux", MaxDuration: time.Duration(calls/2) * time.Minute, Clock: stepClock(time.Minute)})
		m := res.Manifest
		if m.Stats.Files == 0 || count(m, collector.ReasonTimeCap) == 0 {
			t.Errorf("stats %+v, time_cap skips %d; want some files and some time_cap skips", m.Stats, count(m, collector.ReasonTimeCap))
		}
		if m.Stats.Files+count(m, collector.ReasonTimeCap) < 3 {
			t.Errorf("files and time_cap skips do not account for the tree: %+v", m.Skipped)
		}
	})
	t.Run("LightProfile", func(t *testing.T) {
		big := t.TempDir()
		writeFiles(t, big, map[string]string{"var/log/huge.log": strings.Repeat("z", 10<<20+1)})
		res, _ := collect(t, collector.Options{Root: big, OS: "linux", Profile: "light"})
		if r := skipReasons(res.Manifest)["/var/log/huge.log"]; r != collector.ReasonSizeCap {
			t.Errorf("light: huge.log skip reason %q, want size_cap", r)
		}
		res, _ = collect(t, collector.Options{Root: big, OS: "linux", Profile: "triage"})
		if collectedPaths(res.Manifest)["/var/log/huge.log"] == "" {
			t.Error("triage: huge.log not collected")
		}
	})
}

func TestCollectDepthLimit(t *testing.T) {
	root := t.TempDir()
	deep := "var/log/" + strings.Repeat("d/", 40) + "x.log"
	writeFiles(t, root, map[string]string{deep: "deep", "var/log/a.log": "a"})
	res, _ := collect(t, collector.Options{Root: root, OS: "linux", Groups: []string{"linux.logs"}})
	got := collectedPaths(res.Manifest)
	if got["/var/log/a.log"] == "" || got["/"+deep] != "" {
		t.Errorf("collected %v, want a.log and not the 40-level file", sortedKeys(got))
	}
	loops := 0
	for _, s := range res.Manifest.Skipped {
		if s.Reason == collector.ReasonLoop {
			loops++
		}
	}
	if loops != 1 {
		t.Errorf("loop skips = %d, want 1: %+v", loops, res.Manifest.Skipped)
	}
}

func TestCollectLiveStateAndProgress(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "var/log/a.log": "a", "var/log/b.log": "b"})
	var progress []collector.Progress
	res, pkg := collect(t, collector.Options{
		Root: root, OS: "linux", AcquisitionID: "42", Clock: stepClock(2 * time.Second),
		LiveState: func(context.Context) map[string]any {
			return map[string]any{
				"processes": []map[string]any{{"pid": 1, "name": "init"}},
				"network":   map[string]any{"error": "permission denied"},
				"../evil":   "x",
			}
		},
		Progress: func(p collector.Progress) { progress = append(progress, p) },
	})
	m := res.Manifest
	if m.AcquisitionID != "42" || len(m.LiveState) != 3 {
		t.Fatalf("manifest live_state = %+v", m.LiveState)
	}
	byName := map[string]collector.LiveEntry{}
	for _, l := range m.LiveState {
		byName[l.Name] = l
	}
	if l := byName["network"]; l.Error != "permission denied" || l.ArchivePath != "live/network.json" {
		t.Errorf("network entry = %+v", l)
	}
	if l := byName["../evil"]; l.ArchivePath != "" || l.Error == "" {
		t.Errorf("hostile live-state name accepted: %+v", l)
	}
	rc, err := pkg.OpenEntry("live/processes.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	sum := sha256.Sum256(b)
	if !bytes.Contains(b, []byte(`"init"`)) || hex.EncodeToString(sum[:]) != byName["processes"].SHA256 {
		t.Errorf("live/processes.json = %s", b)
	}
	if len(progress) < 2 || progress[len(progress)-1].FilesDone != m.Stats.Files {
		t.Errorf("progress = %+v, want several calls ending at %d files", progress, m.Stats.Files)
	}
}

func TestCollectToFile(t *testing.T) {
	root := simTree(t, "linux")
	dir := t.TempDir()
	path := filepath.Join(dir, "pkg.zip")
	res, err := collector.CollectToFile(context.Background(), path, collector.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if res.Path != path || res.SHA256 != hex.EncodeToString(sum[:]) || res.Size != int64(len(b)) {
		t.Errorf("Result = %s %s %d, file sha256 %x size %d", res.Path, res.SHA256, res.Size, sum, len(b))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("folder holds %d entries, want only the package", len(ents))
	}
	pkg, err := collector.OpenPackage(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if pkg.Manifest.Host.OS != "linux" || pkg.Manifest.Stats.Files != res.Manifest.Stats.Files {
		t.Errorf("reopened manifest = %+v", pkg.Manifest.Stats)
	}
	if _, err := collector.CollectToFile(context.Background(), filepath.Join(dir, "no/such/dir/p.zip"), collector.Options{Root: root}); err == nil {
		t.Error("CollectToFile into a missing folder succeeded")
	}
}
