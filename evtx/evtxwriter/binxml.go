package evtxwriter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/quarry-dfir/quarry/evtx"
)

// Binary XML tokens.
const (
	tokEOF             = 0x00
	tokOpenStart       = 0x01
	tokCloseStart      = 0x02
	tokCloseEmpty      = 0x03
	tokEnd             = 0x04
	tokValue           = 0x05
	tokAttribute       = 0x06
	tokTemplate        = 0x0c
	tokSubstitution    = 0x0d
	tokOptSubstitution = 0x0e
	tokFragment        = 0x0f
	flagMore           = 0x40 // on an open tag: has attributes; on an attribute: another one follows
)

const eventNS = "http://schemas.microsoft.com/win/2004/08/events/event"

// userDataNS gives the xmlns of well-known UserData elements. evtx.Event has no field for it and
// Windows writes one on every UserData element, so the ones our generators use are known here.
var userDataNS = map[string]string{
	"LogFileCleared": "http://manifests.microsoft.com/win/2004/08/windows/eventlog",
	"AutoBackup":     "http://manifests.microsoft.com/win/2004/08/windows/eventlog",
}

// presence bits of optional System parts; they are part of the template shape.
const (
	hasGUID = 1 << iota
	hasSourceName
	hasQualifiers
	hasActivity
	hasRelated
	hasUser
)

// slot is one substitution value, in the order the template refers to them.
type slot struct {
	typ byte
	n   uint64 // fixed-width integer values of System fields
	s   string // string, GUID and SID values of System fields
	v   any    // event data values (typ from valueType)
	sys bool
}

type pendingName struct {
	name string
	off  uint32
}

// recordBuilder turns one event into record bytes for a given chunk offset. plan does the work that does
// not depend on the offset; build may run twice when the record moves to a new chunk.
type recordBuilder struct {
	w     *Writer
	e     *evtx.Event
	id    uint64
	ft    uint64
	flags int
	slots []slot
	key   []byte
	vals  []byte // descriptors then data, as they follow the template instance

	rec         []byte
	base        int
	newNames    []pendingName
	nameBuckets [64]uint32
	newTemplate bool
	tmplOff     uint32
	tmplID      uint32 // first four bytes of the template GUID, repeated in each instance
	tmplBuckets [32]uint32
	sub         int // next substitution index while writing a template
}

