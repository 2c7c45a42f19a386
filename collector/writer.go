package collector

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"sync"
	"time"
)

// copyChunk is the unit of streaming: memory per file is this buffer plus the deflate state, whatever
// the file's size.
const copyChunk = 256 << 10

// hashWriter hashes and counts the package bytes exactly as they go to the output.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

// flatePool reuses deflate state (about 1 MB each) across entries.
var flatePool sync.Pool

type pooledFlate struct{ *flate.Writer }

func (p pooledFlate) Close() error {
	err := p.Writer.Close()
	flatePool.Put(p.Writer)
	return err
}

// packageWriter writes the zip package, one entry at a time.
type packageWriter struct {
	hw    *hashWriter
	zw    *zip.Writer
	names map[string]bool
	buf   []byte
}

func newPackageWriter(out io.Writer) *packageWriter {
	hw := &hashWriter{w: out, h: sha256.New()}
	zw := zip.NewWriter(hw)
	// Speed over ratio: the collector runs on a busy, possibly compromised host.
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		if fw, ok := flatePool.Get().(*flate.Writer); ok {
			fw.Reset(w)
			return pooledFlate{fw}, nil
		}
		fw, err := flate.NewWriter(w, flate.BestSpeed)
		return pooledFlate{fw}, err
	})
	return &packageWriter{hw: hw, zw: zw, names: map[string]bool{}, buf: make([]byte, copyChunk)}
}

// entryResult describes what add wrote.
type entryResult struct {
	SHA256      string
	Size        int64
	Compression string
	Truncated   bool  // more data than limit, or stopped early
	ReadErr     error // the source failed part-way; what was read is kept
}

// add streams r into a new entry called name, reading at most limit bytes (negative: no limit). It
// chooses store or deflate from the name and the first bytes, hashes while copying, and checks ctx
// between chunks. A write error is fatal to the package and returned; a read error is reported in the
// result and leaves a valid, shorter entry.
func (pw *packageWriter) add(ctx context.Context, name string, mtime time.Time, r io.Reader, limit int64) (entryResult, error) {
	var res entryResult
	if pw.names[name] {
		return res, fmt.Errorf("collector: duplicate entry %q", name)
	}
	pw.names[name] = true
	if limit >= 0 {
		r = io.LimitReader(r, limit+1)
	}
	n, rerr := io.ReadFull(r, pw.buf[:probeSize])
	head := pw.buf[:n]
	method, compression := zip.Deflate, "deflate"
	if compressed(name, head) || incompressible(head) {
		method, compression = zip.Store, "store"
	}
	if mtime.IsZero() {
		mtime = time.Now()
	}
	w, err := pw.zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: mtime.UTC()})
	if err != nil {
		return res, fmt.Errorf("collector: zip entry %q: %w", name, err)
	}
	h := sha256.New()
	write := func(p []byte) error {
		if limit >= 0 && res.Size+int64(len(p)) > limit {
			p = p[:limit-res.Size]
			res.Truncated = true
		}
		h.Write(p)
		res.Size += int64(len(p))
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("collector: write %q: %w", name, err)
		}
		return nil
	}
	if err := write(head); err != nil {
		return res, err
	}
	if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
		rerr = nil
	} else if rerr == nil {
		for !res.Truncated {
			if ctx.Err() != nil {
				res.Truncated = true
				break
			}
			n, err := r.Read(pw.buf)
			if n > 0 {
				if werr := write(pw.buf[:n]); werr != nil {
					return res, werr
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				rerr = err
				break
			}
		}
	}
	if rerr != nil {
		res.ReadErr = rerr
		res.Truncated = true
	}
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	res.Compression = compression
	return res, nil
}

// addBytes writes a small in-memory entry (manifest, log, live state).
func (pw *packageWriter) addBytes(name string, mtime time.Time, b []byte) (entryResult, error) {
	return pw.add(context.Background(), name, mtime, bytes.NewReader(b), -1)
}

// close finishes the zip and returns the package's hash and size.
func (pw *packageWriter) close() (string, int64, error) {
	if err := pw.zw.Close(); err != nil {
		return "", 0, fmt.Errorf("collector: finish zip: %w", err)
	}
	return hex.EncodeToString(pw.hw.h.Sum(nil)), pw.hw.n, nil
}

// probeSize is how much of a file decides between store and deflate.
const probeSize = 64 << 10

// countWriter counts and drops what is written.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// incompressible reports whether the first bytes of a file (unknown formats: encrypted payloads, packed
// executables, random data) deflate by less than 3%; deflating the rest would burn CPU for nothing.
func incompressible(head []byte) bool {
	if len(head) < 4096 {
		return false
	}
	var c countWriter
	fw, _ := flatePool.Get().(*flate.Writer)
	if fw == nil {
		fw, _ = flate.NewWriter(&c, flate.BestSpeed)
	} else {
		fw.Reset(&c)
	}
	fw.Write(head)
	fw.Close()
	flatePool.Put(fw)
	return int64(c) > int64(len(head))*97/100
}

var storedExt = map[string]bool{
	".zip": true, ".gz": true, ".tgz": true, ".zst": true, ".xz": true, ".7z": true, ".bz2": true,
	".rar": true, ".cab": true, ".jpg": true, ".jpeg": true, ".png": true, ".gif": true, ".webp": true,
	".mp4": true, ".mp3": true, ".docx": true, ".xlsx": true, ".pptx": true, ".jar": true, ".apk": true,
	".lz4": true, ".br": true, ".heic": true,
}

var storedMagic = [][]byte{
	[]byte("PK\x03\x04"), {0x1f, 0x8b}, {0x28, 0xb5, 0x2f, 0xfd}, []byte("\xfd7zXZ\x00"),
	[]byte("7z\xbc\xaf\x27\x1c"), {0xff, 0xd8, 0xff}, []byte("\x89PNG"), []byte("BZh"), []byte("Rar!"),
	[]byte("MSCF"), []byte("GIF8"), {0x04, 0x22, 0x4d, 0x18},
}

// compressed reports whether data is already compressed, so deflating it again would only cost CPU.
// EVTX, hives and databases compress well and are deflated.
func compressed(name string, head []byte) bool {
	if storedExt[strings.ToLower(path.Ext(name))] {
		return true
	}
	for _, m := range storedMagic {
		if bytes.HasPrefix(head, m) {
			return true
		}
	}
	return false
}

var errStop = errors.New("collector: stopped")
