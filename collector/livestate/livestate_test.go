package livestate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHasher(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	big := filepath.Join(dir, "big")
	os.WriteFile(small, []byte("tool"), 0o644)
	os.WriteFile(big, bytes.Repeat([]byte{1}, 100), 0o644)
	want := sha256.Sum256([]byte("tool"))

	h := newHasher()
	h.maxSize = 64
	opens := 0
	opener := func(path string) func() (*os.File, error) {
		return func() (*os.File, error) { opens++; return os.Open(path) }
	}
	ctx := context.Background()
	for range 3 {
		sum, problem := h.hash(ctx, "small", opener(small))
		if sum != hex.EncodeToString(want[:]) || problem != "" {
			t.Fatalf("hash(small) = %q, %q; want %x", sum, problem, want)
		}
	}
	if opens != 1 {
		t.Errorf("three hashes of one file opened it %d times, want 1", opens)
	}
	if sum, problem := h.hash(ctx, "big", opener(big)); sum != "" || !strings.Contains(problem, "limit") {
		t.Errorf("hash(big) = %q, %q; want no sum and a size problem", sum, problem)
	}
	if _, problem := h.hash(ctx, "gone", opener(filepath.Join(dir, "gone"))); problem == "" {
		t.Error("hash(missing file) has no problem")
	}

	// Once the budget is spent nothing more is hashed, and the miss is not
	// remembered as a property of the file.
	done, cancel := context.WithCancel(ctx)
	cancel()
	h2 := newHasher()
	if sum, problem := h2.hash(done, "small", opener(small)); sum != "" || !strings.Contains(problem, "budget") {
		t.Errorf("hash after the deadline = %q, %q; want a budget problem", sum, problem)
	}
	if sum, _ := h2.hash(ctx, "small", opener(small)); sum != hex.EncodeToString(want[:]) {
		t.Errorf("hash with time left after a budget miss = %q, want %x", sum, want)
	}
}

func TestParseWinTable(t *testing.T) {
	le := binary.LittleEndian
	port := func(p int) uint32 { return uint32(p>>8 | (p&0xff)<<8) }
	table := func(rows ...[]byte) []byte {
		b := le.AppendUint32(nil, uint32(len(rows)))
		for _, r := range rows {
			b = append(b, r...)
		}
		return b
	}
	words := func(vs ...uint32) []byte {
		var b []byte
		for _, v := range vs {
			b = le.AppendUint32(b, v)
		}
		return b
	}
	loop6 := make([]byte, 16)
	loop6[15] = 1
	tcp6 := append(append(append(append([]byte{}, loop6...), words(0, port(443))...), make([]byte, 16)...), words(0, 0, 2, 4242)...)
	udp6 := append(append([]byte{}, loop6...), words(0, port(53), 7)...)

	for _, tc := range []struct {
		proto string
		in    []byte
		want  []Connection
	}{
		{"tcp", table(words(5, 0x0100007f, port(50000), 0x0201a8c0, port(443), 1234)),
			[]Connection{{Proto: "tcp", LocalAddr: "127.0.0.1", LocalPort: 50000, RemoteAddr: "192.168.1.2", RemotePort: 443, State: "ESTABLISHED", PID: 1234}}},
		{"tcp", table(words(2, 0, port(445), 0, 0, 4)),
			[]Connection{{Proto: "tcp", LocalAddr: "0.0.0.0", LocalPort: 445, State: "LISTEN", PID: 4}}},
		{"tcp6", table(tcp6),
			[]Connection{{Proto: "tcp6", LocalAddr: "::1", LocalPort: 443, State: "LISTEN", PID: 4242}}},
		{"udp", table(words(0, port(137), 4), words(0x0100007f, port(5353), 9)),
			[]Connection{{Proto: "udp", LocalAddr: "0.0.0.0", LocalPort: 137, PID: 4}, {Proto: "udp", LocalAddr: "127.0.0.1", LocalPort: 5353, PID: 9}}},
		{"udp6", table(udp6),
			[]Connection{{Proto: "udp6", LocalAddr: "::1", LocalPort: 53, PID: 7}}},
	} {
		got, err := parseWinTable(tc.proto, tc.in)
		if err != nil {
			t.Fatalf("parseWinTable(%s): %v", tc.proto, err)
		}
		if !equalJSON(got, tc.want) {
			t.Errorf("parseWinTable(%s) = %+v, want %+v", tc.proto, got, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, {1, 0}, words(2, 5, 0, 0, 0, 0, 0), words(0xffffffff)} {
		if _, err := parseWinTable("tcp", bad); err == nil {
			t.Errorf("parseWinTable(% x) succeeded, want an error", bad)
		}
	}
}

func TestParseUtmp(t *testing.T) {
	record := func(typ int16, pid int32, line, user, host string, sec int32) []byte {
		r := make([]byte, utmpRecordSize)
		binary.LittleEndian.PutUint16(r[0:], uint16(typ))
		binary.LittleEndian.PutUint32(r[4:], uint32(pid))
		copy(r[8:40], line)
		copy(r[44:76], user)
		copy(r[76:332], host)
		binary.LittleEndian.PutUint32(r[340:], uint32(sec))
		return r
	}
	var in []byte
	in = append(in, record(2, 0, "~", "reboot", "6.1.0", 1700000000)...) // BOOT_TIME
	in = append(in, record(7, 812, "pts/0", "alice", "10.0.0.5", 1700000100)...)
	in = append(in, record(8, 900, "pts/1", "", "", 1700000200)...) // DEAD_PROCESS
	in = append(in, record(7, 901, "tty1", "root", "", 1700000300)...)

	got, err := parseUtmp(bytes.NewReader(in))
	want := []User{
		{Name: "alice", Terminal: "pts/0", Host: "10.0.0.5", PID: 812, LoginTime: time.Unix(1700000100, 0).UTC()},
		{Name: "root", Terminal: "tty1", PID: 901, LoginTime: time.Unix(1700000300, 0).UTC()},
	}
	if err != nil || !equalJSON(got, want) {
		t.Errorf("parseUtmp = %+v, %v; want %+v", got, err, want)
	}
	if _, err := parseUtmp(bytes.NewReader(in[:utmpRecordSize+10])); err == nil {
		t.Error("parseUtmp(truncated record) succeeded, want an error")
	}
}

func TestParseProcArgs(t *testing.T) {
	args := binary.LittleEndian.AppendUint32(nil, 3)
	args = append(args, "/usr/bin/python3\x00\x00\x00\x00python3\x00-m\x00http.server\x00PATH=/usr/bin\x00"...)
	exe, cmd := parseProcArgs(args)
	if exe != "/usr/bin/python3" || cmd != "python3 -m http.server" {
		t.Errorf("parseProcArgs = %q, %q; want /usr/bin/python3, \"python3 -m http.server\"", exe, cmd)
	}
	for _, bad := range [][]byte{nil, {1}, {9, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff, 'x'}} {
		parseProcArgs(bad) // must not panic
	}
}

func TestRoot(t *testing.T) {
	got := Root("/mnt/image")
	for _, name := range []string{Processes, Network, Users} {
		if s, ok := got[name].(string); !ok || !strings.Contains(s, "skipped") {
			t.Errorf("Root()[%s] = %v, want a string saying it was skipped", name, got[name])
		}
	}
}

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return errors.Join(err1, err2) == nil && bytes.Equal(x, y)
}
