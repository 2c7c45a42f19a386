package livestate

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The row layouts of GetExtendedTcpTable (TCP_TABLE_OWNER_PID_ALL) and
// GetExtendedUdpTable (UDP_TABLE_OWNER_PID). They are parsed from bytes so
// the parsing is tested on every OS, not only on Windows.
const (
	tcp4RowSize = 24 // MIB_TCPROW_OWNER_PID
	tcp6RowSize = 56 // MIB_TCP6ROW_OWNER_PID
	udp4RowSize = 12 // MIB_UDPROW_OWNER_PID
	udp6RowSize = 28 // MIB_UDP6ROW_OWNER_PID
)

// winTCPStates names MIB_TCP_STATE values.
var winTCPStates = map[uint32]string{
	1: "CLOSED", 2: "LISTEN", 3: "SYN_SENT", 4: "SYN_RECV", 5: "ESTABLISHED",
	6: "FIN_WAIT1", 7: "FIN_WAIT2", 8: "CLOSE_WAIT", 9: "CLOSING",
	10: "LAST_ACK", 11: "TIME_WAIT", 12: "DELETE_TCB",
}

// parseWinTable parses a MIB_*TABLE_OWNER_PID buffer: a DWORD count followed
// by fixed-size rows. proto is "tcp", "tcp6", "udp" or "udp6".
func parseWinTable(proto string, b []byte) ([]Connection, error) {
	size := map[string]int{"tcp": tcp4RowSize, "tcp6": tcp6RowSize, "udp": udp4RowSize, "udp6": udp6RowSize}[proto]
	if size == 0 {
		return nil, fmt.Errorf("unknown protocol %q", proto)
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%s table: %d bytes", proto, len(b))
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > (len(b)-4)/size {
		return nil, fmt.Errorf("%s table: %d rows do not fit in %d bytes", proto, n, len(b))
	}
	le := binary.LittleEndian.Uint32
	port := func(v uint32) int { return int(v&0xff)<<8 | int(v>>8&0xff) } // network byte order in the low word
	v4 := func(v []byte) netip.Addr { return netip.AddrFrom4([4]byte(v)) }
	v6 := func(v []byte) netip.Addr { return netip.AddrFrom16([16]byte(v)) }
	out := make([]Connection, 0, n)
	for i := range n {
		r := b[4+i*size : 4+(i+1)*size]
		var c Connection
		var remote netip.Addr
		switch proto {
		case "tcp":
			c = Connection{State: winTCPStates[le(r)], LocalAddr: v4(r[4:8]).String(), LocalPort: port(le(r[8:])), PID: int(le(r[20:]))}
			remote, c.RemotePort = v4(r[12:16]), port(le(r[16:]))
		case "tcp6":
			c = Connection{LocalAddr: v6(r[0:16]).String(), LocalPort: port(le(r[20:])), State: winTCPStates[le(r[48:])], PID: int(le(r[52:]))}
			remote, c.RemotePort = v6(r[24:40]), port(le(r[44:]))
		case "udp":
			c = Connection{LocalAddr: v4(r[0:4]).String(), LocalPort: port(le(r[4:])), PID: int(le(r[8:]))}
		case "udp6":
			c = Connection{LocalAddr: v6(r[0:16]).String(), LocalPort: port(le(r[20:])), PID: int(le(r[24:]))}
		}
		c.Proto = proto
		if remote.IsValid() && (!remote.IsUnspecified() || c.RemotePort != 0) {
			c.RemoteAddr = remote.String()
		}
		out = append(out, c)
	}
	return out, nil
}
