package evtx

import (
	"encoding/binary"
	"hash/crc32"
	"unicode/utf16"
)

// This file builds EVTX files byte by byte for the tests, following the
// format description (libevtx's "Windows XML Event Log (EVTX) format"), so
// the tests can cover every value type and damaged structures that the
// real corpus files do not have.

// chunkBuilder writes one chunk; positions in b are chunk offsets, which is
// what binary XML name and template references are.
type chunkBuilder struct {
	b       []byte
	firstID uint64
	lastID  uint64
	nrec    int
}

func newChunkBuilder() *chunkBuilder {
	return &chunkBuilder{b: make([]byte, chunkHeaderSize)}
}

func (c *chunkBuilder) u8(v byte)    { c.b = append(c.b, v) }
func (c *chunkBuilder) u16(v uint16) { c.b = binary.LittleEndian.AppendUint16(c.b, v) }
func (c *chunkBuilder) u32(v uint32) { c.b = binary.LittleEndian.AppendUint32(c.b, v) }
func (c *chunkBuilder) u64(v uint64) { c.b = binary.LittleEndian.AppendUint64(c.b, v) }

// name writes a name reference followed by the name itself (inline).
func (c *chunkBuilder) name(s string) {
	c.u32(uint32(len(c.b) + 4))
	u := utf16.Encode([]rune(s))
	c.u32(0) // next name in the hash bucket
	c.u16(0) // hash (not checked by readers)
	c.u16(uint16(len(u)))
	for _, x := range u {
		c.u16(x)
	}
	c.u16(0)
}

// tok writes binary XML content: elements, text, substitutions.
type tok func(c *chunkBuilder)

type attr struct {
	name string
	val  []tok
}

func elem(name string, attrs []attr, content ...tok) tok {
	return func(c *chunkBuilder) {
		t := byte(tokOpenStart)
		if len(attrs) > 0 {
			t |= tokMoreBit
		}
		c.u8(t)
		c.u16(0xffff) // dependency identifier (inside templates)
		c.u32(0)      // data size, not used by readers
		c.name(name)
		if len(attrs) > 0 {
			c.u32(0) // attribute list size
			for i, a := range attrs {
				t := byte(tokAttribute)
				if i < len(attrs)-1 {
					t |= tokMoreBit
				}
				c.u8(t)
				c.name(a.name)
				for _, v := range a.val {
					v(c)
				}
			}
		}
		if len(content) == 0 {
			c.u8(tokCloseEmpty)
			return
		}
		c.u8(tokCloseStart)
		for _, x := range content {
			x(c)
		}
		c.u8(tokEndElement)
	}
}

func text(s string) tok {
	return func(c *chunkBuilder) {
		u := utf16.Encode([]rune(s))
		c.u8(tokValue)
		c.u8(typeString)
		c.u16(uint16(len(u)))
		for _, x := range u {
			c.u16(x)
		}
	}
}

func sub(id uint16, typ byte) tok {
	return func(c *chunkBuilder) { c.u8(tokSubst); c.u16(id); c.u8(typ) }
}

func optSub(id uint16, typ byte) tok {
	return func(c *chunkBuilder) { c.u8(tokOptSubst); c.u16(id); c.u8(typ) }
}

// sv is one substitution value: its type and bytes, or for nested binary
// XML a function that writes it in place (its names are chunk offsets).
type sv struct {
	typ   byte
	data  []byte
	write func(c *chunkBuilder)
}

// instance writes a template instance: the definition inline when defAt is
// 0 (returning where it was written), else a reference to defAt.
func (c *chunkBuilder) instance(defAt uint32, body tok, subs []sv) uint32 {
	c.u8(tokTemplate)
	c.u8(1)
	c.u32(1) // template id
	if defAt == 0 {
		defAt = uint32(len(c.b) + 4)
		c.u32(defAt)
		c.u32(0) // next template
		c.b = append(c.b, make([]byte, 16)...)
		sizeAt := len(c.b)
		c.u32(0)
		start := len(c.b)
		c.b = append(c.b, tokFragmentStart, 1, 1, 0)
		body(c)
		c.u8(tokEOF)
		binary.LittleEndian.PutUint32(c.b[sizeAt:], uint32(len(c.b)-start))
	} else {
		c.u32(defAt)
	}
	c.u32(uint32(len(subs)))
	desc := len(c.b)
	for _, s := range subs {
		c.u16(0) // size, set below
		c.u8(s.typ)
		c.u8(0)
	}
	for i, s := range subs {
		start := len(c.b)
		if s.write != nil {
			s.write(c)
		} else {
			c.b = append(c.b, s.data...)
		}
		binary.LittleEndian.PutUint16(c.b[desc+4*i:], uint16(len(c.b)-start))
	}
	return defAt
}

