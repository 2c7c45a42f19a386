// Package simhost writes deterministic, realistic file systems for simulated hosts, so that the Defender
// emulator can give every simulated device a disk that quarry-host collects and Quarry's parsers and Sigma
// rules process exactly as they would a real one.
//
// A Host (name, OS, version, IP, seed, anchor time) fully determines the tree: the same Host always gives
// byte-identical files with identical modification times, and different seeds give different users, IP
// addresses and times. A compromised Host also carries one coherent attack story, returned as a Story so
// that end-to-end tests can assert the detections it should raise.
//
// # Layout
//
// The root folder is the host's file system root.
//
//   - Linux: root/etc, root/var/log, root/home/<user>, root/root, root/tmp, root/dev/shm, root/var/spool/cron,
//     root/run/utmp. Debian and Ubuntu hosts get auth.log, syslog, dpkg.log and apt/history.log; RHEL-like
//     hosts (RHEL, CentOS, Rocky, Alma, Fedora, Amazon, Oracle in OSVersion) get secure, messages, cron,
//     audit/audit.log (with an execve rule for interactive users) and dnf.log/dnf.rpm.log. An unrecognised
//     Linux version is treated as Ubuntu. wtmp, btmp, /run/utmp and lastlog are binary records in glibc's
//     x86_64 layout and agree with auth.log line for line. Hosts named like web servers ("web", "www",
//     "proxy") also get an nginx or Apache access log.
//   - macOS: root/var/log (as seen through the /var -> /private/var firmlink; no symlink is written),
//     root/etc/hosts, root/Users/<user>.
//   - Windows: every drive letter is a folder, so the path C:\Windows\x lives at root/C/Windows/x and
//     C:\Users\alice\Desktop at root/C/Users/alice/Desktop.
//
// Not written, on purpose: /var/log/journal (binary journal files; the text logs carry the same story),
// /etc/shadow, the symlinks "systemctl enable" creates (an absolute link would point out of the root),
// Windows Prefetch files and registry hives, and the Windows event logs, which an Extra writes
// (the Defender emulator registers evtx/evtxgen.WriteHostLogs; simhost cannot import it, since it
// imports simhost): without one, C/Windows/System32/winevt/Logs stays empty.
//
// All log times are UTC (the simulated hosts run with TZ=UTC), so syslog lines without a year or zone are
// unambiguous given the host's anchor. File times follow the content: a log's time is its last line's, a
// history's the exit of the last shell that wrote it, a dropped file's the command that wrote it.
//
// # Idempotence
//
// Generate leaves a marker file, root/.simhost, holding a hash of the Host (and of the registered extras)
// and the list of files it wrote. A second call with the same Host only reads the marker; a call with a
// changed Host removes the files listed in the old marker and writes the new tree.
package simhost

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Version changes whenever the generator's output changes, so trees written by an older generator are
// regenerated rather than trusted.
const Version = "simhost/1"

// ErrInvalidHost is returned (wrapped) by Host.Validate and Generate when a Host cannot be generated
// safely: an unknown OS, a name that is not a DNS name (such as one containing "../"), or a bad IP.
var ErrInvalidHost = errors.New("invalid host")

// Host describes one simulated device.
type Host struct {
	Name        string    // computer DNS name, e.g. "ws-fin-012.contoso.local" or "web-03"
	OS          string    // "windows", "linux" or "macos"
	OSVersion   string    // e.g. "Windows 11 23H2", "Windows Server 2022", "Ubuntu 22.04", "RHEL 9.3", "macOS 14"
	IP          string    // the host's own address; empty means one derived from Seed
	Seed        int64     // everything random about the host derives from it
	Compromised bool      // plant an attack story in the artifacts
	Anchor      time.Time // "now" of the host, in 1995..2037; artifacts span the days before it (zero => a date derived from Seed)
}

// Story is what a compromised host's artifacts contain, so end-to-end tests can assert detections. For a
// host that is not compromised every field is zero.
//
// Access names the way in, and says where the brute-force fields can be seen:
//   - "ssh-bruteforce" (Linux): auth.log or secure, btmp, wtmp, lastlog and, on RHEL, audit.log.
//   - "rdp-bruteforce" (Windows): the failures and the logon belong in the Security event log, which an
//     EVTX Extra will write from these fields; today only the later steps (PowerShell history, the task,
//     the payload) are on disk.
//   - "clickfix" (macOS): the user pasted the attacker's commands into Terminal (~/.zsh_history);
//     Failures is 0, BruteForceStart is zero, AttackerIP is the server the commands fetch from and
//     FirstSuccess is the first pasted command.
type Story struct {
	Access          string    // "ssh-bruteforce", "rdp-bruteforce" or "clickfix"
	AttackerIP      string    // source of the brute force (on macOS: the server the pasted commands fetch from)
	User            string    // the account the attacker got into
	BruteForceStart time.Time // time of the first "Failed password" from AttackerIP (zero on macOS)
	Failures        int       // failed password attempts from AttackerIP, all before FirstSuccess
	FirstSuccess    time.Time // the attacker's first successful logon ("Accepted password"); see Access
	LastActivity    time.Time // time of the attacker's last command

	C2              string   // "ip:port" of the attacker's server: payload download and reverse shell
	PayloadPath     string   // host path of the dropped payload (Windows form "C:\..." on Windows)
	PayloadSHA256   string   // hex SHA-256 of the payload bytes
	PersistencePath string   // host path of the main persistence artifact (crontab, unit, task XML, plist)
	Persistence     []string // every persistence artifact, PersistencePath first ("local account <name>" for a user)
	AuthorizedKey   string   // the public key line the attacker added (Linux), empty otherwise
	AddedUser       string   // account the attacker created (Windows), empty otherwise
	WebShell        string   // host path of a planted web shell on Linux web servers, empty otherwise
	Commands        []string // the attacker's commands in the order they were typed
}

