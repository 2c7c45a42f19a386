// Package ioc holds indicator-of-compromise lists — hashes, IP addresses and networks, domains,
// URLs and file names — reads them from plain text and MISP JSON, and matches them against
// timeline events and the files of an evidence package's manifest (issue #9).
//
// It is pure: no storage, no HTTP, no clock. A List is what an analyst entered or imported; a
// Matcher built from lists is immutable and safe for concurrent use, so processing builds one per
// project run and shares it between workers.
package ioc

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/quarry-dfir/quarry"
)

// Type is the kind of an indicator.
type Type string

// The indicator types. Hashes are lowercase hex; IPs and CIDRs are canonical (netip); a domain
// matches itself and its subdomains; a file name is a base name, matched case-insensitively,
// where * and ? are wildcards; a URL matches the same URL, or the same URL with a query or
// fragment added.
const (
	MD5      Type = "md5"
	SHA1     Type = "sha1"
	SHA256   Type = "sha256"
	SHA512   Type = "sha512"
	Imphash  Type = "imphash" // the import hash Sysmon reports as IMPHASH=; 32 hex digits like MD5
	IP       Type = "ip"
	CIDR     Type = "cidr"
	Domain   Type = "domain"
	Filename Type = "filename"
	URL      Type = "url"
)

// Types lists every Type, in the order a UI offers them.
func Types() []Type {
	return []Type{SHA256, SHA1, MD5, SHA512, Imphash, IP, CIDR, Domain, URL, Filename}
}

// Valid reports whether t is one of Types.
func (t Type) Valid() bool {
	switch t {
	case MD5, SHA1, SHA256, SHA512, Imphash, IP, CIDR, Domain, Filename, URL:
		return true
	}
	return false
}

// hexLen is the length in hex digits of each hash type.
func (t Type) hexLen() int {
	switch t {
	case MD5, Imphash:
		return 32
	case SHA1:
		return 40
	case SHA256:
		return 64
	case SHA512:
		return 128
	}
	return 0
}

// typeAliases maps the names a line prefix (sha256:…) may use to a Type; MISP names included so
// that a list copied out of MISP's UI reads the same.
var typeAliases = map[string]Type{
	"md5": MD5, "sha1": SHA1, "sha-1": SHA1, "sha256": SHA256, "sha-256": SHA256, "sha512": SHA512, "sha-512": SHA512,
	"imphash": Imphash,
	"ip":      IP, "ipv4": IP, "ipv6": IP, "ip-src": IP, "ip-dst": IP, "addr": IP,
	"cidr": CIDR, "net": CIDR, "network": CIDR, "subnet": CIDR,
	"domain": Domain, "hostname": Domain, "host": Domain, "fqdn": Domain,
	"filename": Filename, "file": Filename, "name": Filename,
	"url": URL, "uri": URL,
}

// ParseType returns the Type a name stands for: a Type itself or an alias such as "ip-dst",
// "hostname" or "sha-256", case-insensitively.
func ParseType(name string) (Type, bool) {
	t, ok := typeAliases[strings.ToLower(strings.TrimSpace(name))]
	return t, ok
}

// Levels a list may give its detections (quarry.Detection.Level); DefaultLevel when unset.
const DefaultLevel = "high"

var levels = map[string]bool{"informational": true, "low": true, "medium": true, "high": true, "critical": true}

// Indicator is one thing to look for. Value is normalised (see Normalize) in every Indicator
// this package returns; Description says what it is and where it came from.
type Indicator struct {
	Type        Type   `json:"type"`
	Value       string `json:"value"`
	Description string `json:"description,omitempty"`
}

// MaxDescription bounds a description, in bytes; longer ones are cut at a rune boundary.
const MaxDescription = 1024

