package evtx

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds returns small chunks to start from: chunks built by the tests'
// builder (every value type, arrays, nested UserData, template reuse) cut
// at their free space offset, and the first chunk of a few corpus files
// when the corpus is there.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	cut := func(c []byte) []byte {
		free := int(binary.LittleEndian.Uint32(c[48:]))
		return append([]byte(nil), c[:free]...)
	}
	seeds = append(seeds, cut(simpleChunk(1, 3, nil)))

	var data []tok
	subs := systemValues(1)
	for i, c := range typedCases {
		data = append(data, elem("Data", []attr{{"Name", []tok{text(c.name)}}}, sub(uint16(10+i), c.v.typ)))
		subs = append(subs, c.v)
	}
	cb := newChunkBuilder()
	cb.record(1, 133000000000000000, func(c *chunkBuilder) {
		c.instance(0, elem("Event", nil, systemTemplate(), elem("EventData", nil, data...)), subs)
	})
	inner := elem("LogFileCleared", nil, elem("SubjectUserName", nil, sub(0, typeString)))
	cb.record(2, 133000000000000000, func(c *chunkBuilder) {
		c.instance(0, elem("Event", nil, systemTemplate(), elem("UserData", nil, sub(10, typeBinXML))),
			append(systemValues(2), sv{typ: typeBinXML, write: func(c *chunkBuilder) {
				c.b = append(c.b, tokFragmentStart, 1, 1, 0)
				c.instance(0, inner, []sv{vString("alice")})
				c.u8(tokEOF)
			}}))
	})
	seeds = append(seeds, cut(cb.finish(nil)))

	// Small real chunks only (a few KB): the fuzzer minimises interesting
	// inputs byte by byte, which takes minutes on a full 64 KiB chunk.
	for _, dir := range []string{"sigma/regression_data/rules/windows/builtin", "sigma/regression_data/rules/windows/process_creation"} {
		root := findCorpus(dir)
		if root == "" {
			continue
		}
		n := 0
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Ext(p) != ".evtx" || n >= 3 {
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil && len(b) >= fileHeaderSize+chunkHeaderSize && binary.LittleEndian.Uint32(b[fileHeaderSize+48:]) < 8192 {
				seeds = append(seeds, cut(b[fileHeaderSize:min(len(b), fileHeaderSize+chunkSize)]))
				n++
			}
			return nil
		})
	}
	return seeds
}

// findCorpus is corpusDir without failing or skipping: fuzz seeds are
// optional.
func findCorpus(sub string) string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, "shared", "corpus", sub)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// exercise renders every record every way; it must not panic.
func exercise(rec *Record) {
	rec.AppendJSON(nil)
	rec.AppendXML(nil)
	rec.Event()
}

// FuzzChunk feeds arbitrary bytes to the chunk decoder as one chunk, with
// checksums off (so mutations get past them) and slack recovery on.
func FuzzChunk(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > chunkSize {
			data = data[:chunkSize]
		}
		o := options{recovery: true, json: true}
		res := decodeChunk(data, 0, fileHeaderSize, &o, nil)
		for i := range res.entries {
			if res.entries[i].err == nil {
				exercise(&res.entries[i].rec)
			}
		}
	})
}

// FuzzBinXML decodes binary XML at an arbitrary offset of a chunk-like
// buffer (names and templates are referenced by chunk offset).
func FuzzBinXML(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		// Seed with the binary XML of the first record.
		if len(s) > chunkHeaderSize+recordHeader {
			f.Add(s, uint16(chunkHeaderSize+recordHeader))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, start uint16) {
		if len(data) == 0 || len(data) > chunkSize {
			return
		}
		p := newChunkParser(data, 0)
		c := cursor{p: p, pos: int(start) % len(data), end: len(data)}
		frag := p.parseFragment(&c, 0)
		if c.err != nil || frag == nil {
			return
		}
		exercise(&Record{frag: frag})
	})
}