func (b *recordBuilder) plan(e *evtx.Event, id uint64) error {
	b.e, b.id = e, id
	ft, err := fileTimeOf(e.Time)
	if err != nil {
		return err
	}
	b.ft = ft
	b.flags = 0
	if e.ProviderGUID != "" {
		b.flags |= hasGUID
	}
	if e.EventSourceName != "" {
		b.flags |= hasSourceName
	}
	if e.HasQualifiers {
		b.flags |= hasQualifiers
	}
	if e.ActivityID != "" {
		b.flags |= hasActivity
	}
	if e.RelatedActivityID != "" {
		b.flags |= hasRelated
	}
	if e.UserID != "" {
		b.flags |= hasUser
	}
	switch e.DataKind {
	case "", "EventData":
	case "UserData":
		if err := checkName(e.UserDataName); err != nil {
			return fmt.Errorf("user data element: %w", err)
		}
	default:
		return fmt.Errorf("data kind %q: want EventData, UserData or empty", e.DataKind)
	}
	if e.DataKind == "" && len(e.Data) > 0 {
		return errors.New("data without a data kind")
	}

	// Slots in document order, which is also the substitution order of the template.
	b.slots = b.slots[:0]
	sys := func(typ byte, n uint64, s string) {
		b.slots = append(b.slots, slot{typ: typ, n: n, s: s, sys: true})
	}
	sys(typeString, 0, e.Provider)
	if b.flags&hasGUID != 0 {
		sys(typeGUID, 0, e.ProviderGUID)
	}
	if b.flags&hasSourceName != 0 {
		sys(typeString, 0, e.EventSourceName)
	}
	if b.flags&hasQualifiers != 0 {
		sys(typeUInt16, uint64(e.Qualifiers), "")
	}
	sys(typeUInt16, uint64(e.EventID), "")
	sys(typeUInt8, uint64(e.Version), "")
	sys(typeUInt8, uint64(e.Level), "")
	sys(typeUInt16, uint64(e.Task), "")
	sys(typeUInt8, uint64(e.Opcode), "")
	sys(typeHexInt64, e.Keywords, "")
	sys(typeFileTime, ft, "")
	sys(typeUInt64, id, "")
	if b.flags&hasActivity != 0 {
		sys(typeGUID, 0, e.ActivityID)
	}
	if b.flags&hasRelated != 0 {
		sys(typeGUID, 0, e.RelatedActivityID)
	}
	sys(typeUInt32, uint64(e.ProcessID), "")
	sys(typeUInt32, uint64(e.ThreadID), "")
	sys(typeString, 0, e.Channel)
	sys(typeString, 0, e.Computer)
	if b.flags&hasUser != 0 {
		sys(typeSID, 0, e.UserID)
	}
	for _, f := range e.Data {
		t, err := valueType(f.Value)
		if err != nil {
			return fmt.Errorf("data %q: %w", f.Name, err)
		}
		if e.DataKind == "UserData" {
			if err := checkName(f.Name); err != nil {
				return fmt.Errorf("user data field: %w", err)
			}
		} else if utf16Len(f.Name) > 0xffff {
			return fmt.Errorf("data name of %d characters, more than 65535", utf16Len(f.Name))
		}
		b.slots = append(b.slots, slot{typ: t, v: f.Value})
	}

	// The shape key: everything the template text depends on.
	k := b.key[:0]
	k = append(k, e.Provider...)
	k = append(k, 0, byte(b.flags))
	k = binary.LittleEndian.AppendUint16(k, e.EventID)
	k = append(k, e.DataKind...)
	k = append(k, 0)
	k = append(k, e.UserDataName...)
	k = append(k, 0)
	for i, f := range e.Data {
		k = append(k, f.Name...)
		k = append(k, 0, b.slots[len(b.slots)-len(e.Data)+i].typ)
	}
	b.key = k

	// Values: a descriptor (size, type) per slot, then the data.
	le := binary.LittleEndian
	v := b.vals[:0]
	v = le.AppendUint32(v, uint32(len(b.slots)))
	descAt := len(v)
	v = append(v, make([]byte, 4*len(b.slots))...)
	for i, s := range b.slots {
		start := len(v)
		var err error
		if v, err = appendSlot(v, s); err != nil {
			if s.sys {
				return fmt.Errorf("system value %d: %w", i, err)
			}
			return fmt.Errorf("data %q: %w", e.Data[i-(len(b.slots)-len(e.Data))].Name, err)
		}
		size := len(v) - start
		if size > maxValueSize {
			name := "system value"
			if !s.sys {
				name = fmt.Sprintf("data %q", e.Data[i-(len(b.slots)-len(e.Data))].Name)
			}
			return fmt.Errorf("%s: %d bytes, more than the %d a substitution value holds", name, size, maxValueSize)
		}
		d := v[descAt+4*i:]
		le.PutUint16(d, uint16(size))
		d[2], d[3] = s.typ, 0
	}
	b.vals = v
	return nil
}

func appendSlot(b []byte, s slot) ([]byte, error) {
	if !s.sys {
		return appendValue(b, s.v)
	}
	le := binary.LittleEndian
	switch s.typ {
	case typeString:
		return appendUTF16(b, s.s), nil
	case typeGUID:
		return appendGUID(b, s.s)
	case typeSID:
		return appendSID(b, s.s)
	case typeUInt8:
		return append(b, byte(s.n)), nil
	case typeUInt16:
		return le.AppendUint16(b, uint16(s.n)), nil
	case typeUInt32:
		return le.AppendUint32(b, uint32(s.n)), nil
	}
	return le.AppendUint64(b, s.n), nil // UInt64, HexInt64, FILETIME
}

// checkName refuses element names that no XML reader would accept.
func checkName(n string) error {
	if n == "" {
		return errors.New("empty element name")
	}
	if strings.ContainsAny(n, " \t\r\n<>&\"'/=\x00") {
		return fmt.Errorf("element name %q holds a character XML names cannot have", n)
	}
	if utf16Len(n) > 0xffff {
		return fmt.Errorf("element name of %d characters", utf16Len(n))
	}
	return nil
}

