package ntfs_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/fsaccess"
	"github.com/quarry-dfir/quarry/fsaccess/ntfs"
)

// image is an NTFS volume built by the test with Debian's ntfs-3g tools
// (mkntfs, ntfscp, ntfstruncate), which write an unmounted image directly.
type image struct {
	path  string
	files map[string][]byte // path inside the volume → content
	built time.Time
}

const sparseSize = 128 << 20 // twice the volume: only possible if sparse

// buildImage makes a 64 MiB volume holding a few files, a named stream and a
// sparse file larger than the volume itself.
func buildImage(tb testing.TB) *image {
	tb.Helper()
	for _, tool := range []string{"mkntfs", "ntfscp", "ntfstruncate", "ntfsls"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("%s not installed (Debian package ntfs-3g): %v", tool, err)
			}
			tb.Skipf("%s not installed (Debian package ntfs-3g)", tool)
		}
	}
	dir := tb.TempDir()
	img := &image{path: filepath.Join(dir, "volume.img"), files: map[string][]byte{}, built: time.Now()}
	run := func(name string, args ...string) string {
		tb.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if err := os.WriteFile(img.path, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(img.path, 64<<20); err != nil {
		tb.Fatal(err)
	}
	run("mkntfs", "-F", "-Q", "-q", img.path)

	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	put := func(name, stream string, content []byte) {
		tb.Helper()
		src := filepath.Join(dir, "src")
		if err := os.WriteFile(src, content, 0o600); err != nil {
			tb.Fatal(err)
		}
		args := []string{"-q"}
		key := name
		if stream != "" {
			args = append(args, "-N", stream)
			key += ":" + stream
		}
		run("ntfscp", append(args, img.path, src, "/"+name)...)
		img.files[key] = content
	}
	put("Hello.TXT", "", []byte("hello from quarry\n")) // resident
	put("hive.bin", "", random(3<<20+17))               // non-resident, several runs
	put("empty.dat", "", nil)                           // zero length
	put("Hello.TXT", "Zone.Identifier", []byte("[ZoneTransfer]\r\nZoneId=3\r\n"))
	put("sparse.bin", "", random(100_000))

	// Extending sparse.bin past the end of the volume only works with a
	// sparse run: reading it must stream zeros, not allocate them.
	var inode string
	for _, line := range strings.Split(run("ntfsls", "-i", img.path), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == "sparse.bin" {
			inode = f[0]
		}
	}
	if inode == "" {
		tb.Fatal("ntfsls did not list sparse.bin")
	}
	run("ntfstruncate", "-q", img.path, inode, "0x80", strconv.Itoa(sparseSize))
	img.files["sparse.bin"] = append(img.files["sparse.bin"], make([]byte, sparseSize-100_000)...)
	return img
}

func openImage(tb testing.TB, img *image) *ntfs.Accessor {
	tb.Helper()
	f, err := os.Open(img.path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	a, err := ntfs.New(f, "c:")
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return a
}

func readAll(tb testing.TB, a fsaccess.Accessor, path string) []byte {
	tb.Helper()
	f, err := a.Open(path)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return b
}

func TestAccessor(t *testing.T) {
	img := buildImage(t)
	a := openImage(t, img)

	if got := a.Roots(); len(got) != 1 || got[0] != `C:\` {
		t.Errorf("Roots() = %q, want [C:\\]", got)
	}

	t.Run("ReadFiles", func(t *testing.T) {
		for _, tc := range []struct{ path, key, name string }{
			{`C:\Hello.TXT`, "Hello.TXT", "Hello.TXT"},
			{`c:\HELLO.txt`, "Hello.TXT", "Hello.TXT"},
			{`C:/hive.bin`, "hive.bin", "hive.bin"},
			{`C:\empty.dat`, "empty.dat", "empty.dat"},
			{`C:\Hello.TXT:Zone.Identifier`, "Hello.TXT:Zone.Identifier", "Hello.TXT:Zone.Identifier"},
			{`C:\hello.txt:zone.identifier:$DATA`, "Hello.TXT:Zone.Identifier", "Hello.TXT:Zone.Identifier"},
		} {
			want := img.files[tc.key]
			got := readAll(t, a, tc.path)
			if sha256.Sum256(got) != sha256.Sum256(want) || len(got) != len(want) {
				t.Errorf("Open(%s): read %d bytes with another SHA-256, want %d bytes", tc.path, len(got), len(want))
			}
			fi, err := a.Lstat(tc.path)
			if err != nil {
				t.Fatalf("Lstat(%s): %v", tc.path, err)
			}
			if fi.Size != int64(len(want)) || fi.Name != tc.name || !fi.Mode.IsRegular() || fi.ReadVia != "ntfs" {
				t.Errorf("Lstat(%s) = size %d name %q mode %v via %q, want %d %q regular ntfs", tc.path, fi.Size, fi.Name, fi.Mode, fi.ReadVia, len(want), tc.name)
			}
		}
	})

	t.Run("Timestamps", func(t *testing.T) {
		fi, err := a.Lstat(`C:\hive.bin`)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := img.built.Add(-time.Minute), time.Now().Add(time.Minute)
		for name, ts := range map[string]time.Time{"mtime": fi.ModTime, "atime": fi.AccessTime, "ctime": fi.ChangeTime, "btime": fi.BirthTime} {
			if ts.Before(lo) || ts.After(hi) || ts.Location() != time.UTC {
				t.Errorf("Lstat(hive.bin) %s = %v, want UTC between %v and %v", name, ts, lo, hi)
			}
		}
	})

	t.Run("MFT", func(t *testing.T) {
		f, err := a.Open(`C:\$MFT`)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		if fi.Size < 16*1024 {
			t.Fatalf("$MFT size = %d, want at least 16 records", fi.Size)
		}
		head := make([]byte, 4)
		if _, err := f.ReadAt(head, 5*1024); err != nil || string(head) != "FILE" {
			t.Errorf("$MFT record 5 starts with %q (%v), want FILE", head, err)
		}
		n, err := io.Copy(io.Discard, f)
		if err != nil || n != fi.Size {
			t.Errorf("copy $MFT = %d, %v; want %d bytes", n, err, fi.Size)
		}
	})

	t.Run("ReadDir", func(t *testing.T) {
		for _, tc := range []struct {
			dir  string
			want []string
		}{
			{`C:\`, []string{"$MFT", "$Extend", "Hello.TXT", "hive.bin", "empty.dat", "sparse.bin"}},
			{`C:\$EXTEND`, []string{"$ObjId", "$Quota", "$Reparse"}},
		} {
			infos, err := a.ReadDir(tc.dir)
			if err != nil {
				t.Fatalf("ReadDir(%s): %v", tc.dir, err)
			}
			byName := map[string]fsaccess.FileInfo{}
			for _, fi := range infos {
				if _, dup := byName[fi.Name]; dup {
					t.Errorf("ReadDir(%s) lists %q twice", tc.dir, fi.Name)
				}
				byName[fi.Name] = fi
			}
			for _, name := range tc.want {
				if _, ok := byName[name]; !ok {
					t.Errorf("ReadDir(%s) lacks %q; got %d entries", tc.dir, name, len(infos))
				}
			}
			if fi := byName["hive.bin"]; tc.dir == `C:\` && (fi.Size != int64(len(img.files["hive.bin"])) || fi.Path != `C:\hive.bin`) {
				t.Errorf("ReadDir(C:\\) hive.bin = %+v, want size %d path C:\\hive.bin", fi, len(img.files["hive.bin"]))
			}
			if fi := byName["$Extend"]; tc.dir == `C:\` && !fi.Mode.IsDir() {
				t.Errorf("ReadDir(C:\\) $Extend mode = %v, want a directory", fi.Mode)
			}
		}
	})

	t.Run("Errors", func(t *testing.T) {
		for _, path := range []string{`C:\missing.txt`, `C:\Hello.TXT\below`, `C:\Hello.TXT:nostream`, `D:\Hello.TXT`, `C:\$Extend\$UsnJrnl:$J`} {
			if _, err := a.Open(path); !errors.Is(err, fsaccess.ErrNotExist) {
				t.Errorf("Open(%s) error = %v, want ErrNotExist", path, err)
			}
			if _, err := a.Lstat(path); !errors.Is(err, fsaccess.ErrNotExist) {
				t.Errorf("Lstat(%s) error = %v, want ErrNotExist", path, err)
			}
		}
		if _, err := a.Open(`C:\$Extend`); err == nil {
			t.Error("Open(directory) succeeded, want an error")
		}
		if _, err := a.ReadDir(`C:\Hello.TXT`); err == nil {
			t.Error("ReadDir(file) succeeded, want an error")
		}
	})

	t.Run("SparseStreams", func(t *testing.T) {
		f, err := a.Open(`C:\sparse.bin`)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h := sha256.New()
		n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
		runtime.ReadMemStats(&after)
		if err != nil || n != sparseSize {
			t.Fatalf("copy sparse.bin = %d, %v; want %d", n, err, sparseSize)
		}
		if !bytes.Equal(h.Sum(nil), sum(img.files["sparse.bin"])) {
			t.Error("sparse.bin SHA-256 differs from the content written")
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
			t.Errorf("reading a %d MiB sparse file allocated %d MiB, want it streamed", sparseSize>>20, alloc>>20)
		}
		// Seek and read across the data/sparse boundary.
		if _, err := f.Seek(99_990, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 20)
		if _, err := io.ReadFull(f, buf); err != nil || !bytes.Equal(buf, img.files["sparse.bin"][99_990:100_010]) {
			t.Errorf("read at 99990 = %x, %v; want %x", buf, err, img.files["sparse.bin"][99_990:100_010])
		}
	})
}

func sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// lockedOS stands in for Windows refusing to share a file: it forwards to a
// real folder-backed accessor but reports the chosen names as locked.
type lockedOS struct {
	fsaccess.Accessor
	locked string
}

func (l lockedOS) Open(path string) (fsaccess.File, error) {
	if strings.EqualFold(path, l.locked) {
		return nil, fsaccess.ErrLocked
	}
	return l.Accessor.Open(path)
}

func TestFallback(t *testing.T) {
	img := buildImage(t)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "C"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"Hello.TXT": "the os copy\n", "hive.bin": "locked\n"} {
		if err := os.WriteFile(filepath.Join(root, "C", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	osAcc, err := fsaccess.NewOS("windows", root)
	if err != nil {
		t.Fatal(err)
	}

	opens := 0
	open := func(drive string) (io.ReaderAt, error) {
		opens++
		if drive != "C:" {
			return nil, errors.New("no such volume")
		}
		return os.Open(img.path)
	}
	a := ntfs.Fallback(lockedOS{osAcc, `C:\hive.bin`}, open)
	defer a.(io.Closer).Close()

	for _, tc := range []struct {
		path, via string
		want      []byte
		opens     int
	}{
		{`C:\Hello.TXT`, "os", []byte("the os copy\n"), 0},
		{`C:\hive.bin`, "ntfs", img.files["hive.bin"], 1},
		{`C:\$MFT`, "ntfs", nil, 1},
		{`c:\$mftmirr`, "ntfs", nil, 1},
	} {
		f, err := a.Open(tc.path)
		if err != nil {
			t.Fatalf("Open(%s): %v", tc.path, err)
		}
		fi, _ := f.Stat()
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatalf("read %s: %v", tc.path, err)
		}
		if fi.ReadVia != tc.via || (tc.want != nil && !bytes.Equal(got, tc.want)) || int64(len(got)) != fi.Size {
			t.Errorf("Open(%s) read %d bytes via %q, want %d bytes via %q", tc.path, len(got), fi.ReadVia, len(tc.want), tc.via)
		}
		if opens != tc.opens {
			t.Errorf("after Open(%s) the volume was opened %d times, want %d", tc.path, opens, tc.opens)
		}
	}

	if _, err := a.Open(`C:\missing`); !errors.Is(err, fsaccess.ErrNotExist) {
		t.Errorf("Open(missing) error = %v, want ErrNotExist from the OS", err)
	}
	// A volume that cannot be opened leaves the caller the OS's verdict.
	b := ntfs.Fallback(lockedOS{osAcc, `D:\x`}, open)
	if _, err := b.Open(`D:\x`); !errors.Is(err, fsaccess.ErrLocked) {
		t.Errorf("Open(D:\\x) with no raw volume: error = %v, want ErrLocked", err)
	}
	if fi, err := a.Lstat(`C:\$MFT`); err != nil || fi.ReadVia != "ntfs" || fi.Size == 0 {
		t.Errorf("Lstat($MFT) = %+v, %v; want a non-empty file read via ntfs", fi, err)
	}
	if infos, err := a.ReadDir(`C:\$Extend`); err != nil || len(infos) < 3 {
		t.Errorf("ReadDir($Extend) = %d entries, %v; want $ObjId, $Quota, $Reparse", len(infos), err)
	}
}

// seedImage is a 2 MiB volume (mkntfs -c 512) with a resident file, a named
// stream and a non-resident file, kept gzipped in testdata so fuzzing needs
// no tools.
func seedImage(tb testing.TB) []byte {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", "small.img.gz"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzNew damages the seed volume — the input is an offset and the bytes to
// write there, or a length to cut it to — and then opens and walks it. It
// must never panic, hang or allocate without bound.
func FuzzNew(f *testing.F) {
	img := seedImage(f)
	const mft = 16384 // $MFT of the seed image: cluster 32 of 512 bytes
	for _, seed := range []struct {
		off   uint32
		cut   bool
		patch []byte
	}{
		{0, false, nil},                            // intact
		{0, true, nil},                             // empty
		{600 * 1024, true, nil},                    // cut inside the data
		{mft + 40*1024, true, nil},                 // cut inside the $MFT
		{3, false, []byte("XXXXXXXX")},             // bad OEM id
		{11, false, []byte{0, 0}},                  // zero bytes per sector
		{13, false, []byte{0xff}},                  // huge cluster
		{48, false, bytes.Repeat([]byte{0xff}, 8)}, // $MFT beyond the end
		{mft + 20, false, []byte{0xf0, 0x03}},      // attribute offset of record 0 out of range
		{mft + 5*1024 + 0x18, false, []byte{0xff, 0xff, 0xff, 0xff}},
		{mft + 64*1024 + 0x98, false, bytes.Repeat([]byte{0xff}, 16)},
		{mft + 5*1024, false, bytes.Repeat([]byte{0x41}, 1024)},
	} {
		data := binary.LittleEndian.AppendUint32(nil, seed.off)
		flag := byte(0)
		if seed.cut {
			flag = 1
		}
		f.Add(append(append(data, flag), seed.patch...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 5 {
			return
		}
		vol := bytes.Clone(img)
		off := int(binary.LittleEndian.Uint32(in) % uint32(len(vol)))
		if in[4]&1 == 1 {
			vol = vol[:off]
		} else {
			copy(vol[off:], in[5:])
		}
		a, err := ntfs.New(bytes.NewReader(vol), "C:")
		if err != nil {
			return
		}
		budget := 200
		walk(a, `C:\`, &budget)
		if f, err := a.Open(`C:\seed.txt:Zone.Identifier`); err == nil {
			io.Copy(io.Discard, f)
		}
	})
}

// walk reads every file and stream it can reach, within a budget of calls
// so a damaged volume's size cannot make one input run for minutes.
func walk(a *ntfs.Accessor, dir string, budget *int) {
	*budget--
	if *budget < 0 {
		return
	}
	infos, err := a.ReadDir(dir)
	if err != nil {
		return
	}
	for _, fi := range infos {
		if *budget--; *budget < 0 {
			return
		}
		if fi.Mode.IsDir() {
			walk(a, fi.Path, budget)
			continue
		}
		if f, err := a.Open(fi.Path); err == nil {
			io.Copy(io.Discard, io.LimitReader(f, 4<<20))
			f.Close()
		}
	}
}
