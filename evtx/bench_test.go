package evtx

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// benchFile is the largest real log of the corpus: System.evtx, 33 chunks,
// 5,009 records.
func benchFile(b *testing.B) (string, int64) {
	path := filepath.Join(corpusDir(b, "plaso/evtx"), "System.evtx")
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return path, st.Size()
}

func benchParse(b *testing.B, workers int, json bool) {
	path, size := benchFile(b)
	// EVTX_BENCH_FILE replaces the corpus file, for example with a large
	// generated log.
	if p := os.Getenv("EVTX_BENCH_FILE"); p != "" {
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		path, size = p, st.Size()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	ra := bytesReaderAt(data)
	opts := []Option{WithWorkers(workers)}
	if json {
		opts = append(opts, WithJSON())
	}
	b.SetBytes(size)
	b.ReportAllocs()
	records := 0
	var buf []byte
	for b.Loop() {
		r, err := NewReader(ra, size, opts...)
		if err != nil {
			b.Fatal(err)
		}
		for rec, err := range r.Records(context.Background()) {
			if err != nil {
				b.Fatal(err)
			}
			if json {
				buf = rec.AppendJSON(buf[:0])
			}
			records++
		}
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// BenchmarkParseJSON decodes every record and renders it to JSON (what
// `quarry parse` does), with one worker and with two.
func BenchmarkParseJSON1(b *testing.B) { benchParse(b, 1, true) }
func BenchmarkParseJSON2(b *testing.B) { benchParse(b, 2, true) }

// BenchmarkParseDecode decodes records without rendering them.
func BenchmarkParseDecode1(b *testing.B) { benchParse(b, 1, false) }
func BenchmarkParseDecode2(b *testing.B) { benchParse(b, 2, false) }

// BenchmarkParseSigmaJSON parses the 106 one-chunk Sigma regression files
// (140 records, mostly Sysmon) with JSON, one worker: small files, so it
// measures per-file and per-chunk costs (templates parsed anew per chunk).
func BenchmarkParseSigmaJSON(b *testing.B) {
	root := corpusDir(b, "sigma/regression_data")
	var files [][]byte
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(p) == ".evtx" {
			data, err := os.ReadFile(p)
			if err != nil {
				b.Fatal(err)
			}
			files = append(files, data)
		}
		return nil
	})
	b.ReportAllocs()
	records := 0
	var buf []byte
	for b.Loop() {
		for _, data := range files {
			r, err := NewReader(bytesReaderAt(data), int64(len(data)), WithWorkers(1), WithJSON())
			if err != nil {
				b.Fatal(err)
			}
			for rec, err := range r.Records(context.Background()) {
				if err != nil {
					b.Fatal(err)
				}
				buf = rec.AppendJSON(buf[:0])
				records++
			}
		}
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}
