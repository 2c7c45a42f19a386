package evtx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

const (
	fileHeaderSize  = 4096
	chunkSize       = 65536
	chunkHeaderSize = 512
	recordHeader    = 24
	minRecordSize   = recordHeader + 4
)

var (
	fileMagic   = []byte("ElfFile\x00")
	chunkMagic  = []byte("ElfChnk\x00")
	recordMagic = []byte{0x2a, 0x2a, 0x00, 0x00}
)

// FileHeader is the decoded file header.
type FileHeader struct {
	FirstChunk   uint64
	LastChunk    uint64
	NextRecordID uint64
	MinorVersion uint16
	MajorVersion uint16
	ChunkCount   uint16
	Flags        uint32 // 1: dirty, 2: full
	ChecksumOK   bool   // CRC32 of the first 120 bytes matches
}

func parseFileHeader(b []byte) (FileHeader, error) {
	if len(b) < 128 || !bytes.Equal(b[:8], fileMagic) {
		return FileHeader{}, fmt.Errorf("evtx: %w", &FormatError{Offset: 0, Msg: "not an EVTX file (no ElfFile signature)"})
	}
	le := binary.LittleEndian
	h := FileHeader{
		FirstChunk:   le.Uint64(b[8:]),
		LastChunk:    le.Uint64(b[16:]),
		NextRecordID: le.Uint64(b[24:]),
		MinorVersion: le.Uint16(b[36:]),
		MajorVersion: le.Uint16(b[38:]),
		ChunkCount:   le.Uint16(b[42:]),
		Flags:        le.Uint32(b[120:]),
	}
	h.ChecksumOK = crc32.ChecksumIEEE(b[:120]) == le.Uint32(b[124:])
	return h, nil
}

