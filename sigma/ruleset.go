package sigma

import (
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// compiled is a rule in a RuleSet.
type compiled struct {
	idx  int
	rule *Rule
	det  quarry.Detection
}

// RuleSet evaluates many rules on events. It is immutable once built and safe for concurrent use.
type RuleSet struct {
	rules   []*compiled
	nfields int
	byLower map[string]int           // field ids by lower-case name
	sources map[string]*sourceRoutes // by Event.Source
	// all is every variant in rule order, for MatchNaive.
	all []*variant
}

// sourceRoutes are the routes of one Event.Source, by channel ("" for sources without one).
type sourceRoutes struct {
	channels map[string]*channelRoutes // exact name and lower case
}

type channelRoutes struct {
	byEID map[int64]*route
	any   *route // rules that name no EventID; also in every byEID route
}

// route is the rules an event of one channel and EventID can match, with the prefilter that rules
// most of them out: literals, per field, one of which each filtered rule needs.
type route struct {
	variants []*variant // in rule order
	// init is the candidate bit set an event starts from: words for group 0 then words for group
	// 1, with the bits of the variants that have no such group set (no literal to wait for).
	init    []uint64
	filters []fieldFilter
	kw      *fieldFilter // keywords: literals looked for in the message and every value
	words   int          // len of the candidate bit set
}

type fieldFilter struct {
	f     *fieldRef
	ac    *gramMatcher
	owner [][]int32 // literal id → bits (group*words*64 + variant) it sets
	// textOnly: every literal has a character no number or time prints, so a keyword filter (nil
	// f) need not render the event's numbers and times to scan them.
	textOnly bool
}

// markValue runs a keyword filter on one field value.
func (flt *fieldFilter) markValue(x any, cand []uint64) {
	switch v := x.(type) {
	case string:
		flt.ac.mark(v, flt.owner, cand)
	case []any:
		for _, e := range v {
			flt.markValue(e, cand)
		}
	case int64, uint64, int, float64, time.Time:
		// Digits, signs, dots, colons, T and Z: only literals made of those can occur.
		if !flt.textOnly {
			flt.ac.mark(toString(x), flt.owner, cand)
		}
	default:
		flt.ac.mark(toString(x), flt.owner, cand)
	}
}

func textOnly(lits []string) bool {
	for _, l := range lits {
		if strings.Trim(l, "0123456789-+.:tz ") == "" {
			return false
		}
	}
	return true
}

// Rules returns the rules of the set in load order: their id, title, level, tags, logsource and
// path (the detection is compiled into the set).
func (rs *RuleSet) Rules() []*Rule {
	out := make([]*Rule, len(rs.rules))
	for i, c := range rs.rules {
		out[i] = c.rule
	}
	return out
}

// Len is how many rules the set holds.
func (rs *RuleSet) Len() int { return len(rs.rules) }

// Compile builds a RuleSet from parsed rules. Rules that cannot run are left out and reported: a
// logsource that logsources.yaml does not map (ProblemUnmapped), valid Sigma this evaluator does not
// support (ProblemUnsupported) and errors in the detection (ProblemParse). Each problem's Path is
// the rule's Path.
func Compile(rules []*Rule) (*RuleSet, []Problem) {
	return compileWith(rules, defaultLogsources)
}

func compileWith(rules []*Rule, ls *logsourceMap) (*RuleSet, []Problem) {
	c := newCompiler(ls)
	rs := &RuleSet{sources: map[string]*sourceRoutes{}}
	var problems []Problem
	seen := map[string]string{}
	var variants []*variant
	for _, r := range rules {
		prob := func(kind ProblemKind, err error) {
			problems = append(problems, Problem{Path: r.Path, RuleID: r.ID, Title: r.Title, Kind: kind, Err: err})
		}
		if r.ID != "" {
			if first, dup := seen[r.ID]; dup {
				prob(ProblemParse, fmt.Errorf("rule id %s already used by %s", r.ID, first))
				continue
			}
		}
		targets, ok := ls.targets(r.Logsource)
		if !ok {
			prob(ProblemUnmapped, fmt.Errorf("logsource %s is not mapped to any events we parse", r.Logsource))
			continue
		}
		// The set keeps the rule's description, not its parsed detection: once compiled, the parse
		// tree is garbage unless the caller keeps it (a smaller heap is less for the collector to mark).
		meta := *r
		meta.searches, meta.conditions = nil, nil
		cr := &compiled{rule: &meta, det: quarry.Detection{RuleID: r.ID, Title: r.Title, Level: r.Level, Tags: r.Tags, Kind: "sigma"}}
		var vs []*variant
		var err error
		for i := range targets {
			var v *variant
			v, err = c.compileVariant(r, &targets[i])
			if err != nil {
				break
			}
			if v != nil {
				v.rule = cr
				vs = append(vs, v)
			}
		}
		if err != nil {
			kind := ProblemParse
			if Reason(err) != "" {
				kind = ProblemUnsupported
			}
			prob(kind, err)
			continue
		}
		if len(vs) == 0 {
			prob(ProblemUnsupported, unsupported("the EventIDs of the detection occur in none of the logsource's events (%s)", r.Logsource))
			continue
		}
		if r.ID != "" {
			seen[r.ID] = r.Path
		}
		cr.idx = len(rs.rules)
		rs.rules = append(rs.rules, cr)
		variants = append(variants, vs...)
	}
	rs.all = variants
	rs.nfields = len(c.fields)
	rs.byLower = make(map[string]int, len(c.fields))
	for low, f := range c.fields {
		rs.byLower[low] = f.id
	}

	// Route: each variant goes to the (source, channel, EventID) keys its target and detection allow.
	type key struct {
		source, channel string
		eid             int64
		anyEID          bool
	}
	buckets := map[key][]*variant{}
	var order []key
	add := func(k key, v *variant) {
		if _, ok := buckets[k]; !ok {
			order = append(order, k)
		}
		buckets[k] = append(buckets[k], v)
	}
	for _, v := range variants {
		chans := v.target.Channels
		if len(chans) == 0 {
			chans = []string{anyChannel}
		}
		for _, ch := range chans {
			if v.eids == nil {
				add(key{source: v.target.Source, channel: ch, anyEID: true}, v)
				continue
			}
			for _, id := range v.eids {
				add(key{source: v.target.Source, channel: ch, eid: id}, v)
			}
		}
	}
	// Each (source, channel) gets a route per EventID that some rule names, holding the rules of that
	// EventID, of any EventID, and those of every channel of the source (product windows alone).
	type sc struct{ source, channel string }
	eidsOf := map[sc][]int64{}
	var chans []sc
	for _, k := range order {
		c := sc{k.source, k.channel}
		if _, ok := eidsOf[c]; !ok {
			eidsOf[c] = []int64{}
			chans = append(chans, c)
		}
		if !k.anyEID {
			eidsOf[c] = union(eidsOf[c], []int64{k.eid})
		}
	}
	for _, c := range chans {
		star := sc{c.source, anyChannel}
		sr := rs.sources[c.source]
		if sr == nil {
			sr = &sourceRoutes{channels: map[string]*channelRoutes{}}
			rs.sources[c.source] = sr
		}
		cr := &channelRoutes{byEID: map[int64]*route{}}
		sr.channels[c.channel] = cr
		if low := strings.ToLower(c.channel); sr.channels[low] == nil {
			sr.channels[low] = cr
		}
		ids := eidsOf[c]
		if c != star {
			ids = union(ids, eidsOf[star])
		}
		anyVs := buckets[key{source: c.source, channel: c.channel, anyEID: true}]
		if c != star {
			anyVs = mergeByRule(anyVs, buckets[key{source: c.source, channel: anyChannel, anyEID: true}])
		}
		if len(anyVs) > 0 {
			cr.any = buildRoute(anyVs)
		}
		for _, id := range ids {
			vs := mergeByRule(buckets[key{source: c.source, channel: c.channel, eid: id}], anyVs)
			if c != star {
				vs = mergeByRule(vs, buckets[key{source: c.source, channel: anyChannel, eid: id}])
			}
			if len(vs) > 0 {
				cr.byEID[id] = buildRoute(vs)
			}
		}
	}
	return rs, problems
}

// anyChannel is the channel key of targets that name none: every event of the source.
const anyChannel = "*"

// mergeByRule merges two rule-ordered variant lists, one variant per rule.
func mergeByRule(a, b []*variant) []*variant {
	out := make([]*variant, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].rule.idx < b[j].rule.idx:
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].rule.idx < a[i].rule.idx:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

func buildRoute(vs []*variant) *route {
	// One variant per rule: a rule reaches a route through one target only.
	dedup := vs[:0:0]
	last := -1
	for _, v := range vs {
		if v.rule.idx == last {
			continue
		}
		last = v.rule.idx
		dedup = append(dedup, v)
	}
	r := &route{variants: dedup, words: (len(dedup) + 63) / 64}
	r.init = make([]uint64, 2*r.words)
	type fl struct {
		lits  []string
		ids   map[string]int32
		owner [][]int32
	}
	byField := map[*fieldRef]*fl{}
	var fieldOrder []*fieldRef
	for i, v := range dedup {
		for g := 0; g < maxGroups; g++ {
			bit := int32(g*r.words*64 + i)
			if g >= len(v.reqs) {
				r.init[bit>>6] |= 1 << (bit & 63)
				continue
			}
			for _, a := range v.reqs[g] {
				f := byField[a.f]
				if f == nil {
					f = &fl{ids: map[string]int32{}}
					byField[a.f] = f
					fieldOrder = append(fieldOrder, a.f)
				}
				id, ok := f.ids[a.lit]
				if !ok {
					id = int32(len(f.lits))
					f.ids[a.lit] = id
					f.lits = append(f.lits, a.lit)
					f.owner = append(f.owner, nil)
				}
				if o := f.owner[id]; len(o) == 0 || o[len(o)-1] != bit {
					f.owner[id] = append(f.owner[id], bit)
				}
			}
		}
	}
	for _, fr := range fieldOrder {
		f := byField[fr]
		ff := fieldFilter{f: fr, ac: newGramMatcher(f.lits), owner: f.owner, textOnly: textOnly(f.lits)}
		if fr == nil {
			r.kw = &ff
			continue
		}
		r.filters = append(r.filters, ff)
	}
	return r
}

// routeOf finds the route of an event: by Source, then Channel and EventID for event logs.
func (rs *RuleSet) routeOf(ev *quarry.Event) *route {
	sr := rs.sources[ev.Source]
	if sr == nil {
		return nil
	}
	ch := ""
	if ev.Source == "evtx" {
		ch, _ = ev.Fields["Channel"].(string)
	}
	cr := sr.channels[ch]
	if cr == nil {
		if cr = sr.channels[strings.ToLower(ch)]; cr == nil {
			if cr = sr.channels[anyChannel]; cr == nil {
				return nil
			}
		}
	}
	if len(cr.byEID) > 0 {
		if id, ok := eventID(ev.Fields["EventID"]); ok {
			if r := cr.byEID[id]; r != nil {
				return r
			}
		}
	}
	return cr.any
}

func eventID(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	case int:
		return int64(x), true
	case string:
		f, ok := parseNumber(x)
		return int64(f), ok
	}
	return 0, false
}