// build renders the record as it would sit at chunk offset base.
func (b *recordBuilder) build(base int) []byte {
	w, e := b.w, b.e
	le := binary.LittleEndian
	b.base = base
	b.newNames = b.newNames[:0]
	b.nameBuckets = w.nameBuckets
	b.tmplBuckets = w.tmplBuckets
	r := b.rec[:0]
	r = append(r, 0x2a, 0x2a, 0, 0, 0, 0, 0, 0)
	r = le.AppendUint64(r, b.id)
	r = le.AppendUint64(r, b.ft)
	r = append(r, tokFragment, 1, 1, 0)
	t, ok := w.templates[string(b.key)]
	b.newTemplate = !ok
	r = append(r, tokTemplate, 1)
	if ok {
		r = le.AppendUint32(r, t.id)
		r = le.AppendUint32(r, t.off)
		b.rec = r
	} else {
		guid := templateGUID(b.key)
		b.tmplID = le.Uint32(guid[:4])
		r = append(r, guid[:4]...)
		off := uint32(base + len(r) + 4)
		b.tmplOff = off
		r = le.AppendUint32(r, off)
		bucket := b.tmplID % 32
		r = le.AppendUint32(r, b.tmplBuckets[bucket])
		b.tmplBuckets[bucket] = off
		r = append(r, guid[:]...)
		sizeAt := len(r)
		r = append(r, 0, 0, 0, 0)
		b.rec = r
		b.sub = 0
		b.template(e)
		r = b.rec
		le.PutUint32(r[sizeAt:], uint32(len(r)-sizeAt-4))
	}
	r = append(r, b.vals...)
	r = append(r, tokEOF) // ends the record's fragment
	// Windows pads records to a multiple of 8 bytes; the padding sits before the trailing size copy.
	for (len(r)+4)%8 != 0 {
		r = append(r, 0)
	}
	size := len(r) + 4
	le.PutUint32(r[4:], uint32(size))
	r = le.AppendUint32(r, uint32(size))
	b.rec = r
	return r
}

// template writes the template body: a fragment holding the Event element, every variable part a
// substitution in slot order.
func (b *recordBuilder) template(e *evtx.Event) {
	b.rec = append(b.rec, tokFragment, 1, 1, 0)
	ev := b.open("Event", true)
	b.attrText("xmlns", eventNS, false)
	b.closeStart(ev)

	sys := b.open("System", false)
	b.closeStart(sys)
	p := b.open("Provider", true)
	b.attrSub("Name", b.flags&(hasGUID|hasSourceName) != 0)
	if b.flags&hasGUID != 0 {
		b.attrSub("Guid", b.flags&hasSourceName != 0)
	}
	if b.flags&hasSourceName != 0 {
		b.attrSub("EventSourceName", false)
	}
	b.closeEmpty(p)
	id := b.open("EventID", b.flags&hasQualifiers != 0)
	if b.flags&hasQualifiers != 0 {
		b.attrSub("Qualifiers", false)
	}
	b.closeStart(id)
	b.subst()
	b.end(id)
	for _, n := range []string{"Version", "Level", "Task", "Opcode", "Keywords"} {
		b.textElem(n)
	}
	tc := b.open("TimeCreated", true)
	b.attrSub("SystemTime", false)
	b.closeEmpty(tc)
	b.textElem("EventRecordID")
	c := b.open("Correlation", b.flags&(hasActivity|hasRelated) != 0)
	if b.flags&hasActivity != 0 {
		b.attrSub("ActivityID", b.flags&hasRelated != 0)
	}
	if b.flags&hasRelated != 0 {
		b.attrSub("RelatedActivityID", false)
	}
	b.closeEmpty(c)
	x := b.open("Execution", true)
	b.attrSub("ProcessID", true)
	b.attrSub("ThreadID", false)
	b.closeEmpty(x)
	b.textElem("Channel")
	b.textElem("Computer")
	s := b.open("Security", b.flags&hasUser != 0)
	if b.flags&hasUser != 0 {
		b.attrSub("UserID", false)
	}
	b.closeEmpty(s)
	b.end(sys)

	switch e.DataKind {
	case "EventData":
		ed := b.open("EventData", false)
		if len(e.Data) == 0 {
			b.closeEmpty(ed)
			break
		}
		b.closeStart(ed)
		for _, f := range e.Data {
			d := b.open("Data", f.Name != "")
			if f.Name != "" {
				b.attrText("Name", f.Name, false)
			}
			b.closeStart(d)
			b.subst()
			b.end(d)
		}
		b.end(ed)
	case "UserData":
		ud := b.open("UserData", false)
		b.closeStart(ud)
		ns := userDataNS[e.UserDataName]
		el := b.open(e.UserDataName, ns != "")
		if ns != "" {
			b.attrText("xmlns", ns, false)
		}
		if len(e.Data) == 0 {
			b.closeEmpty(el)
		} else {
			b.closeStart(el)
			for _, f := range e.Data {
				b.textElem(f.Name)
			}
			b.end(el)
		}
		b.end(ud)
	}
	b.end(ev)
	b.rec = append(b.rec, tokEOF)
}

