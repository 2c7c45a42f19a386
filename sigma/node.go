package sigma

import (
	"strconv"
	"strings"
	"sync"

	"github.com/quarry-dfir/quarry"
)

// fieldRef is an event field a compiled rule reads: its name in the event (after the logsource's
// renaming; compared ignoring case) and its slot in the per-event cache.
type fieldRef struct {
	name string
	id   int
}

// state is one Match call's view of one event: field values looked up once, the prefilter's
// candidates. States are pooled, so a RuleSet is safe for concurrent use.
type state struct {
	ev      *quarry.Event
	gen     uint32
	slots   []slot
	cand    []uint64
	byLower map[string]int // the RuleSet's fields by lower-case name
	indexed bool
	lowBuf  [64]byte
}

type slot struct {
	gen    uint32
	key    string // the event's name of the field
	one    val    // the value, when a scalar
	list   []any  // the values, when a list or a repeated name
	rep    bool   // the event also has key_1…: the field is all of them
	repGen uint32 // list holds the repeated values of this generation
}

func (s *state) reset(ev *quarry.Event, rs *RuleSet) {
	s.ev = ev
	s.gen++
	if s.gen == 0 {
		// Wrapped: forget every slot rather than trust a stale generation.
		clear(s.slots)
		s.gen = 1
	}
	if len(s.slots) < rs.nfields {
		s.slots = make([]slot, rs.nfields)
	}
	s.byLower = rs.byLower
	s.indexed = false
}

