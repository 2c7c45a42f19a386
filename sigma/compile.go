package sigma

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// compiler turns rules into nodes, interning the event fields they read.
type compiler struct {
	fields map[string]*fieldRef
	ls     *logsourceMap
}

func newCompiler(ls *logsourceMap) *compiler {
	return &compiler{fields: map[string]*fieldRef{}, ls: ls}
}

// field interns a field name; names differing only in case are one field.
func (c *compiler) field(name string) *fieldRef {
	low := strings.ToLower(name)
	if f, ok := c.fields[low]; ok {
		return f
	}
	f := &fieldRef{name: name, id: len(c.fields)}
	c.fields[low] = f
	return f
}

// variant is a rule compiled for one target of its logsource.
type variant struct {
	rule   *compiled
	target *target
	root   node
	eids   []int64 // the EventIDs it can match; nil: any
	// reqs are up to two groups of literals: for the rule to match, one literal of each group must
	// occur (nil: no such literal known).
	reqs [][]atom
}

// atom is a literal (lower case) that must occur in a field's value.
type atom struct {
	f   *fieldRef
	lit string
}

// cnode is a compiled node with what the router and prefilter know about it.
type cnode struct {
	n    node
	eids []int64  // nil: any
	reqs [][]atom // groups of literals, one of each must occur, best first; nil: none known
}

// minAtom is the shortest literal worth a prefilter entry. Even one byte (a backtick, a caret)
// helps a rule that has nothing longer: the alternative is evaluating it on every event.
const minAtom = 1

func (c *compiler) compileVariant(r *Rule, t *target) (*variant, error) {
	searches := map[string]*search{}
	for i := range r.searches {
		searches[r.searches[i].Name] = &r.searches[i]
	}
	cache := map[string]cnode{}
	compileSearch := func(name string) (cnode, error) {
		if cn, ok := cache[name]; ok {
			return cn, nil
		}
		s, ok := searches[name]
		if !ok {
			return cnode{}, fmt.Errorf("condition names %q, which the detection does not define", name)
		}
		cn, err := c.compileSearch(s, t)
		if err != nil {
			return cnode{}, fmt.Errorf("search %q: %w", name, err)
		}
		cache[name] = cn
		return cn, nil
	}
	var conds []cnode
	for _, text := range r.conditions {
		cond, err := parseCondition(text)
		if err != nil {
			return nil, err
		}
		cn, err := c.condition(cond, r.searches, compileSearch)
		if err != nil {
			return nil, err
		}
		conds = append(conds, cn)
	}
	root := orOf(conds)
	// The target's own conditions (program=sshd, type=EXECVE) come first: they are cheap.
	if len(t.Where) > 0 {
		parts := []cnode{}
		keys := make([]string, 0, len(t.Where))
		for k := range t.Where {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fn := &fieldNode{f: c.field(k)}
			for _, v := range t.Where[k] {
				fn.preds = append(fn.preds, &strPred{m: newStrMatcher(literalTokens(v), mEqual, false)})
			}
			parts = append(parts, cnode{n: fn})
		}
		root = andOf(append(parts, root))
	}
	v := &variant{target: t, root: root.n, eids: root.eids, reqs: root.reqs}
	if len(t.EventIDs) > 0 {
		if v.eids == nil {
			v.eids = slices.Clone(t.EventIDs)
		} else {
			v.eids = intersect(v.eids, t.EventIDs)
			if len(v.eids) == 0 {
				return nil, nil
			}
		}
	}
	return v, nil
}

