package evtx

// JSON rendering in the layout of evtx_dump (the Rust evtx crate), the
// layout of the Sigma regression data:
//
//   - an element becomes a key of its parent's object; repeated names get
//     suffixes _1, _2, … after the first;
//   - an element without element children and without non-empty attributes
//     is its content: null when empty, a number or boolean when the content
//     is a single integer or boolean value, otherwise a string (all pieces of
//     text concatenated);
//   - otherwise it is an object with "#attributes" (non-empty attributes
//     only), "#text" (its text, if any) and its child elements;
//   - under EventData and UserData, <Data Name="X">v</Data> becomes "X": v
//     (empty content gives ""), and when no Data has a name the Data
//     elements become "Data": {"#text": v} or {"#text": [v1, v2, …]}.
//
// Nested binary XML substitutions are expanded in place as child elements,
// and an element holding an array substitution is repeated per item (see
// expandArrays).
//
// Values: strings lose trailing white space (evtx_dump trims them); FILETIME
// and SYSTEMTIME are RFC 3339 UTC with microseconds, truncated
// ("2026-04-17T05:24:53.092051Z"); hex integers and size_t are "0x" and
// lower-case hex; GUIDs upper case without braces; SIDs "S-1-5-18"; binary
// upper-case hex; floats their shortest decimal form, as strings; arrays
// that are not repeated are their items joined by commas.

// ref is an element or content node with the substitution values it is to
// be read with (nested binary XML brings its own).
type ref struct {
	n  *node
	sc *scope
}

// subst returns the value a substitution node stands for.
func subst(n *node, sc *scope) (value, bool) {
	return sc.get(n.id)
}

// childElems appends to buf the element children of e, expanding
// substitutions that hold nested binary XML.
func childElems(buf []ref, e *element, sc *scope) []ref {
	if !e.hasElem && !e.hasSubst {
		return buf
	}
	for i := range e.children {
		n := &e.children[i]
		switch n.kind {
		case nodeElement:
			buf = expandArrays(buf, n, sc)
		case nodeSubst:
			if sl := sc.slot(n.id); sl == nil || sl.nested == 0 {
				continue
			}
			if v, ok := subst(n, sc); ok && v.typ == typeBinXML && v.frag != nil {
				for j := range v.frag.root {
					if v.frag.root[j].kind == nodeElement {
						buf = append(buf, ref{&v.frag.root[j], &v.frag.sc})
					}
				}
			}
		}
	}
	return buf
}

// expandArrays appends the element n, repeated once per item when its content
// or an attribute holds an array substitution of more than one item: the way
// Windows (MS-EVEN6 "Array types"), libevtx and evtx_dump render arrays, so
// that <Data>%1</Data> with a string array gives one <Data> per string.
//
// Hostile input could make this blow up (evtx_dump repeats whole subtrees
// and takes the cross product of several arrays), so only elements without
// element children are repeated, only for their first array (further arrays
// stay comma-joined text), and only while the copies stay within a budget;
// beyond it the array is rendered as comma-joined text.
func expandArrays(buf []ref, n *node, sc *scope) []ref {
	e := n.elem
	if (!e.hasSubst && !e.attrSubst) || e.hasElem {
		return append(buf, ref{n, sc})
	}
	id := firstArray(e.children, sc)
	if id < 0 {
		for i := range e.attrs {
			if id = firstArray(e.attrs[i].value, sc); id >= 0 {
				break
			}
		}
	}
	if id < 0 {
		return append(buf, ref{n, sc})
	}
	v, _ := sc.get(uint16(id))
	t := v.typ &^ typeArray
	count := 0
	forEachElem(t, v.raw, func([]byte) { count++ })
	weight := nodesWeight(e.children, sc, id)
	for i := range e.attrs {
		weight += 16 + nodesWeight(e.attrs[i].value, sc, id)
	}
	if count*weight > maxWeight/4 {
		return append(buf, ref{n, sc})
	}
	forEachElem(t, v.raw, func(item []byte) {
		c := &element{name: e.name, jkey: e.jkey, hasSubst: e.hasSubst, attrSubst: e.attrSubst, uniqueKids: true}
		c.children = replaceSubst(e.children, id, t, item)
		c.attrs = make([]attribute, len(e.attrs))
		for i, a := range e.attrs {
			c.attrs[i] = attribute{name: a.name, jkey: a.jkey, value: replaceSubst(a.value, id, t, item)}
		}
		buf = append(buf, ref{&node{kind: nodeElement, elem: c}, sc})
	})
	return buf
}

