package evtx

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Binary XML tokens. The 0x40 bit on element, value, attribute and a few
// others is a "more data follows" flag and is masked off before dispatch.
const (
	tokEOF           = 0x00
	tokOpenStart     = 0x01
	tokCloseStart    = 0x02
	tokCloseEmpty    = 0x03
	tokEndElement    = 0x04
	tokValue         = 0x05
	tokAttribute     = 0x06
	tokCDATA         = 0x07
	tokCharRef       = 0x08
	tokEntityRef     = 0x09
	tokPITarget      = 0x0a
	tokPIData        = 0x0b
	tokTemplate      = 0x0c
	tokSubst         = 0x0d
	tokOptSubst      = 0x0e
	tokFragmentStart = 0x0f
	tokMoreBit       = 0x40
)

// maxDepth bounds element nesting and nested binary XML so hostile input
// cannot exhaust the stack.
const maxDepth = 64

// node kinds of a parsed binary XML tree.
const (
	nodeElement = iota
	nodeText    // literal text
	nodeValue   // literal value of a non-string type
	nodeSubst   // substitution placeholder, resolved per record
	nodeCharRef
	nodeEntityRef
	nodeCDATA
	nodePI
)

// node is one piece of element content or of an attribute value. Templates
// are parsed once per chunk into trees of nodes; records only add their
// substitution values.
type node struct {
	kind     uint8
	vtype    uint8 // nodeValue: value type; nodeSubst: declared type
	optional bool  // nodeSubst from an optional substitution token
	id       uint16
	text     string // nodeText, nodeEntityRef, nodeCDATA, nodePI (target)
	jtext    string // text escaped for a JSON string (nodeText, nodeCDATA)
	raw      []byte // nodeValue; nodePI: data as UTF-16
	elem     *element
}

type element struct {
	name     string
	jkey     string // name as a JSON object key: quoted, escaped, with colon
	attrs    []attribute
	children []node
	// hasElem is set when a child is an element; hasSubst when a child is a
	// substitution, which may turn out to be nested binary XML or an array;
	// attrSubst when an attribute value holds a substitution.
	hasElem, hasSubst, attrSubst bool
	// staticKids counts the element children; uniqueKids is set when their
	// names are all different, so JSON keys need no _N suffixes unless
	// substitutions add elements.
	staticKids int
	uniqueKids bool
	// oneSubst is set when the content is exactly one substitution, the
	// common case that JSON rendering takes a short path for.
	oneSubst bool
}

type attribute struct {
	name  string
	jkey  string
	value []node
}

// fragment is decoded binary XML: a template's tree with one record's
// substitution values, or (rarely) elements written out without a template.
type fragment struct {
	root []node
	sc   scope
	// weight estimates the size the fragment renders to: its nodes and the
	// bytes of every substitution use, nested binary XML included. It bounds
	// the work and output a record can cause (see maxWeight).
	weight int
}

// maxWeight bounds the rendered size of one record (about 4 MB, while a
// record is at most 64 KiB). A template may use a substitution many times,
// and nested binary XML may do so again, so a small record could otherwise
// expand to gigabytes.
const maxWeight = 1 << 22

// scope holds the substitution values of one template instance in a
// compact, pointer-free form (the garbage collector need not scan it):
// where each value's bytes are in the chunk, and its type.
type scope struct {
	data  []byte // the chunk
	slots []slot
	p     *chunkParser // holds the decoded nested binary XML
}

type slot struct {
	off    uint32
	nested uint32 // index in chunkParser.nested + 1; 0 for none
	size   uint16
	typ    uint8
}

// slot returns the slot of value id, or nil.
func (s *scope) slot(id uint16) *slot {
	if s == nil || int(id) >= len(s.slots) {
		return nil
	}
	return &s.slots[id]
}

