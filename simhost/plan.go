package simhost

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// plan holds every decision about a host before anything is rendered: who its users are, when things
// happened, and the attack. Renderers only format what the plan decided, which is what keeps auth.log,
// wtmp, btmp, lastlog and the histories in agreement.
type plan struct {
	h      Host
	now    time.Time // the host's anchor
	start  time.Time // first day covered by the logs
	short  string    // host name as the OS prints it
	ip     string
	distro string // "debian" or "rhel" on Linux
	role   string // "web", "db", "server", "workstation" or "laptop"
	web    string // "nginx", "apache" or "" (Linux web servers)
	boot   time.Time
	users  []*user
	story  Story
	linux  *linuxAttack // nil unless a compromised Linux host
	// The attacker's failed attempts and sessions, merged by planLinux into the host's own.
	linuxAttempts []attempt
	linuxSessions []*sshSession
	win           *windowsAttack // nil unless a compromised Windows host
	mac           *macAttack     // nil unless a compromised macOS host
}

type user struct {
	name    string
	full    string
	uid     int
	admin   bool   // in sudo/wheel, or local Administrators on Windows
	service bool   // a shared or service account, the brute force's target
	histTS  bool   // bash HISTTIMEFORMAT set, so history has "#<epoch>" lines
	keyFP   string // SHA256 fingerprint as sshd logs it
	pubKey  string // authorized_keys line
}

var (
	firstNames = []string{"alice", "bruno", "chen", "dana", "elif", "farid", "greta", "hiro", "ines", "jonas",
		"karin", "luca", "maya", "nils", "omar", "priya", "quinn", "rosa", "sven", "tara", "umar", "vera",
		"wei", "yusuf", "zoe", "marta", "pavel", "sofia", "tomas", "anika"}
	lastNames = []string{"martin", "khan", "schulz", "novak", "garcia", "okafor", "larsen", "tanaka", "rossi",
		"dubois", "meyer", "silva", "kowalski", "nguyen", "berg", "fischer", "haddad", "moreau", "ivanova",
		"lindqvist", "costa", "weber", "sato", "petrov"}
	serviceAccounts = []string{"deploy", "devops", "jenkins", "backup", "test", "support", "oracle", "git"}
	// First octets of address blocks that are routed on the internet and not reserved for documentation.
	publicFirstOctets = []int{5, 23, 31, 37, 45, 46, 62, 77, 79, 80, 85, 89, 91, 92, 94, 103, 104, 109,
		112, 116, 118, 121, 139, 141, 146, 152, 154, 159, 162, 167, 178, 179, 183, 185, 188, 190, 193, 194,
		195, 211, 212, 213, 218, 221, 222}
)

func newPlan(h Host) *plan {
	p := &plan{h: h, now: h.anchor()}
	r := newRNG(h.Seed, "host")
	p.start = p.now.Add(-7 * 24 * time.Hour).Truncate(24 * time.Hour)
	p.boot = p.start.Add(-r.dur(3*24*time.Hour, 40*24*time.Hour))
	p.short = strings.ToLower(strings.SplitN(h.Name, ".", 2)[0])
	p.ip = h.IP
	if p.ip == "" {
		p.ip = fmt.Sprintf("10.%d.%d.%d", r.Between(10, 250), r.Between(0, 254), r.Between(10, 250))
	}
	lower := strings.ToLower(h.Name)
	switch h.OS {
	case "linux":
		p.distro = distroOf(h.OSVersion)
		p.role = "server"
		switch {
		case strings.Contains(lower, "web") || strings.Contains(lower, "www") || strings.Contains(lower, "proxy"):
			p.role = "web"
		case strings.Contains(lower, "db") || strings.Contains(lower, "sql"):
			p.role = "db"
		}
		if p.role == "web" {
			p.web = pick(r, []string{"nginx", "apache"})
		}
	case "windows":
		p.short = strings.ToUpper(p.short)
		if len(p.short) > 15 { // NetBIOS names are at most 15 characters
			p.short = p.short[:15]
		}
		p.role = "workstation"
		if strings.Contains(strings.ToLower(h.OSVersion), "server") {
			p.role = "server"
		}
	case "macos":
		p.role = "laptop"
	}
	p.makeUsers()
	if h.Compromised {
		switch h.OS {
		case "linux":
			p.planLinuxAttack()
		case "windows":
			p.planWindowsAttack()
		case "macos":
			p.planMacAttack()
		}
	}
	return p
}

// build renders the whole tree in memory.
func (p *plan) build() *tree {
	t := newTree()
	t.empty = p.installTime()
	switch p.h.OS {
	case "linux":
		p.buildLinux(t)
	case "windows":
		p.buildWindows(t)
	case "macos":
		p.buildMac(t)
	}
	return t
}

func distroOf(version string) string {
	v := strings.ToLower(version)
	for _, k := range []string{"rhel", "red hat", "centos", "rocky", "alma", "fedora", "amazon", "oracle"} {
		if strings.Contains(v, k) {
			return "rhel"
		}
	}
	return "debian"
}

// versionNumber returns the first dotted number in an OS version ("Ubuntu 22.04" -> "22.04").
func versionNumber(v, fallback string) string {
	for _, f := range strings.Fields(v) {
		if f != "" && f[0] >= '0' && f[0] <= '9' {
			return f
		}
	}
	return fallback
}