// nodesWeight estimates the rendered size of nodes, leaving out the
// substitution skip.
func nodesWeight(nodes []node, sc *scope, skip int) int {
	w := 16
	for i := range nodes {
		n := &nodes[i]
		w += 16 + len(n.text) + len(n.raw)
		if n.kind == nodeSubst && int(n.id) != skip {
			if sl := sc.slot(n.id); sl != nil {
				w += int(sl.size)
			}
		}
	}
	return w
}

// replaceSubst copies nodes with substitution id replaced by a typed value.
func replaceSubst(nodes []node, id int, t uint8, item []byte) []node {
	out := make([]node, len(nodes))
	copy(out, nodes)
	for i := range out {
		if out[i].kind == nodeSubst && int(out[i].id) == id {
			out[i] = node{kind: nodeValue, vtype: t, raw: item}
		}
	}
	return out
}

// firstArray returns the index of the first substitution in nodes whose
// value is an array of more than one item, or -1.
func firstArray(nodes []node, sc *scope) int {
	for i := range nodes {
		n := &nodes[i]
		if n.kind != nodeSubst {
			continue
		}
		if sl := sc.slot(n.id); sl == nil || sl.typ&typeArray == 0 {
			continue
		}
		v, _ := subst(n, sc)
		count := 0
		forEachElem(v.typ&^typeArray, v.raw, func([]byte) { count++ })
		if count > 1 {
			return int(n.id)
		}
	}
	return -1
}

// hasText reports whether nodes hold non-empty text (element children and
// nested binary XML aside).
func hasText(nodes []node, sc *scope) bool {
	for i := range nodes {
		n := &nodes[i]
		switch n.kind {
		case nodeText, nodeCDATA:
			if n.text != "" {
				return true
			}
		case nodeValue:
			v := value{typ: n.vtype, raw: n.raw}
			if !v.isEmpty() {
				return true
			}
		case nodeCharRef, nodeEntityRef:
			return true
		case nodeSubst:
			if !sc.emptyText(n.id) {
				return true
			}
		}
	}
	return false
}

func hasElemChild(e *element, sc *scope) bool {
	if e.hasElem {
		return true
	}
	if !e.hasSubst {
		return false
	}
	for i := range e.children {
		n := &e.children[i]
		if n.kind == nodeSubst {
			if sl := sc.slot(n.id); sl == nil || sl.nested == 0 {
				continue
			}
			if v, ok := subst(n, sc); ok && v.typ == typeBinXML && v.frag != nil && len(v.frag.root) > 0 {
				return true
			}
		}
	}
	return false
}

// singleNumber returns the only non-empty piece of nodes when it is an
// integer or boolean value.
func singleNumber(nodes []node, sc *scope) (value, bool) {
	var single value
	found := false
	for i := range nodes {
		n := &nodes[i]
		switch n.kind {
		case nodeElement, nodePI:
		case nodeText, nodeCDATA:
			if n.text != "" {
				return value{}, false
			}
		case nodeValue:
			v := value{typ: n.vtype, raw: n.raw}
			if v.isEmpty() {
				continue
			}
			if found {
				return value{}, false
			}
			single, found = v, true
		case nodeSubst:
			if sc.emptyText(n.id) {
				continue
			}
			// A single value that is no integer or boolean is no number
			// either: stop before decoding it.
			if found || !isNumberType(sc.slot(n.id).typ) {
				return value{}, false
			}
			single, found = sc.val(sc.slot(n.id)), true
		default:
			return value{}, false
		}
	}
	return single, found && single.isNumber()
}