// elem tracks an open element's size fields for back-patching.
type elem struct{ sizeAt, attrAt int }

func (b *recordBuilder) open(name string, attrs bool) elem {
	tok := byte(tokOpenStart)
	if attrs {
		tok |= flagMore
	}
	b.rec = append(b.rec, tok, 0xff, 0xff, 0, 0, 0, 0)
	el := elem{sizeAt: len(b.rec) - 4, attrAt: -1}
	b.name(name)
	if attrs {
		el.attrAt = len(b.rec)
		b.rec = append(b.rec, 0, 0, 0, 0)
	}
	return el
}

func (b *recordBuilder) patchAttrs(el elem) {
	if el.attrAt >= 0 {
		binary.LittleEndian.PutUint32(b.rec[el.attrAt:], uint32(len(b.rec)-el.attrAt-4))
	}
}

func (b *recordBuilder) closeStart(el elem) {
	b.patchAttrs(el)
	b.rec = append(b.rec, tokCloseStart)
}

func (b *recordBuilder) closeEmpty(el elem) {
	b.patchAttrs(el)
	b.rec = append(b.rec, tokCloseEmpty)
	b.patchSize(el)
}

func (b *recordBuilder) end(el elem) {
	b.rec = append(b.rec, tokEnd)
	b.patchSize(el)
}

func (b *recordBuilder) patchSize(el elem) {
	binary.LittleEndian.PutUint32(b.rec[el.sizeAt:], uint32(len(b.rec)-el.sizeAt-4))
}

// textElem writes <name>%sub%</name>.
func (b *recordBuilder) textElem(name string) {
	el := b.open(name, false)
	b.closeStart(el)
	b.subst()
	b.end(el)
}

func (b *recordBuilder) attrStart(name string, more bool) {
	tok := byte(tokAttribute)
	if more {
		tok |= flagMore
	}
	b.rec = append(b.rec, tok)
	b.name(name)
}

func (b *recordBuilder) attrSub(name string, more bool) {
	b.attrStart(name, more)
	b.subst()
}

func (b *recordBuilder) attrText(name, text string, more bool) {
	b.attrStart(name, more)
	b.rec = append(b.rec, tokValue, typeString)
	b.rec = binary.LittleEndian.AppendUint16(b.rec, uint16(utf16Len(text)))
	b.rec = appendUTF16(b.rec, text)
}

// subst writes a substitution of the next slot. A Null value takes an optional substitution, which
// readers render as an empty element: a normal substitution of Null is an error to libevtx.
func (b *recordBuilder) subst() {
	tok := byte(tokSubstitution)
	if b.slots[b.sub].typ == typeNull {
		tok = tokOptSubstitution
	}
	b.rec = append(b.rec, tok)
	b.rec = binary.LittleEndian.AppendUint16(b.rec, uint16(b.sub))
	b.rec = append(b.rec, b.slots[b.sub].typ)
	b.sub++
}

// name writes a reference to a name, defining it in place the first time the chunk needs it. A new
// name goes to the head of its hash bucket and links to the previous head, as Windows chains them.
func (b *recordBuilder) name(n string) {
	le := binary.LittleEndian
	if off, ok := b.w.names[n]; ok {
		b.rec = le.AppendUint32(b.rec, off)
		return
	}
	for _, p := range b.newNames {
		if p.name == n {
			b.rec = le.AppendUint32(b.rec, p.off)
			return
		}
	}
	off := uint32(b.base + len(b.rec) + 4)
	h := nameHash(n)
	bucket := h % 64
	b.rec = le.AppendUint32(b.rec, off)
	b.rec = le.AppendUint32(b.rec, b.nameBuckets[bucket])
	b.rec = le.AppendUint16(b.rec, h)
	b.rec = le.AppendUint16(b.rec, uint16(utf16Len(n)))
	b.rec = appendUTF16(b.rec, n)
	b.rec = append(b.rec, 0, 0)
	b.nameBuckets[bucket] = off
	b.newNames = append(b.newNames, pendingName{n, off})
}

func utf16Pair(r rune) (uint16, uint16) {
	r1, r2 := utf16.EncodeRune(r)
	return uint16(r1), uint16(r2)
}