// NewIndicator returns the indicator for value: of type t, or of the type value looks like when
// t is "" (see Detect). The value is refanged and normalised; the error is a *quarry.Error with
// code EINVALID whose message says what is wrong.
func NewIndicator(t Type, value, description string) (Indicator, error) {
	var err error
	if t == "" {
		t, value, err = Detect(value)
	} else {
		value, err = Normalize(t, value)
	}
	if err != nil {
		return Indicator{}, err
	}
	return Indicator{Type: t, Value: value, Description: cleanDescription(description)}, nil
}

// Validate checks that ind is well-formed and normalised, as the store should before saving it.
func (ind Indicator) Validate() error {
	if !ind.Type.Valid() {
		return quarry.FieldError("type", "unknown indicator type %q", ind.Type)
	}
	v, err := Normalize(ind.Type, ind.Value)
	if err != nil {
		return err
	}
	if v != ind.Value {
		return quarry.FieldError("value", "indicator %q is not normalised: use %q", ind.Value, v)
	}
	if len(ind.Description) > MaxDescription {
		return quarry.FieldError("description", "description longer than %d bytes", MaxDescription)
	}
	return nil
}

// List is a named set of indicators, as an analyst keeps it: "APT29 March report", "Blocklist".
type List struct {
	ID         int64       `json:"id,omitempty"` // the store's id, carried into hits; 0 when not stored
	Name       string      `json:"name"`
	Level      string      `json:"level,omitempty"` // the Level of its detections; "" is DefaultLevel
	Indicators []Indicator `json:"indicators"`
}

// MaxListName bounds a list's name, in bytes.
const MaxListName = 200

// Validate checks the list's name, level and every indicator; the error names the first bad one.
func (l *List) Validate() error {
	if strings.TrimSpace(l.Name) == "" {
		return quarry.FieldError("name", "a list needs a name")
	}
	if len(l.Name) > MaxListName {
		return quarry.FieldError("name", "list name longer than %d bytes", MaxListName)
	}
	if l.Level != "" && !levels[l.Level] {
		return quarry.FieldError("level", "level %q is not one of informational, low, medium, high, critical", l.Level)
	}
	for i, ind := range l.Indicators {
		if err := ind.Validate(); err != nil {
			var qe *quarry.Error
			if errors.As(err, &qe) {
				return &quarry.Error{Code: qe.Code, Field: "indicators", Message: fmt.Sprintf("indicator %d: %s", i+1, qe.Message)}
			}
			return err
		}
	}
	return nil
}

func (l *List) level() string {
	if l.Level == "" {
		return DefaultLevel
	}
	return l.Level
}

// Problem is one entry of an import that was not taken, and why. Line is 1-based: the line of
// a text list, the line where a MISP attribute starts, or the position of an indicator in a
// List given to NewMatcher.
type Problem struct {
	Line   int    `json:"line"`
	Value  string `json:"value,omitempty"` // the offending text, cut to 120 bytes
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	if p.Value == "" {
		return fmt.Sprintf("line %d: %s", p.Line, p.Reason)
	}
	return fmt.Sprintf("line %d: %q: %s", p.Line, p.Value, p.Reason)
}

// cut shortens s to at most n bytes at a rune boundary, marking the cut with "…".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i < len(s) && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}

// cleanDescription trims a description and keeps it on one bounded line.
func cleanDescription(s string) string {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "\r\n\t") {
		s = strings.Join(strings.Fields(s), " ")
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return cut(s, MaxDescription-len("…"))
}

// invalid is the error of a value that is not an indicator of the type asked for.
func invalid(format string, args ...any) error {
	return quarry.FieldError("value", format, args...)
}

// Normalize returns value, refanged, in the canonical form of type t: lowercase hex for hashes,
// netip's form for addresses (IPv4-mapped IPv6 unmapped, zone dropped), the masked network for
// a CIDR, a lowercase domain without surrounding dots or a leading "*.", a lowercase file base
// name, a URL with lowercase scheme and host and no fragment.
func Normalize(t Type, value string) (string, error) {
	v := Refang(strings.TrimSpace(value))
	if v == "" {
		return "", invalid("empty value")
	}
	if len(v) > maxValue {
		return "", invalid("value longer than %d bytes", maxValue)
	}
	switch t {
	case MD5, SHA1, SHA256, SHA512, Imphash:
		return normHash(t, v)
	case IP:
		return normIP(v)
	case CIDR:
		return normCIDR(v)
	case Domain:
		return normDomain(v)
	case Filename:
		return normFilename(v)
	case URL:
		return normURL(v)
	}
	return "", quarry.FieldError("type", "unknown indicator type %q", t)
}