func (p *plan) makeUsers() {
	r := newRNG(p.h.Seed, "users")
	names := shuffle(r, firstNames)
	lasts := shuffle(r, lastNames)
	n := r.Between(2, 4)
	style := r.Intn(3)
	uid := 1000
	if p.h.OS == "macos" {
		uid, n = 501, 1
	}
	for i := 0; i < n; i++ {
		name := names[i]
		switch style {
		case 1:
			name = names[i][:1] + lasts[i]
		case 2:
			if p.h.OS == "windows" {
				name = names[i] + "." + lasts[i]
			}
		}
		full := strings.ToUpper(names[i][:1]) + names[i][1:] + " " + strings.ToUpper(lasts[i][:1]) + lasts[i][1:]
		p.users = append(p.users, &user{name: name, full: full, uid: uid, admin: i == 0 || r.Chance(40),
			histTS: r.Chance(50)})
		uid++
	}
	if p.h.OS == "windows" {
		p.users = append(p.users, &user{name: pick(r, windowsLocalAccounts), full: "Local support", uid: uid,
			admin: true, service: true})
	}
	if p.h.OS == "linux" {
		svc := pick(r, serviceAccounts)
		p.users = append(p.users, &user{name: svc, full: svc, uid: uid, admin: true, service: true,
			histTS: r.Chance(30)})
		for _, u := range p.users {
			u.keyFP, u.pubKey = sshKey(r, u.name+"@"+pick(r, []string{"laptop", "jump", "mbp", "wks"}))
		}
	}
}

// sshKey returns a deterministic public key line and the fingerprint sshd would log for it. The key blob
// has the real wire layout (type string, then key material) so fingerprints computed by tools agree.
func sshKey(r *rng, comment string) (fp, line string) {
	const typ = "ssh-ed25519"
	blob := sshString([]byte(typ))
	blob = append(blob, sshString(r.bytes(32))...)
	line = typ + " " + base64.StdEncoding.EncodeToString(blob) + " " + comment
	return keyFingerprint(line), line
}

// keyFingerprint returns the SHA256 fingerprint of an authorized_keys line, as sshd logs it.
func keyFingerprint(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(blob)
	return "SHA256:" + strings.TrimRight(base64.StdEncoding.EncodeToString(sum[:]), "=")
}

func sshString(b []byte) []byte {
	out := []byte{byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}
	return append(out, b...)
}

func publicIP(r *rng) string {
	return fmt.Sprintf("%d.%d.%d.%d", pick(r, publicFirstOctets), r.Between(1, 254), r.Between(0, 254),
		r.Between(1, 254))
}

// neighbour returns an address in the host's own /24 (or a fixed private one for IPv6 hosts).
func (p *plan) neighbour(r *rng) string {
	a, err := netip.ParseAddr(p.ip)
	if err != nil || !a.Is4() {
		return fmt.Sprintf("10.20.%d.%d", r.Between(0, 254), r.Between(2, 250))
	}
	b := a.As4()
	for {
		last := byte(r.Between(2, 250))
		if last != b[3] {
			return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], last)
		}
	}
}

func (p *plan) humans() []*user {
	var out []*user
	for _, u := range p.users {
		if !u.service {
			out = append(out, u)
		}
	}
	return out
}

func (p *plan) userNamed(name string) *user {
	for _, u := range p.users {
		if u.name == name {
			return u
		}
	}
	return nil
}

// payload returns the dropped file's bytes: a minimal but well-formed executable header for the OS, then
// deterministic filler with a few strings an analyst would grep for.
func payload(seed int64, kind string, c2 string) []byte {
	r := newRNG(seed, "payload-"+kind)
	var head []byte
	switch kind {
	case "elf":
		head = elfHeader()
	case "pe":
		head = peHeader()
	case "macho":
		head = []byte{0xcf, 0xfa, 0xed, 0xfe, 0x07, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00}
	}
	b := filler(r, head, len(head)+r.Between(6, 24)*1024)
	copy(b[len(b)/3:], "\x00connect "+c2+"\x00/bin/sh\x00-i\x00HISTFILE=/dev/null\x00")
	return b
}

// filler returns size bytes: head, then deterministic noise. It stands in for binaries whose contents
// no parser reads but whose presence, size and hash matter.
func filler(r *rng, head []byte, size int) []byte {
	b := r.bytes(max(size, len(head)))
	copy(b, head)
	return b
}

// peHeader is the start of a PE file: the MZ header pointing at a PE signature for AMD64.
func peHeader() []byte {
	h := make([]byte, 0x80)
	copy(h, "MZ")
	h[0x3c] = 0x80 // e_lfanew
	return append(h, 'P', 'E', 0, 0, 0x64, 0x86)
}

// elfHeader is an ELF64 little-endian x86-64 executable header (64 bytes).
func elfHeader() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1                            // ELFCLASS64, ELFDATA2LSB, EV_CURRENT
	h[16] = 2                                             // ET_EXEC
	h[18] = 0x3e                                          // EM_X86_64
	h[20] = 1                                             // e_version
	copy(h[24:], []byte{0x00, 0x10, 0x40, 0, 0, 0, 0, 0}) // e_entry 0x401000
	h[32] = 64                                            // e_phoff
	h[52] = 64                                            // e_ehsize
	h[54] = 56                                            // e_phentsize
	return h
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// clock hands out increasing times from a start, for scripted sequences such as an attacker's session.
type clock struct {
	t time.Time
	r *rng
}

func (c *clock) step(lo, hi time.Duration) time.Time {
	c.t = c.t.Add(c.r.dur(lo, hi))
	return c.t
}