// empty reports whether value id is missing or renders as nothing (see
// value.isEmpty); nested binary XML counts as empty text.
func (s *scope) emptyText(id uint16) bool {
	sl := s.slot(id)
	if sl == nil || sl.size == 0 || sl.typ == typeNull || sl.typ == typeBinXML {
		return true
	}
	if sl.typ == typeString || sl.typ == typeAnsi {
		v, _ := s.get(id)
		return v.isEmpty()
	}
	return false
}

// val is the value of a slot, without its nested binary XML: small enough
// to inline, for the hot paths that have checked the slot already.
func (s *scope) val(sl *slot) value {
	return value{typ: sl.typ, raw: s.data[sl.off : sl.off+uint32(sl.size)]}
}

// get returns value id, or false when the instance has no such value.
func (s *scope) get(id uint16) (value, bool) {
	if s == nil || int(id) >= len(s.slots) {
		return value{}, false
	}
	sl := &s.slots[id]
	v := value{typ: sl.typ, raw: s.data[sl.off : sl.off+uint32(sl.size) : sl.off+uint32(sl.size)]}
	if sl.nested > 0 {
		v.frag = s.p.nested[sl.nested-1]
	}
	return v, true
}

type nameEntry struct {
	name, jkey string
}

type template struct {
	root  []node
	nodes int      // nodes in the tree
	refs  []uint16 // substitution ids used, with repetition
}

// count fills t.nodes and t.refs.
func (t *template) count(nodes []node) {
	for i := range nodes {
		n := &nodes[i]
		t.nodes++
		switch n.kind {
		case nodeSubst:
			t.refs = append(t.refs, n.id)
		case nodeElement:
			for j := range n.elem.attrs {
				t.count(n.elem.attrs[j].value)
			}
			t.count(n.elem.children)
		}
	}
}

// chunkParser decodes the binary XML of one chunk. Names and templates are
// referenced by their offset in the chunk and cached, so each is decoded
// once per chunk however many records use it.
type chunkParser struct {
	data      []byte
	base      int64 // file offset of data, for error messages
	names     map[uint32]nameEntry
	templates map[uint32]*template
	slab      []slot      // substitution values are carved from here
	nested    []*fragment // nested binary XML values, by slot.nested
	frags     []fragment  // and fragments from here
}

func (p *chunkParser) fragment() *fragment {
	if len(p.frags) == cap(p.frags) {
		p.frags = make([]fragment, 0, min(2*cap(p.frags)+16, 512))
	}
	p.frags = p.frags[:len(p.frags)+1]
	return &p.frags[len(p.frags)-1]
}

// values returns a slice of n values from the slab, so that a chunk's
// records share a few large allocations.
func (p *chunkParser) values(n int) []slot {
	if cap(p.slab)-len(p.slab) < n {
		// Slabs grow with the chunk's use, so small chunks stay small.
		p.slab = make([]slot, 0, max(n, min(2*cap(p.slab)+64, 8192)))
	}
	s := p.slab[len(p.slab) : len(p.slab)+n : len(p.slab)+n]
	p.slab = p.slab[:len(p.slab)+n]
	return s
}

func newChunkParser(data []byte, base int64) *chunkParser {
	return &chunkParser{
		data:      data,
		base:      base,
		names:     make(map[uint32]nameEntry, 64),
		templates: make(map[uint32]*template, 16),
	}
}

// FormatError is a structural problem in the file, at a file offset.
type FormatError struct {
	Offset int64
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("offset %#x: %s", e.Offset, e.Msg)
}

var errShort = errors.New("short")

// cursor reads little-endian fields from the chunk. pos is an offset in the
// chunk; end bounds the current structure. Reads past end set err and
// return zero, so parsing code checks err once per token.
type cursor struct {
	p   *chunkParser
	pos int
	end int
	err error
}

func (c *cursor) fail(format string, args ...any) {
	if c.err == nil {
		c.err = &FormatError{Offset: c.p.base + int64(c.pos), Msg: fmt.Sprintf(format, args...)}
	}
}

