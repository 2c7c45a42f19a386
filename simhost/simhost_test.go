package simhost

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testAnchor = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// testHosts covers every OS and Linux family, compromised and clean.
var testHosts = map[string]Host{
	"UbuntuWeb":   {Name: "web-03.contoso.local", OS: "linux", OSVersion: "Ubuntu 22.04", IP: "10.1.2.3", Seed: 7, Compromised: true, Anchor: testAnchor},
	"Ubuntu24":    {Name: "app-11", OS: "linux", OSVersion: "Ubuntu 24.04", Seed: 11, Compromised: true, Anchor: testAnchor},
	"Debian":      {Name: "db-02", OS: "linux", OSVersion: "Debian 12", Seed: 12, Compromised: true},
	"RHEL":        {Name: "web-rh-01", OS: "linux", OSVersion: "RHEL 9.3", Seed: 8, Compromised: true, Anchor: testAnchor},
	"RHEL8Clean":  {Name: "build-01", OS: "linux", OSVersion: "Rocky Linux 8.9", Seed: 9, Anchor: testAnchor},
	"UbuntuClean": {Name: "jump-01", OS: "linux", OSVersion: "Ubuntu 20.04", Seed: 10, Anchor: testAnchor},
	"Windows":     {Name: "ws-fin-012.contoso.local", OS: "windows", OSVersion: "Windows 11 23H2", Seed: 3, Compromised: true, Anchor: testAnchor},
	"WinServer":   {Name: "srv-file-01", OS: "windows", OSVersion: "Windows Server 2022", Seed: 5},
	"Mac":         {Name: "mbp-alice", OS: "macos", OSVersion: "macOS 14", Seed: 4, Compromised: true, Anchor: testAnchor},
	"MacClean":    {Name: "mbp-bob", OS: "macos", OSVersion: "macOS 15", Seed: 6, Anchor: testAnchor},
}

type treeFile struct {
	data  []byte
	mtime time.Time
	mode  fs.FileMode
	dir   bool
}

// readDisk returns every file and folder under root, keyed by slash path.
func readDisk(tb testing.TB, root string) map[string]treeFile {
	tb.Helper()
	out := map[string]treeFile{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := treeFile{mtime: info.ModTime(), mode: info.Mode(), dir: d.IsDir()}
		if !d.IsDir() {
			if f.data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		out[filepath.ToSlash(rel)] = f
		return nil
	})
	if err != nil {
		tb.Fatalf("walk %s: %v", root, err)
	}
	return out
}

func mustGenerate(tb testing.TB, h Host) (string, Story) {
	tb.Helper()
	root := tb.TempDir()
	st, err := Generate(root, h)
	if err != nil {
		tb.Fatalf("Generate(%s) = %v", h.Name, err)
	}
	return root, st
}

func TestGenerateDeterministic(t *testing.T) {
	for name, h := range testHosts {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a, sa := mustGenerate(t, h)
			b, sb := mustGenerate(t, h)
			if !reflect.DeepEqual(sa, sb) {
				t.Fatalf("stories differ:\n%+v\n%+v", sa, sb)
			}
			if !reflect.DeepEqual(sa, StoryFor(h)) {
				t.Fatalf("Generate story != StoryFor:\n%+v\n%+v", sa, StoryFor(h))
			}
			ta, tb := readDisk(t, a), readDisk(t, b)
			if len(ta) != len(tb) {
				t.Fatalf("trees have %d and %d entries", len(ta), len(tb))
			}
			for p, fa := range ta {
				fb, ok := tb[p]
				switch {
				case !ok:
					t.Errorf("%s missing from second tree", p)
				case !bytes.Equal(fa.data, fb.data):
					t.Errorf("%s: contents differ", p)
				case p != markerName && !fa.mtime.Equal(fb.mtime):
					t.Errorf("%s: mtime %v vs %v", p, fa.mtime, fb.mtime)
				case fa.mode != fb.mode:
					t.Errorf("%s: mode %v vs %v", p, fa.mode, fb.mode)
				}
			}
			if h.Compromised != (sa.AttackerIP != "") {
				t.Errorf("Compromised=%t but story attacker %q", h.Compromised, sa.AttackerIP)
			}
		})
	}
}

