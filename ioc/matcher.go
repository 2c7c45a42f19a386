package ioc

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
)

// ref points at one indicator of the matcher's lists.
type ref struct{ list, ind int32 }

// Matcher finds the indicators of a set of lists in events and manifest entries. It is built
// once (NewMatcher) and never changes, so any number of goroutines may use it at once.
//
// Every kind has its own index: hashes, addresses, URLs and exact file names are map look-ups;
// a network is found by masking an address to each prefix length the lists use; a domain by
// looking up the name and each parent (a.b.evil.com, b.evil.com, evil.com), so evilexample.com
// never matches example.com; file name patterns are bucketed by their fixed first or last
// characters. Event text is cut into candidate tokens in one pass (see scanTokens), so the cost of
// an event does not grow with the number of indicators.
type Matcher struct {
	lists    []List
	hashes   map[string][]ref
	addrs    map[netip.Addr][]ref
	nets     map[netip.Prefix][]ref
	netBits4 []int // distinct prefix lengths of IPv4 networks, longest first
	netBits6 []int
	// net16 marks the IPv4 /16 blocks some network overlaps: most addresses are in none, and
	// are done without masking them to each prefix length.
	net16   *[1 << 16 / 64]uint64
	domains map[string][]ref
	urls    map[string][]ref
	names   map[string][]ref
	globs   globIndex
	want    want
	// tlds holds the last label of every domain: a candidate under another top-level domain
	// (powershell.exe, most file names) needs no walk up its parents.
	tlds map[string]struct{}
	// namesNeedDot is true when every file name indicator holds a '.', so words without one
	// (most of a command line) need no look-up.
	namesNeedDot bool
	count        int
	problems     []Problem
}

// NewMatcher indexes the indicators of lists. Each is normalised again, so hand-built lists
// work; one that is not an indicator is left out and reported by Problems (Line is its
// position in its list), so that one bad stored value does not stop a project's processing.
// Duplicates within and across lists are kept: each list's hit is reported.
func NewMatcher(lists ...List) *Matcher {
	m := &Matcher{
		hashes: map[string][]ref{}, addrs: map[netip.Addr][]ref{}, nets: map[netip.Prefix][]ref{},
		domains: map[string][]ref{}, urls: map[string][]ref{}, names: map[string][]ref{},
		globs: newGlobIndex(), tlds: map[string]struct{}{}, namesNeedDot: true,
	}
	bits4, bits6 := map[int]bool{}, map[int]bool{}
	for li, l := range lists {
		l.Indicators = slices.Clone(l.Indicators)
		for ii := range l.Indicators {
			ind := &l.Indicators[ii]
			v, err := Normalize(ind.Type, ind.Value)
			if err != nil {
				m.problems = append(m.problems, Problem{Line: ii + 1, Value: cut(ind.Value, 120),
					Reason: fmt.Sprintf("list %q: %s", l.Name, reasonOf(err))})
				continue
			}
			ind.Value = v
			r := ref{int32(li), int32(ii)}
			m.count++
			switch ind.Type {
			case MD5, SHA1, SHA256, SHA512, Imphash:
				m.hashes[v] = append(m.hashes[v], r)
				m.want |= wantHash
			case IP:
				a := netip.MustParseAddr(v)
				m.addrs[a] = append(m.addrs[a], r)
				m.want |= wantIP
			case CIDR:
				p := netip.MustParsePrefix(v)
				m.nets[p] = append(m.nets[p], r)
				if p.Addr().Is4() {
					bits4[p.Bits()] = true
					if m.net16 == nil {
						m.net16 = new([1 << 16 / 64]uint64)
					}
					a := p.Addr().As4()
					first := uint32(a[0])<<8 | uint32(a[1])
					n := uint32(1)
					if p.Bits() < 16 {
						n = 1 << (16 - p.Bits())
					}
					for b := first; b < first+n; b++ {
						m.net16[b/64] |= 1 << (b % 64)
					}
				} else {
					bits6[p.Bits()] = true
				}
				m.want |= wantIP
			case Domain:
				m.domains[v] = append(m.domains[v], r)
				m.tlds[v[strings.LastIndexByte(v, '.')+1:]] = struct{}{}
				m.want |= wantDomain
			case URL:
				m.urls[v] = append(m.urls[v], r)
				m.want |= wantURL
			case Filename:
				if strings.ContainsAny(v, "*?") {
					m.globs.add(v, r)
				} else {
					m.names[v] = append(m.names[v], r)
				}
				m.namesNeedDot = m.namesNeedDot && strings.Contains(v, ".")
				m.want |= wantName
			}
		}
		m.lists = append(m.lists, l)
	}
	for b := range bits4 {
		m.netBits4 = append(m.netBits4, b)
	}
	for b := range bits6 {
		m.netBits6 = append(m.netBits6, b)
	}
	slices.SortFunc(m.netBits4, func(a, b int) int { return b - a })
	slices.SortFunc(m.netBits6, func(a, b int) int { return b - a })
	return m
}