func (c *cursor) need(n int) bool {
	if c.err != nil {
		return false
	}
	if n < 0 || c.pos+n > c.end {
		c.fail("binary XML: need %d bytes, %d left", n, c.end-c.pos)
		return false
	}
	return true
}

func (c *cursor) peek() byte {
	if !c.need(1) {
		return 0
	}
	return c.p.data[c.pos]
}

func (c *cursor) u8() byte {
	if !c.need(1) {
		return 0
	}
	c.pos++
	return c.p.data[c.pos-1]
}

func (c *cursor) u16() uint16 {
	if !c.need(2) {
		return 0
	}
	c.pos += 2
	return binary.LittleEndian.Uint16(c.p.data[c.pos-2:])
}

func (c *cursor) u32() uint32 {
	if !c.need(4) {
		return 0
	}
	c.pos += 4
	return binary.LittleEndian.Uint32(c.p.data[c.pos-4:])
}

func (c *cursor) bytes(n int) []byte {
	if !c.need(n) {
		return nil
	}
	c.pos += n
	return c.p.data[c.pos-n : c.pos : c.pos]
}

// name reads a name reference. When the name is stored inline (its offset is
// the current position) the cursor skips over it.
func (c *cursor) name() nameEntry {
	off := c.u32()
	if c.err != nil {
		return nameEntry{}
	}
	s, n, err := c.p.name(off)
	if err != nil {
		c.fail("%v", err)
		return nameEntry{}
	}
	if int(off) == c.pos {
		c.bytes(n)
	}
	return s
}

// name returns the name at off and the size of its structure: next-name
// offset (4), hash (2), character count (2), characters, NUL.
func (p *chunkParser) name(off uint32) (nameEntry, int, error) {
	o := int(off)
	if o < 0 || o+8 > len(p.data) {
		return nameEntry{}, 0, fmt.Errorf("name offset %#x outside the chunk", off)
	}
	count := int(binary.LittleEndian.Uint16(p.data[o+6:]))
	size := 8 + 2*count + 2
	if o+size > len(p.data) {
		return nameEntry{}, 0, fmt.Errorf("name at %#x runs past the chunk", off)
	}
	if s, ok := p.names[off]; ok {
		return s, size, nil
	}
	s := utf16String(p.data[o+8 : o+8+2*count])
	e := nameEntry{name: s, jkey: jsonKey(s)}
	p.names[off] = e
	return e, size, nil
}

// parseFragment decodes binary XML from c.pos to c.end: a fragment header
// followed by a template instance or by elements.
func (p *chunkParser) parseFragment(c *cursor, depth int) *fragment {
	if depth > maxDepth {
		c.fail("binary XML nested too deeply")
		return nil
	}
	f := p.fragment()
	for c.err == nil && c.pos < c.end {
		tok := c.peek()
		switch tok &^ tokMoreBit {
		case tokFragmentStart:
			c.bytes(4)
		case tokTemplate:
			t := p.parseTemplateInstance(c, &f.sc, depth)
			if c.err != nil {
				return nil
			}
			f.root = t.root
			f.weight = 16 * t.nodes
			for _, id := range t.refs {
				if int(id) >= len(f.sc.slots) {
					continue
				}
				if sl := &f.sc.slots[id]; sl.nested > 0 {
					f.weight += p.nested[sl.nested-1].weight
				} else {
					f.weight += int(sl.size)
				}
				if f.weight > maxWeight {
					c.fail("binary XML would render to more than %d bytes", maxWeight)
					return nil
				}
			}
			return f
		case tokOpenStart:
			e := p.parseElement(c, false, depth+1)
			if c.err != nil {
				return nil
			}
			f.root = append(f.root, node{kind: nodeElement, elem: e})
			f.weight += 16 * (1 + len(e.children) + len(e.attrs))
		case tokEOF:
			c.pos++
			return f
		default:
			c.fail("binary XML: unexpected token %#02x in fragment", tok)
		}
	}
	if c.err != nil {
		return nil
	}
	return f
}

