//go:build linux

package livestate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCollect checks the live state of this very machine: the test's own
// process and the sockets it opens must appear, correctly described.
func TestCollect(t *testing.T) {
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	var tcp6 net.Listener
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		tcp6 = l
		defer l.Close()
	}
	// An established pair, to see both ends with their states.
	client, err := net.Dial("tcp4", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := tcp.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	got := Collect(context.Background())
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("Collect result is not JSON-able: %v", err)
	}

	t.Run("Processes", func(t *testing.T) {
		procs, ok := got[Processes].([]Process)
		if !ok {
			t.Fatalf("processes = %v, want a list", got[Processes])
		}
		var self *Process
		for i := range procs {
			if procs[i].PID == os.Getpid() {
				self = &procs[i]
			}
		}
		if self == nil {
			t.Fatalf("own pid %d not among %d processes", os.Getpid(), len(procs))
		}
		exe, _ := os.Executable()
		content, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(content)
		me, _ := user.Current()
		if self.PPID != os.Getppid() || self.Exe != exe || self.ExeSHA256 != hex.EncodeToString(sum[:]) || self.User != me.Username {
			t.Errorf("own process = %+v, want ppid %d exe %s sha256 %x user %s", *self, os.Getppid(), exe, sum, me.Username)
		}
		// The kernel keeps the first 15 bytes of the executable's name.
		if base := filepath.Base(exe); self.Name != base[:min(15, len(base))] {
			t.Errorf("own process name = %q, want the start of %q", self.Name, base)
		}
		if want := strings.Join(os.Args, " "); self.CommandLine != want {
			t.Errorf("own command line = %q, want %q", self.CommandLine, want)
		}
		if st := self.StartTime; st.IsZero() || st.After(time.Now()) || time.Since(st) > 24*time.Hour || st.Location() != time.UTC {
			t.Errorf("own start time = %v, want a recent UTC time", st)
		}
	})

	t.Run("Network", func(t *testing.T) {
		conns, ok := got[Network].([]Connection)
		if !ok {
			t.Fatalf("network = %v, want a list", got[Network])
		}
		find := func(proto string, addr net.Addr, state string) *Connection {
			host, port := splitAddr(t, addr)
			for i, c := range conns {
				if c.Proto == proto && c.LocalAddr == host && c.LocalPort == port && c.State == state {
					return &conns[i]
				}
			}
			return nil
		}
		for _, tc := range []struct {
			proto string
			addr  net.Addr
			state string
		}{
			{"tcp", tcp.Addr(), "LISTEN"},
			{"udp", udp.LocalAddr(), ""},
			{"tcp", client.LocalAddr(), "ESTABLISHED"},
			{"tcp", server.LocalAddr(), "ESTABLISHED"},
		} {
			c := find(tc.proto, tc.addr, tc.state)
			if c == nil {
				t.Errorf("no %s %s %s socket among %d connections", tc.proto, tc.addr, tc.state, len(conns))
				continue
			}
			if c.PID != os.Getpid() {
				t.Errorf("%s %s socket pid = %d, want %d", tc.proto, tc.addr, c.PID, os.Getpid())
			}
		}
		if c := find("tcp", client.LocalAddr(), "ESTABLISHED"); c != nil {
			if host, port := splitAddr(t, tcp.Addr()); c.RemoteAddr != host || c.RemotePort != port {
				t.Errorf("client socket remote = %s:%d, want %s", c.RemoteAddr, c.RemotePort, tcp.Addr())
			}
		}
		if tcp6 != nil && find("tcp6", tcp6.Addr(), "LISTEN") == nil {
			t.Errorf("no tcp6 listener on %s", tcp6.Addr())
		}
	})

	t.Run("Users", func(t *testing.T) {
		_, statErr := os.Stat("/var/run/utmp")
		switch v := got[Users].(type) {
		case []User:
			if statErr != nil {
				t.Errorf("users = %v without a utmp file", v)
			}
		case string:
			if statErr == nil {
				t.Errorf("users = %q although utmp exists", v)
			}
		default:
			t.Errorf("users = %T, want a list or an error string", v)
		}
	})
}

func splitAddr(t *testing.T, a net.Addr) (string, int) {
	t.Helper()
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.String(), a.Port
	case *net.UDPAddr:
		return a.IP.String(), a.Port
	}
	t.Fatalf("unexpected address %v", a)
	return "", 0
}

func TestParseStat(t *testing.T) {
	boot := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, in string
		want     Process
		ok       bool
	}{
		{"OK", "42 (bash) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 250 1000 100", Process{Name: "bash", PPID: 1, StartTime: boot.Add(2500 * time.Millisecond)}, true},
		{"ParensInName", "7 (a) (b c)) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0", Process{Name: "a) (b c)", PPID: 3, StartTime: boot.Add(time.Second)}, true},
		{"Truncated", "7 (x) R 3 7", Process{}, false},
		{"NoParens", "garbage", Process{}, false},
	} {
		got, ok := parseStat([]byte(tc.in), boot)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: parseStat = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseProcNet(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 556 1 0000000000000000 20 4 30 10 -1
   2: broken
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000200A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0
`
	udp := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 900 2 0000000000000000 0
`
	owners := map[uint64]int{555: 10, 556: 11, 777: 12}
	for _, tc := range []struct {
		proto, in string
		want      []Connection
		bad       bool
	}{
		{"tcp", tcp, []Connection{
			{Proto: "tcp", LocalAddr: "127.0.0.1", LocalPort: 8080, State: "LISTEN", PID: 10},
			{Proto: "tcp", LocalAddr: "127.0.0.1", LocalPort: 50000, RemoteAddr: "127.0.0.1", RemotePort: 8080, State: "ESTABLISHED", PID: 11},
		}, true},
		{"tcp6", tcp6, []Connection{
			{Proto: "tcp6", LocalAddr: "::1", LocalPort: 22, State: "LISTEN", PID: 12},
			{Proto: "tcp6", LocalAddr: "127.0.0.1", LocalPort: 80, RemoteAddr: "192.168.0.2", RemotePort: 54321, State: "ESTABLISHED"},
		}, false},
		{"udp", udp, []Connection{{Proto: "udp", LocalAddr: "0.0.0.0", LocalPort: 68}}, false},
		{"udp", "", nil, false},
	} {
		got, err := parseProcNet(tc.proto, []byte(tc.in), owners)
		if (err != nil) != tc.bad || !equalJSON(got, tc.want) {
			t.Errorf("parseProcNet(%s) = %+v, %v; want %+v (error %v)", tc.proto, got, err, tc.want, tc.bad)
		}
	}
}
