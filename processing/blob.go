package processing

import (
	"context"
	"fmt"
	"io"
	"sync"

	"gocloud.dev/blob"
)

// blobReaderAt gives random access to a stored package through ranged reads, with a small cache of
// blocks: the zip reader jumps between the central directory and the entries, and parsers read
// forward, so a few blocks serve nearly every read from memory while an object store sees one
// request per block.
type blobReaderAt struct {
	ctx    context.Context
	bucket *blob.Bucket
	key    string
	size   int64

	mu    sync.Mutex
	tick  int64
	cache map[int64]*block
}

type block struct {
	data []byte
	used int64
}

const (
	blockSize   = 1 << 20
	cacheBlocks = 16
)

func newBlobReaderAt(ctx context.Context, b *blob.Bucket, key string) (*blobReaderAt, error) {
	attrs, err := b.Attributes(ctx, key)
	if err != nil {
		return nil, err
	}
	return &blobReaderAt{ctx: ctx, bucket: b, key: key, size: attrs.Size, cache: map[int64]*block{}}, nil
}

func (r *blobReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blob %s: negative offset", r.key)
	}
	n := 0
	for n < len(p) {
		if off >= r.size {
			return n, io.EOF
		}
		b, err := r.block(off / blockSize)
		if err != nil {
			return n, err
		}
		i := int(off % blockSize)
		if i >= len(b) {
			return n, io.EOF
		}
		c := copy(p[n:], b[i:])
		n += c
		off += int64(c)
	}
	return n, nil
}

func (r *blobReaderAt) block(idx int64) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tick++
	if b := r.cache[idx]; b != nil {
		b.used = r.tick
		return b.data, nil
	}
	start := idx * blockSize
	length := min(int64(blockSize), r.size-start)
	rr, err := r.bucket.NewRangeReader(r.ctx, r.key, start, length, nil)
	if err != nil {
		return nil, fmt.Errorf("blob %s: read at %d: %w", r.key, start, err)
	}
	defer rr.Close()
	data := make([]byte, length)
	if _, err := io.ReadFull(rr, data); err != nil {
		return nil, fmt.Errorf("blob %s: read at %d: %w", r.key, start, err)
	}
	if len(r.cache) >= cacheBlocks {
		var oldest int64 = -1
		for k, b := range r.cache {
			if oldest < 0 || b.used < r.cache[oldest].used {
				oldest = k
			}
		}
		delete(r.cache, oldest)
	}
	r.cache[idx] = &block{data: data, used: r.tick}
	return data, nil
}