// Match returns the detections of the rules ev matches, in rule order.
func (rs *RuleSet) Match(ev *quarry.Event) []quarry.Detection {
	return rs.AppendMatches(nil, ev)
}

// AppendMatches appends the detections of the rules ev matches to dst, so a caller can reuse one
// buffer. The Tags of a detection are shared with the rule: do not modify them.
func (rs *RuleSet) AppendMatches(dst []quarry.Detection, ev *quarry.Event) []quarry.Detection {
	r := rs.routeOf(ev)
	if r == nil || len(r.variants) == 0 {
		return dst
	}
	s := statePool.Get().(*state)
	defer statePool.Put(s)
	s.reset(ev, rs)
	if cap(s.cand) < len(r.init) {
		s.cand = make([]uint64, len(r.init))
	}
	cand := s.cand[:len(r.init)]
	copy(cand, r.init)
	if r.kw != nil {
		s.indexScan(r.kw, cand)
	}
	for fi := range r.filters {
		flt := &r.filters[fi]
		sl := s.slot(flt.f)
		if !sl.found() {
			continue
		}
		if sl.list == nil {
			flt.ac.mark(sl.one.str(), flt.owner, cand)
			continue
		}
		for _, x := range sl.list {
			flt.ac.mark(toString(x), flt.owner, cand)
		}
	}
	for w, bitsW := range cand[:r.words] {
		bitsW &= cand[r.words+w] // one literal of each group occurs
		for bitsW != 0 {
			b := bits.TrailingZeros64(bitsW)
			bitsW &^= 1 << b
			v := r.variants[w<<6+b]
			if v.root.eval(s) {
				dst = append(dst, v.rule.det)
			}
		}
	}
	s.ev = nil
	return dst
}