// TestGenerateSeedsDiffer checks that another seed gives other users, addresses and times.
func TestGenerateSeedsDiffer(t *testing.T) {
	h := testHosts["UbuntuWeb"]
	h2 := h
	h2.Seed++
	s1, s2 := StoryFor(h), StoryFor(h2)
	if s1.AttackerIP == s2.AttackerIP || s1.FirstSuccess.Equal(s2.FirstSuccess) || s1.PayloadSHA256 == s2.PayloadSHA256 {
		t.Errorf("seeds %d and %d give the same story parts: %+v / %+v", h.Seed, h2.Seed, s1, s2)
	}
	a, _ := mustGenerate(t, h)
	b, _ := mustGenerate(t, h2)
	pa, _ := os.ReadFile(filepath.Join(a, "etc/passwd"))
	pb, _ := os.ReadFile(filepath.Join(b, "etc/passwd"))
	if bytes.Equal(pa, pb) {
		t.Errorf("seeds %d and %d give the same /etc/passwd", h.Seed, h2.Seed)
	}
}

func TestGenerateTimesConsistent(t *testing.T) {
	for name, h := range testHosts {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root, _ := mustGenerate(t, h)
			now := h.anchor()
			for p, f := range readDisk(t, root) {
				if p == markerName {
					continue
				}
				if f.mtime.After(now) {
					t.Errorf("%s: mtime %v after the host's now %v", p, f.mtime, now)
				}
				if f.mtime.Before(now.AddDate(-3, 0, 0)) {
					t.Errorf("%s: mtime %v implausibly old", p, f.mtime)
				}
			}
		})
	}
}

func TestGenerateIdempotent(t *testing.T) {
	h := testHosts["UbuntuWeb"]
	root, st := mustGenerate(t, h)
	// A second call with the same Host must not rewrite anything: tampering survives it.
	auth := filepath.Join(root, "var/log/auth.log")
	if err := os.WriteFile(auth, []byte("tampered\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	st2, err := Generate(root, h)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, st2) {
		t.Errorf("second Generate returned another story")
	}
	if b, _ := os.ReadFile(auth); string(b) != "tampered\n" {
		t.Errorf("second Generate with the same Host rewrote auth.log")
	}

	// A changed Host regenerates, and files of the old tree that the new one lacks are removed.
	w := testHosts["Windows"]
	if _, err := Generate(root, w); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(auth); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("auth.log of the previous Linux tree still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "var")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty folders of the previous tree still there: %v", err)
	}
	fresh, _ := mustGenerate(t, w)
	got, want := readDisk(t, root), readDisk(t, fresh)
	delete(got, markerName)
	delete(want, markerName)
	if len(got) != len(want) {
		t.Errorf("regenerated tree has %d entries, fresh one %d", len(got), len(want))
	}
	for p, f := range want {
		if g, ok := got[p]; !ok || !bytes.Equal(g.data, f.data) || !g.mtime.Equal(f.mtime) {
			t.Errorf("%s differs between regenerated and fresh tree", p)
		}
	}

	// An interrupted run leaves a marker that matches no Host: the next call redoes the work.
	if err := writeMarker(root, "", marker{}); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(root, "C/Windows/System32/drivers/etc/hosts")
	os.WriteFile(hosts, []byte("x"), 0o644)
	if _, err := Generate(root, w); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(hosts); string(b) == "x" {
		t.Errorf("Generate trusted a marker without a hash")
	}
}