func (c *compiler) condition(cond *cond, all []search, search func(string) (cnode, error)) (cnode, error) {
	switch cond.op {
	case condRef:
		return search(cond.Name)
	case condNot:
		k, err := c.condition(cond.kids[0], all, search)
		if err != nil {
			return cnode{}, err
		}
		return cnode{n: notNode{k.n}}, nil
	case condAnd, condOr:
		var kids []cnode
		for _, k := range cond.kids {
			cn, err := c.condition(k, all, search)
			if err != nil {
				return cnode{}, err
			}
			kids = append(kids, cn)
		}
		if cond.op == condAnd {
			return andOf(kids), nil
		}
		return orOf(kids), nil
	}
	names, err := quantified(cond.Name, all)
	if err != nil {
		return cnode{}, err
	}
	var kids []cnode
	for _, n := range names {
		cn, err := search(n)
		if err != nil {
			return cnode{}, err
		}
		kids = append(kids, cn)
	}
	switch {
	case cond.op == condAllOf:
		return andOf(kids), nil
	case cond.N <= 1:
		return orOf(kids), nil
	case cond.N > len(kids):
		return cnode{n: constNode(false), eids: []int64{}}, nil
	}
	nodes := make([]node, len(kids))
	for i, k := range kids {
		nodes[i] = k.n
	}
	return cnode{n: &atLeast{n: cond.N, kids: nodes}}, nil
}

// andOf: every kid must match, so the EventIDs are the intersection and any kid's literals will do
// (the most selective).
func andOf(kids []cnode) cnode {
	if len(kids) == 1 {
		return kids[0]
	}
	out := cnode{}
	nodes := make(andNode, 0, len(kids))
	for _, k := range kids {
		nodes = append(nodes, k.n)
		if k.eids != nil {
			if out.eids == nil {
				out.eids = slices.Clone(k.eids)
			} else {
				out.eids = intersect(out.eids, k.eids)
			}
		}
		out.reqs = append(out.reqs, k.reqs...)
	}
	out.reqs = bestGroups(out.reqs)
	out.n = nodes
	return out
}

// maxGroups is how many literal groups a rule keeps for the prefilter: two already rule out most
// rules that name a process and a command line.
const maxGroups = 2

// bestGroups keeps the most selective groups, best first.
func bestGroups(gs [][]atom) [][]atom {
	if len(gs) == 0 {
		return nil
	}
	gs = slices.Clone(gs)
	slices.SortStableFunc(gs, func(a, b []atom) int {
		switch {
		case betterReq(a, b):
			return -1
		case betterReq(b, a):
			return 1
		}
		return 0
	})
	return gs[:min(len(gs), maxGroups)]
}

// orOf: one kid must match, so the EventIDs and literals are the unions, unknown if any kid's is.
func orOf(kids []cnode) cnode {
	if len(kids) == 1 {
		return kids[0]
	}
	out := cnode{eids: []int64{}}
	groups := -1 // how many groups every kid has
	nodes := make(orNode, 0, len(kids))
	for _, k := range kids {
		nodes = append(nodes, k.n)
		if out.eids != nil {
			if k.eids == nil {
				out.eids = nil
			} else {
				out.eids = union(out.eids, k.eids)
			}
		}
		if groups < 0 || len(k.reqs) < groups {
			groups = len(k.reqs)
		}
	}
	// One of the kids matches, so its i-th group occurs: the union of the kids' i-th groups is
	// needed (kids' groups are best first, so the best are joined with the best).
	for i := 0; i < groups; i++ {
		var g []atom
		for _, k := range kids {
			g = append(g, k.reqs[i]...)
		}
		out.reqs = append(out.reqs, g)
	}
	out.n = nodes
	return out
}

// betterReq prefers literals that are longer (rarer) at their shortest, then fewer of them.
func betterReq(a, b []atom) bool {
	la, lb := minLen(a), minLen(b)
	if la != lb {
		return la > lb
	}
	return len(a) < len(b)
}

func minLen(req []atom) int {
	m := 1 << 30
	for _, a := range req {
		m = min(m, len(a.lit))
	}
	return min(m, 16) // past 16 bytes a literal is rare enough; prefer fewer
}