// appendNodesText appends the text of nodes, escaped for esc.
func appendNodesText(dst []byte, nodes []node, sc *scope, esc escaper) []byte {
	for i := range nodes {
		n := &nodes[i]
		switch n.kind {
		case nodeText, nodeCDATA:
			if esc == escJSON {
				dst = append(dst, n.jtext...)
			} else {
				dst = appendString(dst, n.text, esc)
			}
		case nodeValue:
			v := value{typ: n.vtype, raw: n.raw}
			dst = v.appendText(dst, esc)
		case nodeSubst:
			if sl := sc.slot(n.id); sl != nil && sl.typ != typeBinXML {
				v := sc.val(sl)
				dst = v.appendText(dst, esc)
			}
		case nodeCharRef:
			dst = append(dst, "&#"...)
			dst = appendDec(dst, int(n.id), 1)
			dst = append(dst, ';')
		case nodeEntityRef:
			dst = append(dst, '&')
			dst = appendString(dst, n.text, esc)
			dst = append(dst, ';')
		}
	}
	return dst
}

type jsonRenderer struct {
	buf    []byte
	refs   []ref
	counts []nameCount
}

func (w *jsonRenderer) contentValue(nodes []node, sc *scope) {
	if v, ok := singleNumber(nodes, sc); ok {
		w.buf = v.appendNumber(w.buf)
		return
	}
	w.buf = append(w.buf, '"')
	w.buf = appendNodesText(w.buf, nodes, sc, escJSON)
	w.buf = append(w.buf, '"')
}

func attrsHaveText(attrs []attribute, sc *scope) bool {
	for i := range attrs {
		if hasText(attrs[i].value, sc) {
			return true
		}
	}
	return false
}

// quickValue renders the content of an element that is one substitution, or
// reports false when that value needs the general path (nested binary XML).
// ifEmpty is what an empty value renders as.
func (w *jsonRenderer) quickValue(n *node, sc *scope, ifEmpty string) bool {
	sl := sc.slot(n.id)
	if sl == nil {
		w.buf = append(w.buf, ifEmpty...)
		return true
	}
	if sl.typ == typeBinXML && sl.nested > 0 {
		return false
	}
	v := sc.val(sl)
	switch {
	case v.isEmpty() || v.typ == typeBinXML:
		w.buf = append(w.buf, ifEmpty...)
	case v.isNumber():
		w.buf = v.appendNumber(w.buf)
	default:
		w.buf = append(w.buf, '"')
		w.buf = v.appendText(w.buf, escJSON)
		w.buf = append(w.buf, '"')
	}
	return true
}

func (w *jsonRenderer) elementValue(e *element, sc *scope) {
	if e.oneSubst && len(e.attrs) == 0 && w.quickValue(&e.children[0], sc, "null") {
		return
	}
	elems := hasElemChild(e, sc)
	attrs := attrsHaveText(e.attrs, sc)
	switch {
	case !elems && !attrs && !hasText(e.children, sc):
		w.buf = append(w.buf, "null"...)
	case !elems && !attrs:
		w.contentValue(e.children, sc)
	default:
		w.body(e, sc)
	}
}

func (w *jsonRenderer) dataValue(e *element, sc *scope) {
	if e.oneSubst && w.quickValue(&e.children[0], sc, `""`) {
		return
	}
	elems := hasElemChild(e, sc)
	switch {
	case elems:
		w.body(e, sc)
	case !hasText(e.children, sc):
		w.buf = append(w.buf, '"', '"')
	default:
		w.contentValue(e.children, sc)
	}
}

func nameAttr(e *element) *attribute {
	for i := range e.attrs {
		if e.attrs[i].name == "Name" {
			return &e.attrs[i]
		}
	}
	return nil
}

type nameCount struct {
	name string
	n    int
}