func TestValidateRejects(t *testing.T) {
	bad := map[string]Host{
		"DotDot":      {Name: "../evil", OS: "linux"},
		"Slash":       {Name: "a/b", OS: "linux"},
		"Backslash":   {Name: `a\b`, OS: "windows"},
		"OnlyDots":    {Name: "..", OS: "linux"},
		"EmptyLabel":  {Name: "a..b", OS: "linux"},
		"NUL":         {Name: "a\x00b", OS: "linux"},
		"Newline":     {Name: "a\nb", OS: "linux"},
		"Empty":       {Name: "", OS: "linux"},
		"LeadingDash": {Name: "-rf", OS: "linux"},
		"Space":       {Name: "my host", OS: "macos"},
		"UnknownOS":   {Name: "x", OS: "plan9"},
		"BadIP":       {Name: "x", OS: "linux", IP: "10.0.0.300"},
		"IPInjection": {Name: "x", OS: "linux", IP: "1.2.3.4\nfake"},
		"VersionNL":   {Name: "x", OS: "linux", OSVersion: "Ubuntu\n22.04"},
		"TooLong":     {Name: strings.Repeat("a", 64), OS: "linux"},
		"AnchorY2038": {Name: "x", OS: "linux", Anchor: time.Date(2038, 1, 19, 0, 0, 0, 0, time.UTC)},
		"AnchorOld":   {Name: "x", OS: "linux", Anchor: time.Unix(1, 0)},
	}
	for name, h := range bad {
		t.Run(name, func(t *testing.T) {
			if err := h.Validate(); !errors.Is(err, ErrInvalidHost) {
				t.Fatalf("Validate(%q) = %v, want ErrInvalidHost", h.Name, err)
			}
			parent := t.TempDir()
			root := filepath.Join(parent, "root")
			if _, err := Generate(root, h); !errors.Is(err, ErrInvalidHost) {
				t.Fatalf("Generate(%q) = %v, want ErrInvalidHost", h.Name, err)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("Generate(%q) wrote %d entries", h.Name, len(ents))
			}
			h.Compromised = true
			if st := StoryFor(h); !reflect.DeepEqual(st, Story{}) {
				t.Errorf("StoryFor of an invalid host returned a story")
			}
		})
	}
	good := []string{"web-03", "ws-fin-012.contoso.local", "HOST_1", "a.b.c"}
	for _, n := range good {
		if err := (Host{Name: n, OS: "linux"}).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", n, err)
		}
	}
}

// TestGenerateStaysInRoot plants symlinks that point out of the root where the generator will write,
// and checks that nothing lands outside.
func TestGenerateStaysInRoot(t *testing.T) {
	cases := map[string]struct {
		link string // path inside root replaced by a symlink to the outside folder
		host Host
	}{
		"VarLog": {"var/log", testHosts["UbuntuWeb"]},
		"Home":   {"home", testHosts["RHEL"]},
		"Tasks":  {"C/Windows/System32/Tasks", testHosts["Windows"]},
		"Users":  {"Users", testHosts["Mac"]},
		"Marker": {markerName, testHosts["Mac"]},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			outside := t.TempDir()
			root := t.TempDir()
			link := filepath.Join(root, filepath.FromSlash(c.link))
			os.MkdirAll(filepath.Dir(link), 0o755)
			target := outside
			if c.link == markerName {
				target = filepath.Join(outside, "stolen")
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			_, err := Generate(root, c.host)
			if err == nil {
				t.Errorf("Generate through a symlink out of root succeeded")
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("Generate wrote %d entries outside root", len(ents))
			}
		})
	}
}

