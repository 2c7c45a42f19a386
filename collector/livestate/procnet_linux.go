package livestate

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// tcpStates names the hexadecimal st column of /proc/net/tcp (the kernel's
// TCP_* enum).
var tcpStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
	"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
	"09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}

// parseProcNet parses /proc/net/{tcp,tcp6,udp,udp6}. Malformed lines are
// skipped and counted in the error; the good ones are still returned.
func parseProcNet(proto string, b []byte, owners map[uint64]int) ([]Connection, error) {
	var out []Connection
	bad := 0
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[min(1, len(lines)):] { // the first line is a header
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			bad++
			continue
		}
		local, lport, err1 := parseHexAddr(f[1])
		remote, rport, err2 := parseHexAddr(f[2])
		if err1 != nil || err2 != nil {
			bad++
			continue
		}
		c := Connection{Proto: proto, LocalAddr: local.String(), LocalPort: lport}
		if remote.IsValid() && !remote.IsUnspecified() || rport != 0 {
			c.RemoteAddr, c.RemotePort = remote.String(), rport
		}
		c.State = tcpStates[strings.ToUpper(f[3])]
		if strings.HasPrefix(proto, "udp") {
			// UDP sockets use ESTABLISHED for connected sockets and CLOSE
			// for the rest, which are simply unconnected.
			if c.State != "ESTABLISHED" {
				c.State = ""
			}
		}
		if inode, err := strconv.ParseUint(f[9], 10, 64); err == nil && inode != 0 {
			c.PID = owners[inode]
		}
		out = append(out, c)
	}
	if bad > 0 {
		return out, fmt.Errorf("%s: %d malformed lines", proto, bad)
	}
	return out, nil
}

// parseHexAddr parses "0100007F:1F90": the address as 32-bit words in host
// (little-endian) byte order, then the port in hexadecimal.
func parseHexAddr(s string) (netip.Addr, int, error) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(addrHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("bad port %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return addr.Unmap(), int(port), nil
}