func (w *jsonRenderer) body(e *element, sc *scope) {
	container := e.name == "EventData" || e.name == "UserData"
	w.buf = append(w.buf, '{')
	wrote := false
	for i := range e.attrs {
		a := &e.attrs[i]
		if !hasText(a.value, sc) {
			continue
		}
		if !wrote {
			w.buf = append(w.buf, `"#attributes":{`...)
		} else {
			w.buf = append(w.buf, ',')
		}
		wrote = true
		w.buf = append(w.buf, a.jkey...)
		if len(a.value) != 1 || a.value[0].kind != nodeSubst || !w.quickValue(&a.value[0], sc, "null") {
			w.contentValue(a.value, sc)
		}
	}
	if wrote {
		w.buf = append(w.buf, '}')
	}
	if hasText(e.children, sc) {
		if wrote {
			w.buf = append(w.buf, ',')
		}
		wrote = true
		w.buf = append(w.buf, `"#text":`...)
		w.contentValue(e.children, sc)
	}

	start := len(w.refs)
	w.refs = childElems(w.refs, e, sc)
	kids := w.refs[start:]

	flatten := false
	positional := 0
	if container {
		for _, k := range kids {
			if k.n.elem.name != "Data" {
				continue
			}
			positional++
			if a := nameAttr(k.n.elem); a != nil && hasText(a.value, k.sc) {
				flatten = true
			}
		}
		if flatten {
			positional = 0
		}
	}
	// Names seen among the children, for the _N suffixes of repeated names
	// (evtx_dump tracks at most 64 distinct names).
	cstart := len(w.counts)
	count := !e.uniqueKids || len(kids) != e.staticKids
	positionalDone := false
	for _, k := range kids {
		c := k.n.elem
		if container && c.name == "Data" {
			if flatten {
				a := nameAttr(c)
				if a == nil || !hasText(a.value, k.sc) {
					continue
				}
				if wrote {
					w.buf = append(w.buf, ',')
				}
				wrote = true
				w.buf = append(w.buf, '"')
				w.buf = appendNodesText(w.buf, a.value, k.sc, escJSON)
				w.buf = append(w.buf, '"', ':')
				w.dataValue(c, k.sc)
			} else if !positionalDone {
				positionalDone = true
				if wrote {
					w.buf = append(w.buf, ',')
				}
				wrote = true
				w.buf = append(w.buf, `"Data":{"#text":`...)
				if positional == 1 {
					w.dataValue(c, k.sc)
				} else {
					w.buf = append(w.buf, '[')
					first := true
					for _, k2 := range kids {
						if k2.n.elem.name != "Data" {
							continue
						}
						if !first {
							w.buf = append(w.buf, ',')
						}
						first = false
						w.dataValue(k2.n.elem, k2.sc)
					}
					w.buf = append(w.buf, ']')
				}
				w.buf = append(w.buf, '}')
			}
			continue
		}
		suffix := 0
		if count {
			found := false
			counts := w.counts[cstart:]
			for i := range counts {
				if counts[i].name == c.name {
					suffix = counts[i].n
					counts[i].n++
					found = true
					break
				}
			}
			if !found && len(counts) < 64 {
				w.counts = append(w.counts, nameCount{c.name, 1})
			}
		}
		if wrote {
			w.buf = append(w.buf, ',')
		}
		wrote = true
		if suffix > 0 {
			w.buf = append(w.buf, c.jkey[:len(c.jkey)-2]...)
			w.buf = append(w.buf, '_')
			w.buf = appendDec(w.buf, suffix, 1)
			w.buf = append(w.buf, '"', ':')
		} else {
			w.buf = append(w.buf, c.jkey...)
		}
		w.elementValue(c, k.sc)
	}
	w.refs = w.refs[:start]
	w.counts = w.counts[:cstart]
	w.buf = append(w.buf, '}')
}

// appendJSON renders the fragment's root element as {"Name": value}. w may
// be nil; passing the same renderer again reuses its scratch space.
func (f *fragment) appendJSON(dst []byte, w *jsonRenderer) []byte {
	if w == nil {
		w = &jsonRenderer{}
	}
	w.buf = dst
	w.buf = append(w.buf, '{')
	first := true
	for i := range f.root {
		n := &f.root[i]
		if n.kind != nodeElement {
			continue
		}
		if !first {
			w.buf = append(w.buf, ',')
		}
		first = false
		w.buf = append(w.buf, n.elem.jkey...)
		w.elementValue(n.elem, &f.sc)
	}
	w.buf = append(w.buf, '}')
	dst = w.buf
	w.buf = nil
	return dst
}