// Len returns how many indicators the matcher holds.
func (m *Matcher) Len() int { return m.count }

// Problems returns the indicators NewMatcher left out, and why.
func (m *Matcher) Problems() []Problem { return slices.Clone(m.problems) }

// Hit is one indicator found in an event or a manifest entry.
type Hit struct {
	ListID    int64     `json:"list_id,omitempty"`
	List      string    `json:"list"`
	Level     string    `json:"level"` // the list's detection level
	Indicator Indicator `json:"indicator"`
	// Field is where it was found: a key of Event.Fields, with ".key" and "[i]" for nested maps
	// and lists ("Hashes", "process.parent.exe", "ips[2]"), or host, user, message; for
	// MatchFile, sha256 or path.
	Field string `json:"field"`
	Value string `json:"value"` // the text that matched: sub.evil.com for evil.com, 10.1.2.3 for 10.0.0.0/8
}

// Match returns the indicators found in ev's fields, host, user and message, one hit per
// indicator (at the field whose path sorts first, when it occurs in several), in the order of
// the lists and their indicators. Only text is searched: numbers, times and bools never match,
// so an address stored as a number (3232235777) is no 192.168.1.1. ev.Path, the artifact's
// file inside the package, is not searched: MatchFile covers the package's files.
func (m *Matcher) Match(ev *quarry.Event) []Hit {
	if m.count == 0 || ev == nil {
		return nil
	}
	st := matchState{m: m}
	st.fn = st.token
	for k, v := range ev.Fields {
		st.path = append(st.path[:0], pathElem{key: k, idx: -1})
		st.value(v, 0)
	}
	for _, f := range [...]struct{ name, v string }{{"host", ev.Host}, {"user", ev.User}, {"message", ev.Message}} {
		st.path = append(st.path[:0], pathElem{key: f.name, idx: -1})
		st.value(f.v, 0)
	}
	return st.result()
}

// MatchString returns the indicators found in one text value, reported under field.
func (m *Matcher) MatchString(field, s string) []Hit {
	if m.count == 0 {
		return nil
	}
	st := matchState{m: m}
	st.fn = st.token
	st.path = append(st.path, pathElem{key: field, idx: -1})
	st.value(s, 0)
	return st.result()
}