// MatchNaive evaluates every rule on ev without routing or prefilter: the reference the tests and
// the benchmark compare Match with.
func (rs *RuleSet) MatchNaive(ev *quarry.Event) []quarry.Detection {
	s := statePool.Get().(*state)
	defer statePool.Put(s)
	s.reset(ev, rs)
	var dst []quarry.Detection
	last := -1
	for _, v := range rs.all {
		if v.rule.idx == last {
			continue // the rule matched through an earlier target
		}
		if !v.fits(ev) {
			continue
		}
		if v.root.eval(s) {
			dst = append(dst, v.rule.det)
			last = v.rule.idx
		}
	}
	s.ev = nil
	return dst
}

// fits reports whether ev comes from the variant's target, checked the slow way.
func (v *variant) fits(ev *quarry.Event) bool {
	if ev.Source != v.target.Source {
		return false
	}
	if len(v.target.Channels) > 0 {
		ch, _ := ev.Fields["Channel"].(string)
		ok := false
		for _, c := range v.target.Channels {
			if strings.EqualFold(c, ch) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if ids := v.target.EventIDs; len(ids) > 0 {
		id, ok := eventID(ev.Fields["EventID"])
		if !ok {
			return false
		}
		found := false
		for _, e := range ids {
			found = found || e == id
		}
		return found
	}
	return true
}