// parseTemplateInstance decodes a template instance token: the template
// (inline the first time it is used in a chunk, else a reference to its
// definition) and the record's substitution values.
func (p *chunkParser) parseTemplateInstance(c *cursor, sc *scope, depth int) *template {
	c.u8()  // token
	c.u8()  // unknown
	c.u32() // template id
	defOff := c.u32()
	if c.err != nil {
		return nil
	}
	t, size, err := p.template(defOff, depth)
	if err != nil {
		c.err = err
		return nil
	}
	if int(defOff) == c.pos {
		c.bytes(size)
	}
	count := int(c.u32())
	if c.err != nil {
		return nil
	}
	if count*4 > c.end-c.pos {
		c.fail("template instance: %d substitution values do not fit", count)
		return nil
	}
	desc := c.bytes(count * 4)
	slots := p.values(count)
	sc.data, sc.slots, sc.p = p.data, slots, p
	for i := range slots {
		size := int(binary.LittleEndian.Uint16(desc[4*i:]))
		typ := desc[4*i+2]
		off := c.pos
		c.bytes(size)
		if c.err != nil {
			return nil
		}
		slots[i] = slot{off: uint32(off), size: uint16(size), typ: typ}
		if typ == typeBinXML && size > 0 {
			sub := cursor{p: p, pos: off, end: c.pos}
			f := p.parseFragment(&sub, depth+1)
			if sub.err != nil {
				c.err = sub.err
				return nil
			}
			p.nested = append(p.nested, f)
			slots[i].nested = uint32(len(p.nested))
		}
	}
	return t
}

// template returns the template defined at off and the size of its
// definition (header of 24 bytes plus body).
func (p *chunkParser) template(off uint32, depth int) (*template, int, error) {
	o := int(off)
	if o < 0 || o+24 > len(p.data) {
		return nil, 0, &FormatError{Offset: p.base + int64(o), Msg: "template definition outside the chunk"}
	}
	bodySize := int(binary.LittleEndian.Uint32(p.data[o+20:]))
	if bodySize > len(p.data)-o-24 {
		return nil, 0, &FormatError{Offset: p.base + int64(o), Msg: fmt.Sprintf("template body of %d bytes runs past the chunk", bodySize)}
	}
	if t, ok := p.templates[off]; ok {
		return t, 24 + bodySize, nil
	}
	c := cursor{p: p, pos: o + 24, end: o + 24 + bodySize}
	t := &template{}
	for c.err == nil && c.pos < c.end {
		tok := c.peek()
		switch tok &^ tokMoreBit {
		case tokFragmentStart:
			c.bytes(4)
		case tokOpenStart:
			e := p.parseElement(&c, true, depth+1)
			if c.err == nil {
				t.root = append(t.root, node{kind: nodeElement, elem: e})
			}
		case tokEOF:
			c.pos = c.end
		default:
			c.fail("template: unexpected token %#02x", tok)
		}
	}
	if c.err != nil {
		return nil, 0, c.err
	}
	t.count(t.root)
	p.templates[off] = t
	return t, 24 + bodySize, nil
}