func TestRegisterExtra(t *testing.T) {
	if RegisterExtra("", func(string, Host, Story) error { return nil }) == nil {
		t.Error("RegisterExtra accepted an empty name")
	}
	if RegisterExtra("x", nil) == nil {
		t.Error("RegisterExtra accepted a nil function")
	}
	h := testHosts["Windows"]
	root, _ := mustGenerate(t, h)
	var got []Story
	evtx := func(root string, h Host, s Story) error {
		got = append(got, s)
		r, err := os.OpenRoot(root)
		if err != nil {
			return err
		}
		defer r.Close()
		return r.WriteFile("C/Windows/System32/winevt/Logs/Security.evtx", []byte("ElfFile\x00"), 0o644)
	}
	if err := RegisterExtra("evtx-test", evtx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unregisterExtra("evtx-test") })
	if RegisterExtra("evtx-test", evtx) == nil {
		t.Error("RegisterExtra accepted a duplicate name")
	}
	// Registering changes the marker hash, so the existing tree is regenerated with the extra.
	st, err := Generate(root, h)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], st) || st.AttackerIP == "" {
		t.Fatalf("extra called %d times with %+v, want once with the story", len(got), got)
	}
	if _, err := os.Stat(filepath.Join(root, "C/Windows/System32/winevt/Logs/Security.evtx")); err != nil {
		t.Errorf("extra's file missing: %v", err)
	}
	if _, err := Generate(root, h); err != nil || len(got) != 1 {
		t.Errorf("second Generate ran the extra again (%d calls, err %v)", len(got), err)
	}
	failing := func(string, Host, Story) error { return errors.New("boom") }
	if err := RegisterExtra("zz-fail", failing); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unregisterExtra("zz-fail") })
	if _, err := Generate(root, h); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Generate with a failing extra = %v, want its error", err)
	}
}

func TestCleanHostHasNoStory(t *testing.T) {
	for _, name := range []string{"RHEL8Clean", "UbuntuClean", "WinServer", "MacClean"} {
		h := testHosts[name]
		if st := StoryFor(h); !reflect.DeepEqual(st, Story{}) {
			t.Errorf("%s: StoryFor = %+v, want zero", name, st)
		}
		dirty := h
		dirty.Compromised = true
		st := StoryFor(dirty)
		root, _ := mustGenerate(t, h)
		for p, f := range readDisk(t, root) {
			if st.AttackerIP != "" && bytes.Contains(f.data, []byte(st.AttackerIP)) {
				t.Errorf("%s: clean host's %s mentions the attacker %s", name, p, st.AttackerIP)
			}
		}
	}
}

func TestSizeAndSpeed(t *testing.T) {
	for name, h := range testHosts {
		root, _ := mustGenerate(t, h)
		var total int64
		for _, f := range readDisk(t, root) {
			total += int64(len(f.data))
		}
		if total < 100<<10 || total > 8<<20 {
			t.Errorf("%s: tree is %d bytes, want between 100 KiB and 8 MiB", name, total)
		}
		t.Logf("%s: %d KiB", name, total>>10)
	}
}

func BenchmarkGenerate(b *testing.B) {
	for _, name := range []string{"UbuntuWeb", "RHEL", "Windows", "Mac"} {
		h := testHosts[name]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				root := b.TempDir()
				if _, err := Generate(root, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzBuild checks that any Host either fails validation or builds a tree of local paths without
// panicking, whatever its name, version, seed or anchor.
func FuzzBuild(f *testing.F) {
	f.Add("web-03", "linux", "Ubuntu 22.04", int64(7), true, int64(1795000000))
	f.Add("ws.contoso.local", "windows", "Windows Server 2019", int64(-1), true, int64(0))
	f.Add("mbp", "macos", "", int64(1<<62), true, int64(-62135596800))
	f.Add("x", "linux", "RHEL 8", int64(0), true, int64(253402300799))
	f.Add("../x", "linux", "", int64(1), false, int64(0))
	f.Fuzz(func(t *testing.T, name, osName, version string, seed int64, compromised bool, anchor int64) {
		h := Host{Name: name, OS: osName, OSVersion: version, Seed: seed, Compromised: compromised, Anchor: time.Unix(anchor, 0)}
		if h.Validate() != nil {
			return
		}
		tr := newPlan(h).build()
		for _, p := range tr.paths() {
			if !fs.ValidPath(p) || strings.Contains(p, "..") || strings.HasPrefix(p, "/") {
				t.Fatalf("path %q escapes the root", p)
			}
		}
		_ = StoryFor(h)
	})
}