// lower is the lower case of an event's field name, in s's buffer when it is short and ASCII (the
// map lookup on string(b) does not allocate).
func (s *state) lookupLower(k string) (int, bool) {
	if len(k) > len(s.lowBuf) {
		id, ok := s.byLower[strings.ToLower(k)]
		return id, ok
	}
	b := s.lowBuf[:len(k)]
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 0x80 {
			id, ok := s.byLower[strings.ToLower(k)]
			return id, ok
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	id, ok := s.byLower[string(b)]
	return id, ok
}

// index reads the event's field names once, finding the slot of every field a rule reads:
// field names compare ignoring case, as Sigma's EVTX backends do.
func (s *state) index() { s.indexScan(nil, nil) }

// indexScan is index that also runs a keyword filter on the message and every value, in the
// same walk over the fields.
func (s *state) indexScan(kw *fieldFilter, cand []uint64) {
	s.indexed = true
	if kw != nil {
		kw.ac.mark(s.ev.Message, kw.owner, cand)
	}
	for k, v := range s.ev.Fields {
		if kw != nil {
			kw.markValue(v, cand)
		}
		id, ok := s.lookupLower(k)
		if !ok {
			// Repeated data names (Data, Data_1, Data_2…): mark the base field.
			i := strings.LastIndexByte(k, '_')
			if i <= 0 || i == len(k)-1 || strings.Trim(k[i+1:], "0123456789") != "" {
				continue
			}
			if id, ok = s.lookupLower(k[:i]); ok && s.slots[id].gen == s.gen {
				s.slots[id].rep = true
			} else if ok {
				// The base name comes later in the iteration; remember on the slot.
				sl := &s.slots[id]
				sl.gen, sl.key, sl.one, sl.list, sl.rep = s.gen, "", val{}, nil, true
			}
			continue
		}
		sl := &s.slots[id]
		if sl.gen == s.gen && sl.key != "" {
			continue // a second spelling of the name: keep the first
		}
		rep := sl.gen == s.gen && sl.rep
		sl.gen, sl.key, sl.one, sl.list, sl.rep = s.gen, k, val{}, nil, rep
		if l, isList := v.([]any); isList {
			sl.list = l
		} else {
			sl.one.raw = v
		}
	}
}

// slot is the field's slot for this event; its key is "" when the event does not have it.
func (s *state) slot(f *fieldRef) *slot {
	if !s.indexed {
		s.index()
	}
	sl := &s.slots[f.id]
	if sl.gen != s.gen {
		sl.gen, sl.key, sl.one, sl.list, sl.rep = s.gen, "", val{}, nil, false
		return sl
	}
	if sl.rep && sl.key != "" && sl.repGen != s.gen {
		sl.repGen = s.gen
		var all []any
		if sl.list != nil {
			all = append(all, sl.list...)
		} else {
			all = append(all, sl.one.raw)
		}
		for n := 1; n <= 1024; n++ {
			v, ok := s.ev.Fields[sl.key+"_"+strconv.Itoa(n)]
			if !ok {
				break
			}
			all = append(all, v)
		}
		sl.list = all
	}
	return sl
}

func (sl *slot) found() bool { return sl.key != "" }

// each calls fn with every value of the field until fn returns false; it reports whether the
// field exists.
func (s *state) each(f *fieldRef, fn func(v *val) bool) bool {
	sl := s.slot(f)
	if !sl.found() {
		return false
	}
	if sl.list == nil {
		fn(&sl.one)
		return true
	}
	for _, x := range sl.list {
		v := val{raw: x}
		if !fn(&v) {
			break
		}
	}
	return true
}

var statePool = sync.Pool{New: func() any { return new(state) }}

// node is a compiled piece of a detection.
type node interface {
	eval(s *state) bool
}

type andNode []node

func (n andNode) eval(s *state) bool {
	for _, k := range n {
		if !k.eval(s) {
			return false
		}
	}
	return true
}

type orNode []node

func (n orNode) eval(s *state) bool {
	for _, k := range n {
		if k.eval(s) {
			return true
		}
	}
	return false
}

type notNode struct{ n node }

func (n notNode) eval(s *state) bool { return !n.n.eval(s) }

// atLeast is "N of X" for N > 1.
type atLeast struct {
	n    int
	kids []node
}

func (n *atLeast) eval(s *state) bool {
	c := 0
	for _, k := range n.kids {
		if k.eval(s) {
			c++
			if c >= n.n {
				return true
			}
		}
	}
	return false
}

type constNode bool

func (n constNode) eval(*state) bool { return bool(n) }

// fieldNode is one key of a detection map.
type fieldNode struct {
	f      *fieldRef
	preds  []pred
	all    bool
	nullOK bool // a null among the values: a missing or empty field matches
	exists int8 // 1: exists true, -1: exists false, 0: no exists modifier
}

func (n *fieldNode) eval(s *state) bool {
	sl := s.slot(n.f)
	if n.exists != 0 {
		return sl.found() == (n.exists > 0)
	}
	if !sl.found() {
		return n.nullOK
	}
	if n.all {
		for _, p := range n.preds {
			if !n.anyValue(s, sl, p) {
				return false
			}
		}
		return len(n.preds) > 0 || n.nullOK && n.isEmpty(s)
	}
	for _, p := range n.preds {
		if n.anyValue(s, sl, p) {
			return true
		}
	}
	return n.nullOK && n.isEmpty(s)
}

func (n *fieldNode) isEmpty(s *state) bool {
	empty := true
	s.each(n.f, func(v *val) bool {
		empty = v.str() == ""
		return empty
	})
	return empty
}

func (n *fieldNode) anyValue(s *state, sl *slot, p pred) bool {
	if sl.list == nil {
		return p.match(s, &sl.one)
	}
	for _, x := range sl.list {
		v := val{raw: x}
		if p.match(s, &v) {
			return true
		}
	}
	return false
}

// keywordNode is a value without a field: it matches the event's message or any field value.
type keywordNode struct {
	preds []pred
	all   bool
}

func (n *keywordNode) eval(s *state) bool {
	if n.all {
		for _, p := range n.preds {
			if !keywordAny(s, p) {
				return false
			}
		}
		return len(n.preds) > 0
	}
	for _, p := range n.preds {
		if keywordAny(s, p) {
			return true
		}
	}
	return false
}

func keywordAny(s *state, p pred) bool {
	found := false
	eachValue(s, func(v *val) bool {
		found = p.match(s, v)
		return !found
	})
	return found
}

// eachValue calls fn with the event's message and every field value until fn returns false.
func eachValue(s *state, fn func(v *val) bool) {
	m := val{raw: s.ev.Message}
	if !fn(&m) {
		return
	}
	for _, x := range s.ev.Fields {
		if l, ok := x.([]any); ok {
			for _, e := range l {
				v := val{raw: e}
				if !fn(&v) {
					return
				}
			}
			continue
		}
		v := val{raw: x}
		if !fn(&v) {
			return
		}
	}
}