// maxValue bounds an indicator value, in bytes: a URL is the longest.
const maxValue = 2048

func normHash(t Type, v string) (string, error) {
	// "sha256=…" as Sysmon writes it, or a prefix the user pasted along.
	if i := strings.LastIndexAny(v, "=:"); i >= 0 {
		v = v[i+1:]
	}
	if len(v) != t.hexLen() || !isHex(v) {
		return "", invalid("%s hashes are %d hex digits", t, t.hexLen())
	}
	return strings.ToLower(v), nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func normIP(v string) (string, error) {
	v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	a, err := netip.ParseAddr(v)
	if err != nil {
		// A /32 or /128 is an address written as a network.
		if p, perr := netip.ParsePrefix(v); perr == nil && p.IsSingleIP() {
			return p.Addr().Unmap().WithZone("").String(), nil
		}
		return "", invalid("not an IP address")
	}
	return a.Unmap().WithZone("").String(), nil
}

func normCIDR(v string) (string, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		if a, aerr := netip.ParseAddr(v); aerr == nil {
			// An address is the network of itself alone.
			a = a.Unmap().WithZone("")
			return netip.PrefixFrom(a, a.BitLen()).String(), nil
		}
		return "", invalid("not a network in CIDR notation (10.0.0.0/8, 2001:db8::/32)")
	}
	a := p.Addr()
	bits := p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return "", invalid("IPv4-mapped network shorter than /96")
		}
		a, bits = a.Unmap(), bits-96
	}
	if bits == 0 {
		return "", invalid("a /0 network matches every address")
	}
	return netip.PrefixFrom(a, bits).Masked().String(), nil
}

// normDomain checks the syntax of a host name: at least two labels of letters, digits, '-' and
// '_' (seen in real malware infrastructure), a top-level label that is not all digits.
func normDomain(v string) (string, error) {
	v = strings.ToLower(strings.Trim(v, "."))
	v = strings.TrimPrefix(v, "*.")
	if len(v) > 253 {
		return "", invalid("domain longer than 253 bytes")
	}
	labels := 0
	last := ""
	for l := range strings.SplitSeq(v, ".") {
		if l == "" || len(l) > 63 {
			return "", invalid("not a domain: empty or over-long label")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if c >= 0x80 {
				return "", invalid("write internationalised domains in their xn-- (punycode) form")
			}
			if !isDomainByte(c) {
				return "", invalid("not a domain: %q is not allowed", c)
			}
		}
		labels++
		last = l
	}
	if labels < 2 {
		return "", invalid("a domain needs at least two labels; a top-level domain alone would match too much")
	}
	if !hasLetter(last) {
		return "", invalid("not a domain: the last label is a number")
	}
	return v, nil
}

func isDomainByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || 'A' <= c && c <= 'Z'
}

func hasLetter(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; 'a' <= c && c <= 'z' {
			return true
		}
	}
	return false
}