// ChunkError reports a chunk that was skipped (or only partly read) and why.
type ChunkError struct {
	Index  int   // chunk number in the file, from 0
	Offset int64 // file offset of the chunk
	Err    error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("evtx: chunk %d at offset %#x: %v", e.Index, e.Offset, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// RecordError reports a record that could not be decoded; the records after
// it in the chunk are still read.
type RecordError struct {
	Offset int64 // file offset of the record
	ID     uint64
	Err    error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("evtx: record %d at offset %#x: %v", e.ID, e.Offset, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// entry is one item a chunk yields: a record or an error.
type entry struct {
	rec Record
	err error
}

type chunkResult struct {
	entries []entry
}

// scratch is a worker's reusable space, kept from one chunk to the next.
type scratch struct {
	json []byte
	jr   jsonRenderer
	ends []int
}

// decodeChunk decodes the records of one chunk. buf holds the chunk (shorter
// than chunkSize when the file is truncated) and is kept by the records. sc
// may be nil.
func decodeChunk(buf []byte, index int, offset int64, o *options, sc *scratch) chunkResult {
	if sc == nil {
		sc = &scratch{}
	}
	var res chunkResult
	fail := func(format string, args ...any) chunkResult {
		res.entries = append(res.entries, entry{err: &ChunkError{Index: index, Offset: offset, Err: fmt.Errorf(format, args...)}})
		return res
	}
	if len(buf) < chunkHeaderSize {
		return fail("truncated: %d bytes, not even a chunk header", len(buf))
	}
	if !bytes.Equal(buf[:8], chunkMagic) {
		if isZero(buf[:chunkHeaderSize]) {
			return res // never used
		}
		return fail("no ElfChnk signature")
	}
	le := binary.LittleEndian
	freeSpace := int(le.Uint32(buf[48:]))
	// salvage handles a chunk that fails a check: skipped, or with recovery
	// its records are carved by their signatures (its header may be wrong).
	salvage := func(why string) chunkResult {
		if !o.recovery {
			return fail("%s, skipped", why)
		}
		res = fail("%s, recovering its records", why)
		p := newChunkParser(buf, offset)
		for _, r := range p.carve(chunkHeaderSize, len(buf), index) {
			res.entries = append(res.entries, entry{rec: r})
		}
		if o.json {
			for i := range res.entries {
				if r := &res.entries[i].rec; r.frag != nil {
					r.json = r.frag.appendJSON(nil, nil)
				}
			}
		}
		return res
	}
	if o.checksums {
		sum := crc32.ChecksumIEEE(buf[:120])
		sum = crc32.Update(sum, crc32.IEEETable, buf[128:chunkHeaderSize])
		if sum != le.Uint32(buf[124:]) {
			return salvage("header checksum mismatch")
		}
	}
	if freeSpace < chunkHeaderSize || freeSpace > chunkSize {
		return salvage(fmt.Sprintf("free space offset %#x out of range", freeSpace))
	}
	// The header's first and last record ids give the number of records.
	if n := le.Uint64(buf[32:]) - le.Uint64(buf[24:]) + 1; n > 0 && n <= chunkSize/minRecordSize {
		res.entries = make([]entry, 0, n+1)
	}
	limit := freeSpace
	truncated := limit > len(buf)
	if truncated {
		// The records checksum cannot be verified: like a bad checksum this
		// skips the chunk, unless recovery was asked for.
		if !o.recovery {
			return fail("truncated at %d of %d bytes of records, skipped", len(buf), freeSpace)
		}
		res.entries = append(res.entries, entry{err: &ChunkError{Index: index, Offset: offset,
			Err: fmt.Errorf("truncated at %d of %d bytes of records, recovering the whole records", len(buf), freeSpace)}})
		limit = len(buf)
	} else if o.checksums && crc32.ChecksumIEEE(buf[chunkHeaderSize:freeSpace]) != le.Uint32(buf[52:]) {
		return salvage("records checksum mismatch")
	}

	p := newChunkParser(buf, offset)

	// JSON is rendered into the worker's scratch buffer and copied once into
	// a buffer of the exact size, which the records share. (Handing the
	// scratch buffer to the records instead costs more in allocation and
	// zeroing than the copy.)
	sc.json, sc.ends = sc.json[:0], sc.ends[:0]
	emit := func(r Record) {
		if o.json {
			sc.json = r.frag.appendJSON(sc.json, &sc.jr)
			sc.ends = append(sc.ends, len(sc.json))
		}
		res.entries = append(res.entries, entry{rec: r})
	}
	defer func() {
		if !o.json || len(sc.ends) == 0 {
			return
		}
		all := append([]byte(nil), sc.json...)
		k, start := 0, 0
		for i := range res.entries {
			if res.entries[i].err == nil {
				end := sc.ends[k]
				res.entries[i].rec.json = all[start:end:end]
				start = end
				k++
			}
		}
	}()

	off := chunkHeaderSize
	for off+minRecordSize <= limit {
		r, size, err := p.record(off, limit, index)
		if err != nil {
			if truncated && size == 0 {
				break // the cut-off record
			}
			res.entries = append(res.entries, entry{err: err})
			if size == 0 {
				// The record structure itself is bad: the next record cannot
				// be found from it, only by its signature.
				if o.recovery {
					for _, r := range p.carve(off+1, limit, index) {
						emit(r)
					}
				}
				break
			}
		} else {
			r.Recovered = truncated
			emit(r)
		}
		off += size
	}
	if o.recovery {
		for _, r := range p.carve(freeSpace, len(buf), index) {
			emit(r)
		}
	}
	return res
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// record decodes the record at off. size is the record's size when its
// header and trailer are sound (so the next record can be found even when the
// binary XML is bad), 0 otherwise.
func (p *chunkParser) record(off, limit, chunk int) (Record, int, error) {
	b := p.data
	le := binary.LittleEndian
	fileOff := p.base + int64(off)
	if !bytes.Equal(b[off:off+4], recordMagic) {
		return Record{}, 0, &RecordError{Offset: fileOff, Err: fmt.Errorf("no record signature")}
	}
	size := int(le.Uint32(b[off+4:]))
	id := le.Uint64(b[off+8:])
	if size < minRecordSize || size > limit-off {
		return Record{}, 0, &RecordError{Offset: fileOff, ID: id, Err: fmt.Errorf("size %d out of range", size)}
	}
	if int(le.Uint32(b[off+size-4:])) != size {
		return Record{}, 0, &RecordError{Offset: fileOff, ID: id, Err: fmt.Errorf("size %d does not match its copy", size)}
	}
	r := Record{
		ID:     id,
		Time:   filetimeToTime(le.Uint64(b[off+16:])),
		Offset: fileOff,
		Chunk:  chunk,
	}
	c := cursor{p: p, pos: off + recordHeader, end: off + size - 4}
	r.frag = p.parseFragment(&c, 0)
	if c.err != nil {
		return Record{}, size, &RecordError{Offset: fileOff, ID: id, Err: c.err}
	}
	if r.frag == nil || len(r.frag.root) == 0 {
		return Record{}, size, &RecordError{Offset: fileOff, ID: id, Err: fmt.Errorf("no event element")}
	}
	return r, size, nil
}

// carve looks for whole records in the chunk's slack space, after the free
// space offset: records of an earlier use of the chunk that were not
// overwritten. Only records whose binary XML decodes are returned.
func (p *chunkParser) carve(from, to, chunk int) []Record {
	var out []Record
	for off := from; off+minRecordSize <= to; {
		i := bytes.Index(p.data[off:to], recordMagic)
		if i < 0 {
			break
		}
		off += i
		if off+minRecordSize > to {
			break
		}
		r, size, err := p.record(off, to, chunk)
		if err != nil || size == 0 {
			off++
			continue
		}
		// A carved record has a plausible write time (after 2000, before 2100).
		if y := r.Time.Year(); y < 2000 || y > 2100 {
			off++
			continue
		}
		r.Recovered = true
		out = append(out, r)
		off += size
	}
	return out
}

// Record is one event record. Its decoded form aliases the chunk it came
// from, so keeping a Record keeps that chunk (64 KiB) in memory.
type Record struct {
	ID        uint64    // event record identifier
	Time      time.Time // time the record was written, UTC
	Offset    int64     // file offset of the record
	Chunk     int       // chunk number in the file, from 0
	Recovered bool      // carved from chunk slack space (WithRecovery)

	frag *fragment
	json []byte
}

// AppendJSON appends the record rendered as one JSON object in the layout of
// evtx_dump (see json.go), without a trailing newline.
func (r *Record) AppendJSON(dst []byte) []byte {
	if r.json != nil {
		return append(dst, r.json...)
	}
	return r.frag.appendJSON(dst, nil)
}

// AppendXML appends the record rendered as XML text.
func (r *Record) AppendXML(dst []byte) []byte {
	return r.frag.appendXML(dst)
}