// MatchFile returns the indicators that match a file of a package manifest: its SHA-256 (any
// hash indicator of the same value) and its base name (file name indicators). path may use /
// or \ separators.
func (m *Matcher) MatchFile(path, sha256 string) []Hit {
	if m.count == 0 {
		return nil
	}
	st := matchState{m: m}
	if sha256 != "" && m.want&wantHash != 0 {
		st.path = append(st.path[:0], pathElem{key: "sha256", idx: -1})
		st.lookupHash(strings.TrimSpace(sha256))
	}
	if m.want&wantName != 0 {
		base := path
		if k := strings.LastIndexAny(base, `/\`); k >= 0 {
			base = base[k+1:]
		}
		if base != "" {
			st.path = append(st.path[:0], pathElem{key: "path", idx: -1})
			st.lookupName(base)
		}
	}
	return st.result()
}

// pathElem is one step of a field path: a map key, or a list index when idx >= 0.
type pathElem struct {
	key string
	idx int
}

// matchState is one Match call's scratch space.
type matchState struct {
	m    *Matcher
	fn   func(token)
	path []pathElem
	hits []Hit
	refs []ref // refs[i] is hits[i]'s indicator
}

// maxFieldDepth bounds how deep nested field values are searched.
const maxFieldDepth = 16

func (st *matchState) value(v any, depth int) {
	if depth > maxFieldDepth {
		return
	}
	switch v := v.(type) {
	case string:
		scanTokens(v, st.m.want, st.fn)
	case []any:
		for i, e := range v {
			st.path = append(st.path, pathElem{idx: i})
			st.value(e, depth+1)
			st.path = st.path[:len(st.path)-1]
		}
	case []string:
		for i, e := range v {
			st.path = append(st.path, pathElem{idx: i})
			st.value(e, depth+1)
			st.path = st.path[:len(st.path)-1]
		}
	case map[string]any:
		for k, e := range v {
			st.path = append(st.path, pathElem{key: k, idx: -1})
			st.value(e, depth+1)
			st.path = st.path[:len(st.path)-1]
		}
	case map[string]string:
		for k, e := range v {
			st.path = append(st.path, pathElem{key: k, idx: -1})
			st.value(e, depth+1)
			st.path = st.path[:len(st.path)-1]
		}
	case int64, uint64, float64, int, bool, time.Time, nil:
		// Not text: nothing to find.
	}
}

func (st *matchState) token(t token) {
	switch t.kind {
	case tokHash:
		st.lookupHash(t.text)
	case tokIP:
		st.lookupAddr(t.addr, t.text)
	case tokDomain:
		st.lookupDomain(t.text)
	case tokName:
		st.lookupName(t.text)
	case tokURL:
		st.lookupURL(t.text)
	}
}

// lower writes the ASCII lowercase of s into buf when it fits; ok is false otherwise.
func lower(buf []byte, s string) ([]byte, bool) {
	if len(s) > cap(buf) {
		return nil, false
	}
	b := buf[:len(s)]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return b, true
}

func (st *matchState) lookupHash(s string) {
	var buf [128]byte
	b, ok := lower(buf[:], s)
	if !ok {
		return
	}
	if refs, ok := st.m.hashes[string(b)]; ok {
		st.hit(refs, s)
	}
}

func (st *matchState) lookupAddr(a netip.Addr, text string) {
	if refs, ok := st.m.addrs[a]; ok {
		st.hit(refs, a.String())
	}
	bits := st.m.netBits6
	if a.Is4() {
		if st.m.net16 == nil {
			return
		}
		b := a.As4()
		block := uint32(b[0])<<8 | uint32(b[1])
		if st.m.net16[block/64]&(1<<(block%64)) == 0 {
			return
		}
		bits = st.m.netBits4
	}
	for _, b := range bits {
		p, err := a.Prefix(b)
		if err != nil {
			continue
		}
		if refs, ok := st.m.nets[p]; ok {
			st.hit(refs, a.String())
		}
	}
}

func (st *matchState) lookupDomain(s string) {
	var buf [256]byte
	b, ok := lower(buf[:], s)
	if !ok {
		return
	}
	if _, ok := st.m.tlds[string(b[indexLastByte(b, '.')+1:])]; !ok {
		return
	}
	for i := 0; ; {
		rest := b[i:]
		k := indexByte(rest, '.')
		if k < 0 {
			return // a single label: no indicator is a bare top-level domain
		}
		if refs, ok := st.m.domains[string(rest)]; ok {
			st.hit(refs, string(b))
		}
		i += k + 1
	}
}

func indexLastByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func (st *matchState) lookupName(s string) {
	if st.m.namesNeedDot && strings.IndexByte(s, '.') < 0 {
		return
	}
	var buf [256]byte
	var name string
	if b, ok := lower(buf[:], s); ok && isASCII(s) {
		if refs, ok := st.m.names[string(b)]; ok {
			st.hit(refs, s)
		}
		if st.m.globs.n == 0 {
			return
		}
		name = string(b)
	} else {
		name = strings.ToLower(s)
		if refs, ok := st.m.names[name]; ok {
			st.hit(refs, s)
		}
	}
	st.m.globs.match(name, func(refs []ref) { st.hit(refs, s) })
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (st *matchState) lookupURL(s string) {
	u, ok := canonicalURL(s)
	if !ok {
		return
	}
	if refs, ok := st.m.urls[u]; ok {
		st.hit(refs, s)
	}
	if q := stripQuery(u); q != u {
		if refs, ok := st.m.urls[q]; ok {
			st.hit(refs, s)
		}
	}
}

// hit records refs found as value at the current path, keeping one hit per indicator: the one
// whose field sorts first, so the result does not depend on map order.
func (st *matchState) hit(refs []ref, value string) {
	field := st.fieldPath()
	for _, r := range refs {
		if i := slices.Index(st.refs, r); i >= 0 {
			if field < st.hits[i].Field {
				st.hits[i].Field, st.hits[i].Value = field, strings.Clone(value)
			}
			continue
		}
		l := &st.m.lists[r.list]
		st.refs = append(st.refs, r)
		st.hits = append(st.hits, Hit{ListID: l.ID, List: l.Name, Level: l.level(), Indicator: l.Indicators[r.ind],
			Field: field, Value: strings.Clone(value)})
	}
}

func (st *matchState) fieldPath() string {
	var b strings.Builder
	for i, p := range st.path {
		if p.idx >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.idx))
			b.WriteByte(']')
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p.key)
	}
	return b.String()
}

func (st *matchState) result() []Hit {
	if len(st.hits) == 0 {
		return nil
	}
	idx := make([]int, len(st.hits))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		ra, rb := st.refs[a], st.refs[b]
		return cmp.Or(cmp.Compare(ra.list, rb.list), cmp.Compare(ra.ind, rb.ind))
	})
	out := make([]Hit, len(idx))
	for i, j := range idx {
		out[i] = st.hits[j]
	}
	return out
}

// MaxRuleID bounds a detection's RuleID, in bytes; longer ids end in a digest of the whole.
const MaxRuleID = 200

// Detections turns hits into the detections of an event: Kind "ioc", RuleID
// "ioc:<list>:<type>:<value>", the list's Level, the tag "ioc.<type>", and a Title naming the
// indicator, its description and its list. A RuleID longer than MaxRuleID is cut and ends in "~" and 16 hex digits of its
// SHA-256, so distinct indicators keep distinct ids.
func Detections(hits []Hit) []quarry.Detection {
	if len(hits) == 0 {
		return nil
	}
	out := make([]quarry.Detection, 0, len(hits))
	for _, h := range hits {
		out = append(out, quarry.Detection{
			RuleID: RuleID(h.List, h.Indicator),
			Title:  title(h),
			Level:  cmp.Or(h.Level, DefaultLevel),
			Tags:   []string{"ioc." + string(h.Indicator.Type)},
			Kind:   "ioc",
		})
	}
	return out
}

// RuleID returns the detection rule id of an indicator of a list (see Detections).
func RuleID(list string, ind Indicator) string {
	id := "ioc:" + list + ":" + string(ind.Type) + ":" + ind.Value
	if len(id) <= MaxRuleID {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	suffix := "~" + hex.EncodeToString(sum[:8])
	i := MaxRuleID - len(suffix)
	for i > 0 && !utf8.RuneStart(id[i]) {
		i--
	}
	return id[:i] + suffix
}

func title(h Hit) string {
	var b strings.Builder
	b.WriteString("IOC ")
	b.WriteString(string(h.Indicator.Type))
	b.WriteByte(' ')
	b.WriteString(cut(h.Indicator.Value, 100))
	if h.Indicator.Description != "" {
		b.WriteString(": ")
		b.WriteString(cut(h.Indicator.Description, 160))
	}
	b.WriteString(" (list ")
	b.WriteString(cut(h.List, 60))
	b.WriteByte(')')
	return b.String()
}
