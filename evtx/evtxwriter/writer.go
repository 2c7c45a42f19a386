// Package evtxwriter writes Windows XML event log files (.evtx) from evtx.Events, in the layout Windows
// itself produces: a 4 KiB file header, 64 KiB chunks with their string and template hash tables and
// CRC32s, and records whose binary XML is a template instance. A template is defined once per chunk for
// each event shape (provider, EventID, data names and types) and later records of the chunk refer to it
// by offset, as Windows does; element and attribute names are written once per chunk and shared.
//
// The Writer streams: it buffers one chunk, so memory does not grow with the file. The file header holds
// totals known only at the end, so the Writer needs an io.WriteSeeker: New writes a provisional header
// (flagged dirty, no chunks), chunks follow as they fill, and Close seeks back to rewrite the header.
// A file whose Writer was never closed still holds every full chunk, readable by tools that scan.
//
// Like Windows, the writer pads records to a multiple of 8 bytes, and it never fills a chunk to its last
// bytes (libevtx skips a chunk's last record when fewer than 4 bytes follow it). Field values are typed
// by their Go type, with the wrapper types of this package (GUID, SID, HexInt32, HexInt64, SystemTime)
// where the Go type alone is ambiguous; a nil value is written as Null through an optional
// substitution, which libevtx renders by omitting the element and package evtx reads back as nil.
package evtxwriter

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/quarry-dfir/quarry/evtx"
)

const (
	fileHeaderSize  = 4096
	chunkSize       = 65536
	chunkHeaderSize = 512
	// chunkReserve is left free at the end of every chunk: libevtx (20181227) silently drops a chunk's
	// last record when fewer than 4 bytes follow it, so a chunk is never filled to the last byte.
	chunkReserve = 8
	// MaxRecordSize is the largest record, template definition included, that fits in an empty chunk.
	MaxRecordSize = chunkSize - chunkHeaderSize - chunkReserve
	maxChunks     = math.MaxUint16 // the file header counts chunks in 16 bits
)

// ErrClosed is returned by Write and Close after Close.
var ErrClosed = errors.New("evtxwriter: writer closed")

// Writer writes one EVTX file. It is not safe for concurrent use.
type Writer struct {
	w     io.WriteSeeker
	start int64 // offset of the file header in w
	err   error // sticky: once writing failed the file is not trusted further

	chunk    []byte
	free     int    // free space offset in chunk
	nrec     int    // records in chunk
	first    uint64 // first record id in chunk
	last     uint64 // last record id in chunk
	lastOff  int    // offset of the last record in chunk
	nchunks  int    // chunks written to w
	lastID   uint64 // last record id written to the file
	nrecords uint64

	names       map[string]uint32 // element and attribute names defined in this chunk
	nameBuckets [64]uint32
	templates   map[string]tmplRef // template definitions of this chunk, by shape key
	tmplBuckets [32]uint32

	b recordBuilder
}

// tmplRef locates a template definition in the chunk.
type tmplRef struct{ off, id uint32 }

// New writes a provisional file header to w at its current offset and returns a Writer that appends
// chunks after it. Close must be called to complete the file.
func New(w io.WriteSeeker) (*Writer, error) {
	start, err := w.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("evtxwriter: %w", err)
	}
	wr := &Writer{
		w:         w,
		start:     start,
		chunk:     make([]byte, chunkSize),
		free:      chunkHeaderSize,
		names:     map[string]uint32{},
		templates: map[string]tmplRef{},
	}
	wr.b.w = wr
	if err := wr.writeHeader(true); err != nil {
		return nil, err
	}
	return wr, nil
}