// record writes an event record whose binary XML is written by xml.
func (c *chunkBuilder) record(id uint64, filetime uint64, xml func(c *chunkBuilder)) {
	start := len(c.b)
	c.b = append(c.b, recordMagic...)
	c.u32(0)
	c.u64(id)
	c.u64(filetime)
	c.b = append(c.b, tokFragmentStart, 1, 1, 0)
	xml(c)
	c.u8(tokEOF)
	size := uint32(len(c.b) - start + 4)
	c.u32(size)
	binary.LittleEndian.PutUint32(c.b[start+4:], size)
	if c.nrec == 0 {
		c.firstID = id
	}
	c.lastID = id
	c.nrec++
}

// finish fills in the chunk header with correct checksums and pads the
// chunk to 64 KiB; slack is written after the free space offset.
func (c *chunkBuilder) finish(slack []byte) []byte {
	free := len(c.b)
	b := make([]byte, chunkSize)
	copy(b, c.b)
	copy(b[free:], slack)
	le := binary.LittleEndian
	copy(b, chunkMagic)
	le.PutUint64(b[8:], c.firstID)
	le.PutUint64(b[16:], c.lastID)
	le.PutUint64(b[24:], c.firstID)
	le.PutUint64(b[32:], c.lastID)
	le.PutUint32(b[40:], 128)
	le.PutUint32(b[44:], 0)
	le.PutUint32(b[48:], uint32(free))
	le.PutUint32(b[52:], crc32.ChecksumIEEE(b[chunkHeaderSize:free]))
	sum := crc32.ChecksumIEEE(b[:120])
	sum = crc32.Update(sum, crc32.IEEETable, b[128:chunkHeaderSize])
	le.PutUint32(b[124:], sum)
	return b
}

// buildFile joins chunks under a file header.
func buildFile(chunks ...[]byte) []byte {
	h := make([]byte, fileHeaderSize)
	le := binary.LittleEndian
	copy(h, fileMagic)
	le.PutUint64(h[16:], uint64(len(chunks)-1))
	le.PutUint32(h[32:], 128)
	le.PutUint16(h[36:], 1)
	le.PutUint16(h[38:], 3)
	le.PutUint16(h[40:], fileHeaderSize)
	le.PutUint16(h[42:], uint16(len(chunks)))
	le.PutUint32(h[124:], crc32.ChecksumIEEE(h[:120]))
	for _, c := range chunks {
		h = append(h, c...)
	}
	return h
}

// systemTemplate is the System part of a typical manifest-based event;
// substitutions 0-9 fill it.
func systemTemplate() tok {
	return elem("System", nil,
		elem("Provider", []attr{{"Name", []tok{sub(0, typeString)}}, {"Guid", []tok{sub(1, typeGUID)}}}),
		elem("EventID", []attr{{"Qualifiers", []tok{optSub(2, typeUint16)}}}, sub(3, typeUint16)),
		elem("Level", nil, sub(4, typeUint8)),
		elem("Keywords", nil, sub(5, typeHex64)),
		elem("TimeCreated", []attr{{"SystemTime", []tok{sub(6, typeFileTime)}}}),
		elem("EventRecordID", nil, sub(7, typeUint64)),
		elem("Channel", nil, text("Application")),
		elem("Computer", nil, sub(8, typeString)),
		elem("Security", []attr{{"UserID", []tok{optSub(9, typeSID)}}}),
	)
}

// Value encoders for substitutions.
func vString(s string) sv {
	var b []byte
	for _, x := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return sv{typ: typeString, data: b}
}
func vU8(v uint8) sv   { return sv{typ: typeUint8, data: []byte{v}} }
func vU16(v uint16) sv { return sv{typ: typeUint16, data: binary.LittleEndian.AppendUint16(nil, v)} }
func vU64(v uint64) sv { return sv{typ: typeUint64, data: binary.LittleEndian.AppendUint64(nil, v)} }
func vHex64(v uint64) sv {
	return sv{typ: typeHex64, data: binary.LittleEndian.AppendUint64(nil, v)}
}
func vFiletime(v uint64) sv {
	return sv{typ: typeFileTime, data: binary.LittleEndian.AppendUint64(nil, v)}
}

// guidBytes is the GUID {5770385F-C22A-43E0-BF4C-06F5698FFBD9} as stored:
// the first three groups little-endian, the rest as written.
var guidBytes = []byte{0x5f, 0x38, 0x70, 0x57, 0x2a, 0xc2, 0xe0, 0x43, 0xbf, 0x4c, 0x06, 0xf5, 0x69, 0x8f, 0xfb, 0xd9}

// sidBytes is S-1-5-21-1004336348-1177238915-682003330-512.
var sidBytes = func() []byte {
	b := []byte{1, 4, 0, 0, 0, 0, 0, 5}
	for _, v := range []uint32{21, 1004336348, 1177238915, 682003330} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}()

// systemValues fills systemTemplate for record id.
func systemValues(id uint64) []sv {
	return []sv{
		vString("Test-Provider"), {typ: typeGUID, data: guidBytes}, vU16(0x4000), vU16(7036), vU8(4),
		vHex64(0x8000000000000000),
		vFiletime(133000000000000000 + 10*id), // 2022-06-18T04:26:40Z + id µs
		vU64(id), vString("host.example"), {typ: typeSID, data: []byte{1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0}},
	}
}