// normFilename keeps the base name of a path (C:\Users\x\evil.exe is evil.exe) in lower case.
func normFilename(v string) (string, error) {
	if i := strings.LastIndexAny(v, `/\`); i >= 0 {
		v = v[i+1:]
	}
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return "", invalid("empty file name")
	}
	if len(v) > 255 {
		return "", invalid("file name longer than 255 bytes")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f || c == '"' {
			// Quotes delimit names in command lines and lists; Windows forbids them in names.
			return "", invalid("file name with a control character or a double quote")
		}
	}
	literal := 0
	for i := 0; i < len(v); i++ {
		if c := v[i]; c != '*' && c != '?' && c != '.' {
			literal++
		}
	}
	if literal < 2 {
		return "", invalid("file name pattern with fewer than two fixed characters would match too much")
	}
	return v, nil
}

// Detect returns the type value looks like and its normalised form: a URL by its scheme, a hash
// by its length in hex digits (32 is taken as MD5), an address, a network, a file name by a
// file extension that is no top-level domain (.exe, .dll, .ps1, …) or a wildcard, else a
// domain. A value that is both, such as evil.com or invoice.zip, is read as a domain: prefix it
// with "filename:" in a text list to say otherwise.
func Detect(value string) (Type, string, error) {
	v := Refang(strings.TrimSpace(value))
	if v == "" {
		return "", "", invalid("empty value")
	}
	if len(v) > maxValue {
		return "", "", invalid("value longer than %d bytes", maxValue)
	}
	if strings.Contains(v, "://") {
		n, err := normURL(v)
		return URL, n, err
	}
	if isHex(v) {
		for _, t := range []Type{MD5, SHA1, SHA256, SHA512} {
			if len(v) == t.hexLen() {
				return t, strings.ToLower(v), nil
			}
		}
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")); err == nil {
		return IP, a.Unmap().WithZone("").String(), nil
	}
	if strings.Contains(v, "/") {
		if p, err := netip.ParsePrefix(v); err == nil {
			if p.IsSingleIP() {
				return IP, p.Addr().Unmap().WithZone("").String(), nil
			}
			n, err := normCIDR(v)
			return CIDR, n, err
		}
	}
	if strings.ContainsAny(v, "*?") || fileExt(v) {
		if !strings.HasPrefix(v, "*.") || fileExt(v) || !isDomainLike(v[2:]) {
			n, err := normFilename(v)
			return Filename, n, err
		}
	}
	if isHex(v) {
		return "", "", invalid("%d hex digits is no hash length (MD5 32, SHA-1 40, SHA-256 64, SHA-512 128)", len(v))
	}
	if n, err := normDomain(v); err == nil {
		return Domain, n, nil
	}
	return "", "", invalid("not a hash, IP address, network, domain, URL or file name; prefix it with its type (filename:, domain:, …)")
}

func isDomainLike(v string) bool {
	_, err := normDomain(v)
	return err == nil
}

// fileExts are extensions that mark a file name and are no top-level domain (.com, .zip, .sh,
// .py, .app, .mov are both and read as domains).
var fileExts = map[string]bool{
	"exe": true, "dll": true, "sys": true, "scr": true, "bat": true, "cmd": true, "ps1": true, "psm1": true,
	"psd1": true, "vbs": true, "vbe": true, "js": true, "jse": true, "wsf": true, "wsh": true, "hta": true,
	"lnk": true, "msi": true, "msp": true, "jar": true, "cpl": true, "ocx": true, "inf": true, "reg": true,
	"doc": true, "docx": true, "docm": true, "dotm": true, "xls": true, "xlsx": true, "xlsm": true,
	"xlsb": true, "ppt": true, "pptx": true, "pptm": true, "pdf": true, "rtf": true, "rar": true, "7z": true,
	"iso": true, "img": true, "vhd": true, "vhdx": true, "dmp": true, "tmp": true, "dat": true,
	"bin": true, "ini": true, "txt": true, "log": true, "elf": true, "dylib": true, "msc": true,
	"appx": true, "msix": true, "xll": true, "wll": true, "chm": true, "url": true,
	"iqy": true, "slk": true, "html": true, "htm": true, "php": true, "asp": true, "aspx": true,
	"jsp": true, "war": true, "pyc": true, "deb": true, "rpm": true, "apk": true, "dmg": true, "plist": true,
	"tar": true, "gz": true, "tgz": true, "xz": true, "bz2": true, "zst": true, "ace": true, "arj": true,
	"job": true, "xml": true, "json": true, "sct": true, "pif": true, "gadget": true,
}

func fileExt(v string) bool {
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return false
	}
	return fileExts[strings.ToLower(v[i+1:])]
}