func intersect(a, b []int64) []int64 {
	out := []int64{}
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func union(a, b []int64) []int64 {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func (c *compiler) compileSearch(s *search, t *target) (cnode, error) {
	var alts []cnode
	for _, a := range s.alts {
		var conds []cnode
		for _, fc := range a.conds {
			cn, err := c.compileFieldCond(fc, t)
			if err != nil {
				return cnode{}, err
			}
			conds = append(conds, cn)
		}
		if len(conds) == 0 {
			// An empty map matches every event, as in the reference implementation.
			alts = append(alts, cnode{n: constNode(true)})
			continue
		}
		alts = append(alts, andOf(conds))
	}
	return orOf(alts), nil
}

func (c *compiler) compileFieldCond(fc fieldCond, t *target) (cnode, error) {
	m, err := parseMods(fc.mods)
	if err != nil {
		return cnode{}, fmt.Errorf("field %q: %w", fc.Field, err)
	}
	if m.exists {
		if fc.Field == "" {
			return cnode{}, fmt.Errorf("exists needs a field")
		}
		if len(fc.values) != 1 || fc.values[0].Kind != kindBool {
			return cnode{}, fmt.Errorf("field %q: exists needs true or false", fc.Field)
		}
		e := int8(-1)
		if fc.values[0].S == "true" {
			e = 1
		}
		return cnode{n: &fieldNode{f: c.field(c.ls.fieldName(t, fc.Field)), exists: e}}, nil
	}
	if fc.Field == "" && m.kind == mEqual && !m.re && !m.cidr && m.cmp == "" && !m.fieldref {
		// A keyword is looked for anywhere in the text, as full-text search backends do.
		m.kind = mContains
	}
	var preds []pred
	nullOK := false
	for _, v := range fc.values {
		p, err := c.compileValue(m, v)
		if err != nil {
			return cnode{}, fmt.Errorf("field %q: %w", fc.Field, err)
		}
		if p == nil {
			nullOK = true
			if len(fc.values) > 1 {
				preds = append(preds, emptyPred{})
			}
			continue
		}
		preds = append(preds, p)
	}
	if fc.Field == "" {
		if nullOK {
			return cnode{}, fmt.Errorf("a keyword cannot be null")
		}
		// Keyword literals are looked for in the message and every field (a nil field).
		return cnode{n: &keywordNode{preds: preds, all: m.all}, reqs: requirement(nil, preds, m.all, false)}, nil
	}
	f := c.field(c.ls.fieldName(t, fc.Field))
	fn := &fieldNode{f: f, preds: preds, all: m.all, nullOK: nullOK}
	cn := cnode{n: fn}
	if strings.EqualFold(f.name, "EventID") && !m.all && !nullOK && len(preds) > 0 {
		ids := []int64{}
		for _, p := range preds {
			id, ok := eventIDOf(p)
			if !ok {
				ids = nil
				break
			}
			ids = union(ids, []int64{id})
		}
		cn.eids = ids
	}
	cn.reqs = requirement(f, preds, m.all, nullOK)
	return cn, nil
}

// requirement is the groups of literals (one of each) the field must contain for the condition to
// hold, or nil when there are none worth checking: one group for a list of values, up to two for
// the all modifier (every value is needed).
func requirement(f *fieldRef, preds []pred, all, nullOK bool) [][]atom {
	if nullOK || len(preds) == 0 {
		return nil
	}
	var any []atom
	var groups [][]atom
	for _, p := range preds {
		lits := predLiterals(p)
		if lits == nil {
			if all {
				continue
			}
			return nil
		}
		var as []atom
		for _, l := range lits {
			as = append(as, atom{f: f, lit: l})
		}
		if all {
			groups = append(groups, as)
			continue
		}
		any = append(any, as...)
	}
	if all {
		return bestGroups(groups)
	}
	return [][]atom{any}
}

// predLiterals are the lower-case literals one of which a value matching p contains; nil when p
// has none long enough.
func predLiterals(p pred) []string {
	switch x := p.(type) {
	case *strPred:
		l := x.m.requiredLiteral()
		if len(l) < minAtom {
			return nil
		}
		return []string{l}
	case *rePred:
		return x.lits
	case anyPred:
		var out []string
		for _, q := range x {
			l := predLiterals(q)
			if l == nil {
				return nil
			}
			out = append(out, l...)
		}
		return out
	}
	return nil
}

// eventIDOf is the EventID an equality pred stands for: 4688 or '4688'.
func eventIDOf(p pred) (int64, bool) {
	switch x := p.(type) {
	case *numEqPred:
		if x.n == float64(int64(x.n)) {
			return int64(x.n), true
		}
	case *strPred:
		if x.m.kind == mEqual {
			n, err := strconv.ParseInt(x.m.lit, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