var (
	minAnchor = time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC)
	maxAnchor = time.Date(2038, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Validate reports whether h can be generated. Errors wrap ErrInvalidHost.
func (h Host) Validate() error {
	switch h.OS {
	case "windows", "linux", "macos":
	default:
		return fmt.Errorf("simhost: %w: unknown os %q", ErrInvalidHost, h.OS)
	}
	if err := validName(h.Name); err != nil {
		return fmt.Errorf("simhost: %w: name %q: %w", ErrInvalidHost, h.Name, err)
	}
	if h.IP != "" {
		if _, err := netip.ParseAddr(h.IP); err != nil {
			return fmt.Errorf("simhost: %w: ip %q", ErrInvalidHost, h.IP)
		}
	}
	// utmp and lastlog store 32-bit seconds, so a host's history must end before 2038.
	if !h.Anchor.IsZero() && (h.Anchor.Before(minAnchor) || !h.Anchor.Before(maxAnchor)) {
		return fmt.Errorf("simhost: %w: anchor %v outside %d..%d", ErrInvalidHost, h.Anchor, minAnchor.Year(), maxAnchor.Year()-1)
	}
	if len(h.OSVersion) > 100 || strings.ContainsAny(h.OSVersion, "\x00\r\n") {
		return fmt.Errorf("simhost: %w: os version %q", ErrInvalidHost, h.OSVersion)
	}
	return nil
}

// validName accepts DNS names (letters, digits, '-', '_' and dots between non-empty labels). The name ends
// up inside log lines and file contents, never in paths, but refusing anything else keeps "../", slashes
// and control characters out of every artifact.
func validName(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("empty or longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or too long label")
		}
		if label[0] == '-' {
			return errors.New("label starts with '-'")
		}
		for _, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}

// anchor is the host's "now": Host.Anchor in UTC, or a date derived from the seed so that hosts without
// an anchor still differ and still never depend on the wall clock.
func (h Host) anchor() time.Time {
	if !h.Anchor.IsZero() {
		return h.Anchor.UTC().Truncate(time.Second)
	}
	s := uint64(h.Seed)
	base := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	return base.AddDate(0, 0, int(s%300)).Add(time.Duration(8*3600+(s/300)%(10*3600)) * time.Second)
}

// hash identifies the tree a Host produces, for the idempotence marker.
func (h Host) hash(extras []string) string {
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\n%q\n%q\n%q\n%q\n%d\n%t\n%d\n", Version, h.Name, h.OS, h.OSVersion, h.IP, h.Seed,
		h.Compromised, h.anchor().Unix())
	for _, e := range extras {
		fmt.Fprintf(sum, "extra %q\n", e)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// StoryFor returns the attack story Generate would plant for h, without writing anything. It returns the
// zero Story when h is not compromised or not valid.
func StoryFor(h Host) Story {
	if !h.Compromised || h.Validate() != nil {
		return Story{}
	}
	return newPlan(h).story
}

// Generate writes h's file system under root (created if missing) and returns its Story. It is idempotent
// and cheap when root already holds h's tree. Nothing is ever written outside root: every write goes
// through an os.Root (a symlink pointing out of root makes Generate fail rather than follow it), and h
// is validated first. Files under root that Generate did not write are left alone. Calls for different
// roots may run concurrently; two calls for the same root must not.
func Generate(root string, h Host) (Story, error) {
	if err := h.Validate(); err != nil {
		return Story{}, err
	}
	extras := extraNames()
	want := h.hash(extras)
	if err := mkdirRoot(root); err != nil {
		return Story{}, err
	}
	old, err := readMarker(root)
	if err != nil {
		return Story{}, err
	}
	if old.hash == want {
		return StoryFor(h), nil
	}
	p := newPlan(h)
	t := p.build()
	if err := removeFiles(root, old); err != nil {
		return Story{}, err
	}
	// Until the new tree is complete the marker matches no Host and lists every file that may exist, so
	// an interrupted run is cleaned up and redone by the next call.
	files, dirs := t.entries()
	pending := marker{files: append(slices.Clone(files), old.files...), dirs: append(slices.Clone(dirs), old.dirs...)}
	if err := writeMarker(root, "", pending); err != nil {
		return Story{}, err
	}
	if err := t.flush(root); err != nil {
		return Story{}, err
	}
	story := Story{}
	if h.Compromised {
		story = p.story
	}
	for _, name := range extras {
		if err := extraFunc(name)(root, h, story); err != nil {
			return Story{}, fmt.Errorf("simhost: extra %s: %w", name, err)
		}
	}
	if err := writeMarker(root, want, marker{files: files, dirs: dirs}); err != nil {
		return Story{}, err
	}
	return story, nil
}
