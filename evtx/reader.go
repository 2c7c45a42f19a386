package evtx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"runtime"
)

type options struct {
	workers   int
	recovery  bool
	checksums bool
	json      bool
}

// Option configures a Reader.
type Option func(*options)

// WithWorkers sets how many chunks are decoded at the same time (default
// GOMAXPROCS). Records still come out in file order.
func WithWorkers(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.workers = n
		}
	}
}

// WithRecovery makes the reader recover what it would otherwise skip:
// records in the slack space of each chunk (after its last record, left from
// an earlier use), the records of a chunk that fails its checksums (found by
// their signatures) and the whole records of a truncated last chunk. Such
// records have Record.Recovered set; the chunk's problem is still reported.
func WithRecovery(on bool) Option { return func(o *options) { o.recovery = on } }

// WithoutChecksums reads chunks whose CRC32 checksums do not match instead of
// reporting and skipping them.
func WithoutChecksums() Option { return func(o *options) { o.checksums = false } }

// WithJSON makes the workers render each record's JSON while decoding, so
// AppendJSON only copies it: the rendering then runs in parallel too. Use it
// when every record is going to be rendered.
func WithJSON() Option { return func(o *options) { o.json = true } }

// Reader reads the records of an EVTX file.
type Reader struct {
	r      io.ReaderAt
	size   int64
	header FileHeader
	opts   options
	closer io.Closer
}

// NewReader checks the file header of the size bytes of r and returns a
// Reader. The header's checksum, chunk count and flags are informational:
// chunks are found by their own signatures, as a dirty or truncated file's
// header may be stale.
func NewReader(r io.ReaderAt, size int64, opts ...Option) (*Reader, error) {
	rd := &Reader{r: r, size: size, opts: options{workers: runtime.GOMAXPROCS(0), checksums: true}}
	for _, o := range opts {
		o(&rd.opts)
	}
	buf := make([]byte, 128)
	if size < 128 {
		return nil, fmt.Errorf("evtx: %w", &FormatError{Offset: 0, Msg: fmt.Sprintf("file of %d bytes is too small for an EVTX header", size)})
	}
	if _, err := r.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("evtx: read header: %w", err)
	}
	h, err := parseFileHeader(buf)
	if err != nil {
		return nil, err
	}
	rd.header = h
	return rd, nil
}

// Open opens the EVTX file at path; Close releases it.
func Open(path string, opts ...Option) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("evtx: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("evtx: %w", err)
	}
	r, err := NewReader(f, st.Size(), opts...)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// Close closes the file opened by Open; it does nothing for NewReader.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// Header returns the file header.
func (r *Reader) Header() FileHeader { return r.header }

// Chunks returns the number of chunks in the file, counting a truncated last
// one.
func (r *Reader) Chunks() int {
	if r.size <= fileHeaderSize {
		return 0
	}
	return int((r.size - fileHeaderSize + chunkSize - 1) / chunkSize)
}

func (r *Reader) readChunk(i int) ([]byte, int64, error) {
	off := int64(fileHeaderSize) + int64(i)*chunkSize
	n := int64(chunkSize)
	if off+n > r.size {
		n = r.size - off
	}
	buf := make([]byte, n)
	m, err := r.r.ReadAt(buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(m) == n) {
		return nil, off, err
	}
	return buf, off, nil
}

func (r *Reader) chunk(i int, sc *scratch) chunkResult {
	buf, off, err := r.readChunk(i)
	if err != nil {
		return chunkResult{entries: []entry{{err: &ChunkError{Index: i, Offset: off, Err: err}}}}
	}
	return decodeChunk(buf, i, off, &r.opts, sc)
}

// Records returns the records in file order. A chunk that cannot be used
// (bad signature or checksum, read error) and a record that cannot be
// decoded are yielded as a *ChunkError or *RecordError with a nil record,
// and iteration goes on with the next one. Chunks are decoded by the
// configured number of workers; at most a few chunks per worker are held in
// memory at a time, whatever the size of the file. A *Record stays valid
// after the loop moves on (it keeps its chunk's memory alive while it is
// referenced). Stopping the loop or cancelling ctx stops the workers; a
// cancelled ctx is yielded as the last error.
func (r *Reader) Records(ctx context.Context) iter.Seq2[*Record, error] {
	return func(yield func(*Record, error) bool) {
		n := r.Chunks()
		if r.opts.workers <= 1 || n <= 1 {
			var sc scratch
			for i := 0; i < n; i++ {
				if ctx.Err() != nil {
					yield(nil, ctx.Err())
					return
				}
				res := r.chunk(i, &sc)
				if !yieldChunk(&res, yield) {
					return
				}
			}
			return
		}
		r.parallel(ctx, n, yield)
	}
}

func yieldChunk(res *chunkResult, yield func(*Record, error) bool) bool {
	for i := range res.entries {
		e := &res.entries[i]
		var ok bool
		if e.err != nil {
			ok = yield(nil, e.err)
		} else {
			ok = yield(&e.rec, nil)
		}
		if !ok {
			return false
		}
	}
	return true
}

type job struct {
	index int
	out   chan chunkResult
}

// parallel decodes chunks on worker goroutines. A dispatcher hands out chunk
// indexes and queues each chunk's result channel in file order; the
// consumer takes results from that queue, so output order is file order and
// the queue's capacity bounds the chunks in flight.
func (r *Reader) parallel(ctx context.Context, n int, yield func(*Record, error) bool) {
	w := r.opts.workers
	done := make(chan struct{})
	defer close(done)
	jobs := make(chan job)
	queue := make(chan chan chunkResult, 2*w)

	go func() {
		defer close(jobs)
		defer close(queue)
		for i := 0; i < n; i++ {
			out := make(chan chunkResult, 1)
			select {
			case queue <- out:
			case <-done:
				return
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{i, out}:
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	for k := 0; k < w; k++ {
		go func() {
			var sc scratch
			for j := range jobs {
				j.out <- r.chunk(j.index, &sc)
			}
		}()
	}
	for out := range queue {
		var res chunkResult
		select {
		case res = <-out:
		case <-ctx.Done():
			yield(nil, ctx.Err())
			return
		}
		if !yieldChunk(&res, yield) {
			return
		}
	}
	if ctx.Err() != nil {
		yield(nil, ctx.Err())
	}
}