// WriteFile writes events to a new file at path (replaced if it exists), through a temporary file in
// the same folder renamed into place, so that a reader never sees a half-written log.
func WriteFile(path string, events []evtx.Event) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".evtx-*")
	if err != nil {
		return fmt.Errorf("evtxwriter: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(0o644) // CreateTemp's 0600 would make the log unreadable to other tools
	if err == nil {
		err = writeAll(f, events)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func writeAll(f *os.File, events []evtx.Event) error {
	w, err := New(f)
	if err != nil {
		return err
	}
	for i := range events {
		if err := w.Write(events[i]); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("evtxwriter: %w", err)
	}
	return nil
}

// Records returns the number of records written so far.
func (w *Writer) Records() uint64 { return w.nrecords }

// Size returns the bytes written to the file so far: the header and the completed chunks. The chunk
// being filled adds 64 KiB at the next chunk boundary or at Close.
func (w *Writer) Size() int64 { return fileHeaderSize + int64(w.nchunks)*chunkSize }

// LastRecordID returns the id of the last record written, 0 before the first.
func (w *Writer) LastRecordID() uint64 { return w.lastID }

// Write appends one event. A zero RecordID gets the previous record's id plus one (1 for the first);
// explicit ids must increase. An event that cannot be written faithfully — a value of an unsupported
// type or over 65535 bytes, a malformed GUID or SID, a time before 1601, a record larger than a chunk —
// is refused with an error and leaves the file as it was, so the caller may skip it and go on. Errors
// from the underlying writer are sticky.
func (w *Writer) Write(e evtx.Event) error {
	if w.err != nil {
		return w.err
	}
	id := e.RecordID
	if id == 0 {
		id = w.lastID + 1
	} else if id <= w.lastID {
		return fmt.Errorf("evtxwriter: record id %d not above the previous id %d", id, w.lastID)
	}
	if err := w.b.plan(&e, id); err != nil {
		return fmt.Errorf("evtxwriter: record %d: %w", id, err)
	}
	rec := w.b.build(w.free)
	if len(rec) > chunkSize-chunkReserve-w.free {
		if w.nrec == 0 {
			return fmt.Errorf("evtxwriter: record %d: %d bytes, more than the %d a chunk holds", id, len(rec), MaxRecordSize)
		}
		if err := w.flushChunk(); err != nil {
			return err
		}
		// Names and the template must be defined again in the new chunk.
		if rec = w.b.build(w.free); len(rec) > MaxRecordSize {
			return fmt.Errorf("evtxwriter: record %d: %d bytes, more than the %d a chunk holds", id, len(rec), MaxRecordSize)
		}
	}
	w.commit(rec, id)
	return nil
}

// commit places a built record in the chunk and makes its new names and template visible to later
// records.
func (w *Writer) commit(rec []byte, id uint64) {
	copy(w.chunk[w.free:], rec)
	for _, n := range w.b.newNames {
		w.names[n.name] = n.off
	}
	w.nameBuckets = w.b.nameBuckets
	if w.b.newTemplate {
		w.templates[string(w.b.key)] = tmplRef{off: w.b.tmplOff, id: w.b.tmplID}
		w.tmplBuckets = w.b.tmplBuckets
	}
	if w.nrec == 0 {
		w.first = id
	}
	w.last = id
	w.lastOff = w.free
	w.free += len(rec)
	w.nrec++
	w.lastID = id
	w.nrecords++
}

// flushChunk completes the chunk header, writes the chunk and starts an empty one.
func (w *Writer) flushChunk() error {
	if w.nrec == 0 {
		return nil
	}
	if w.nchunks >= maxChunks {
		w.err = fmt.Errorf("evtxwriter: more than %d chunks (the format's limit)", maxChunks)
		return w.err
	}
	c := w.chunk
	le := binary.LittleEndian
	copy(c, "ElfChnk\x00")
	// Record numbers and record ids are the same here: every record this writer emits is numbered by id.
	le.PutUint64(c[8:], w.first)
	le.PutUint64(c[16:], w.last)
	le.PutUint64(c[24:], w.first)
	le.PutUint64(c[32:], w.last)
	le.PutUint32(c[40:], 128)
	le.PutUint32(c[44:], uint32(w.lastOff))
	le.PutUint32(c[48:], uint32(w.free))
	le.PutUint32(c[52:], crc32.ChecksumIEEE(c[chunkHeaderSize:w.free]))
	// Windows sets this flag word to 1 in every chunk it writes.
	le.PutUint32(c[120:], 1)
	for i, off := range w.nameBuckets {
		le.PutUint32(c[128+4*i:], off)
	}
	for i, off := range w.tmplBuckets {
		le.PutUint32(c[384+4*i:], off)
	}
	h := crc32.ChecksumIEEE(c[:120])
	h = crc32.Update(h, crc32.IEEETable, c[128:chunkHeaderSize])
	le.PutUint32(c[124:], h)
	if _, err := w.w.Write(c); err != nil {
		w.err = fmt.Errorf("evtxwriter: write chunk %d: %w", w.nchunks, err)
		return w.err
	}
	w.nchunks++
	clear(w.chunk)
	w.free = chunkHeaderSize
	w.nrec = 0
	clear(w.names)
	clear(w.templates)
	w.nameBuckets = [64]uint32{}
	w.tmplBuckets = [32]uint32{}
	return nil
}

// writeHeader writes the file header at the start offset; the caller restores the position if needed.
func (w *Writer) writeHeader(dirty bool) error {
	h := make([]byte, fileHeaderSize)
	le := binary.LittleEndian
	copy(h, "ElfFile\x00")
	le.PutUint64(h[8:], 0) // first chunk number
	if w.nchunks > 0 {
		le.PutUint64(h[16:], uint64(w.nchunks-1))
	}
	le.PutUint64(h[24:], w.lastID+1) // next record id
	le.PutUint32(h[32:], 128)
	le.PutUint16(h[36:], 1) // minor version
	le.PutUint16(h[38:], 3) // major version
	le.PutUint16(h[40:], fileHeaderSize)
	le.PutUint16(h[42:], uint16(w.nchunks))
	if dirty {
		le.PutUint32(h[120:], 1)
	}
	le.PutUint32(h[124:], crc32.ChecksumIEEE(h[:120]))
	if _, err := w.w.Seek(w.start, io.SeekStart); err != nil {
		return fmt.Errorf("evtxwriter: seek to header: %w", err)
	}
	if _, err := w.w.Write(h); err != nil {
		return fmt.Errorf("evtxwriter: write header: %w", err)
	}
	return nil
}

// Close writes the last chunk and the final file header, and leaves w positioned at the end of the
// file. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.flushChunk(); err != nil {
		return err
	}
	if err := w.writeHeader(false); err != nil {
		w.err = err
		return err
	}
	end := w.start + fileHeaderSize + int64(w.nchunks)*chunkSize
	if _, err := w.w.Seek(end, io.SeekStart); err != nil {
		w.err = fmt.Errorf("evtxwriter: seek to end: %w", err)
		return w.err
	}
	w.err = ErrClosed
	return nil
}

// templateGUID derives a template's GUID from its shape, so that the same shape gets the same GUID in
// every chunk and every file, as a manifest-defined template does on Windows.
func templateGUID(key []byte) [16]byte {
	s := sha256.Sum256(key)
	var g [16]byte
	copy(g[:], s[:16])
	return g
}

// nameHash is the 16-bit hash Windows stores with each name: the low bits of a multiplicative hash
// (factor 65599) over the UTF-16 code units.
func nameHash(s string) uint16 {
	var h uint32
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16Pair(r)
			h = h*65599 + uint32(r1)
			h = h*65599 + uint32(r2)
			continue
		}
		h = h*65599 + uint32(r)
	}
	return uint16(h)
}

// fileTimeOf is fileTime for a record header, where the event time is mandatory.
func fileTimeOf(t time.Time) (uint64, error) {
	if t.IsZero() {
		return 0, errors.New("event time not set")
	}
	return fileTime(t)
}