// parseElement decodes an element from its open-start token to its end.
// Inside a template definition an element carries a dependency identifier.
func (p *chunkParser) parseElement(c *cursor, inTemplate bool, depth int) *element {
	if depth > maxDepth {
		c.fail("binary XML: elements nested too deeply")
		return nil
	}
	tok := c.u8()
	if inTemplate {
		c.u16()
	}
	c.u32() // data size
	ne := c.name()
	e := &element{name: ne.name, jkey: ne.jkey}
	if tok&tokMoreBit != 0 {
		c.u32() // attribute list size
		for c.err == nil && c.peek()&^tokMoreBit == tokAttribute {
			more := c.u8()&tokMoreBit != 0
			ne := c.name()
			a := attribute{name: ne.name, jkey: ne.jkey}
			a.value = p.parseContent(c, true, inTemplate, depth)
			for i := range a.value {
				if a.value[i].kind == nodeSubst {
					e.attrSubst = true
				}
			}
			e.attrs = append(e.attrs, a)
			if !more {
				break
			}
		}
	}
	switch t := c.u8(); t {
	case tokCloseEmpty:
		return e
	case tokCloseStart:
	default:
		if c.err == nil {
			c.pos--
			c.fail("binary XML: element %q: expected close of start tag, got %#02x", e.name, t)
		}
		return nil
	}
	e.children = p.parseContent(c, false, inTemplate, depth)
	e.uniqueKids = true
	e.oneSubst = len(e.children) == 1 && e.children[0].kind == nodeSubst
	for i := range e.children {
		switch e.children[i].kind {
		case nodeElement:
			e.hasElem = true
			e.staticKids++
			for j := range i {
				if e.children[j].kind == nodeElement && e.children[j].elem.name == e.children[i].elem.name {
					e.uniqueKids = false
				}
			}
		case nodeSubst:
			e.hasSubst = true
		}
	}
	if c.err != nil {
		return nil
	}
	return e
}

// parseContent decodes element content up to and including the end-element
// token, or an attribute value up to the next attribute or end of the start
// tag.
func (p *chunkParser) parseContent(c *cursor, inAttr, inTemplate bool, depth int) []node {
	var out []node
	for c.err == nil {
		tok := c.peek()
		switch tok &^ tokMoreBit {
		case tokOpenStart:
			if inAttr {
				return out
			}
			e := p.parseElement(c, inTemplate, depth+1)
			if c.err != nil {
				return nil
			}
			out = append(out, node{kind: nodeElement, elem: e})
		case tokEndElement:
			if inAttr {
				return out
			}
			c.pos++
			return out
		case tokCloseStart, tokCloseEmpty, tokAttribute:
			if inAttr {
				return out
			}
			c.fail("binary XML: unexpected token %#02x in element content", tok)
		case tokValue:
			c.pos++
			t := c.u8()
			if t == typeString {
				n := int(c.u16())
				t := utf16String(c.bytes(2 * n))
				out = append(out, node{kind: nodeText, text: t, jtext: string(appendString(nil, t, escJSON))})
			} else if n := fixedSize(t); n > 0 {
				out = append(out, node{kind: nodeValue, vtype: t, raw: c.bytes(n)})
			} else {
				c.fail("binary XML: value token of type %#02x", t)
			}
		case tokCDATA:
			c.pos++
			n := int(c.u16())
			t := utf16String(c.bytes(2 * n))
			out = append(out, node{kind: nodeCDATA, text: t, jtext: string(appendString(nil, t, escJSON))})
		case tokCharRef:
			c.pos++
			out = append(out, node{kind: nodeCharRef, id: c.u16()})
		case tokEntityRef:
			c.pos++
			out = append(out, node{kind: nodeEntityRef, text: c.name().name})
		case tokPITarget:
			c.pos++
			nd := node{kind: nodePI, text: c.name().name}
			if c.peek() == tokPIData {
				c.pos++
				n := int(c.u16())
				nd.raw = c.bytes(2 * n)
			}
			out = append(out, nd)
		case tokSubst, tokOptSubst:
			c.pos++
			id := c.u16()
			t := c.u8()
			out = append(out, node{kind: nodeSubst, id: id, vtype: t, optional: tok == tokOptSubst})
		default:
			if inAttr {
				return out
			}
			c.fail("binary XML: unexpected token %#02x in element content", tok)
		}
	}
	return out
}

func jsonKey(name string) string {
	b := make([]byte, 0, len(name)+3)
	b = append(b, '"')
	b = appendString(b, name, escJSON)
	return string(append(b, '"', ':'))
}
