package simhost

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// utmp record types from glibc's <bits/utmp.h>.
const (
	utRunLevel     = 1
	utBootTime     = 2
	utLoginProcess = 6
	utUserProcess  = 7
	utDeadProcess  = 8
)

// Sizes of glibc's x86_64 struct utmp and struct lastlog (time fields are 32-bit there for compatibility
// with 32-bit programs).
const (
	utmpSize    = 384
	lastlogSize = 292
)

// utmpRecord is one struct utmp as written to /var/log/wtmp, /var/log/btmp and /run/utmp.
type utmpRecord struct {
	typ     int16
	pid     int32
	line    string // device without "/dev/", e.g. "pts/0"
	id      string // inittab id or last 4 characters of line
	user    string
	host    string
	session int32
	t       time.Time
	addr    string // remote address, stored in ut_addr_v6
}

// encode lays the record out as glibc does on x86_64:
// type int16 @0, pid int32 @4, line [32] @8, id [4] @40, user [32] @44, host [256] @76,
// exit {int16,int16} @332, session int32 @336, tv {int32 sec, int32 usec} @340, addr_v6 [4]int32 @348,
// 20 reserved bytes @364.
func (u utmpRecord) encode() []byte {
	b := make([]byte, utmpSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], uint16(u.typ))
	le.PutUint32(b[4:], uint32(u.pid))
	copy(b[8:40], u.line)
	copy(b[40:44], u.id)
	copy(b[44:76], u.user)
	copy(b[76:332], u.host)
	le.PutUint32(b[336:], uint32(u.session))
	le.PutUint32(b[340:], uint32(u.t.Unix()))
	le.PutUint32(b[344:], uint32(u.t.Nanosecond()/1000))
	if a, err := netip.ParseAddr(u.addr); err == nil {
		// ut_addr_v6 holds the address in network byte order; an IPv4 address fills the first word.
		if a.Is4() {
			v4 := a.As4()
			copy(b[348:352], v4[:])
		} else {
			v6 := a.As16()
			copy(b[348:364], v6[:])
		}
	}
	return b
}

// lastlogEntry is one struct lastlog: ll_time int32 @0, ll_line [32] @4, ll_host [256] @36.
type lastlogEntry struct {
	t    time.Time
	line string
	host string
}

// encodeLastlog writes the file as login does: an array indexed by uid, zero-filled for uids that never
// logged in.
func encodeLastlog(entries map[int]lastlogEntry) []byte {
	maxUID := -1
	for uid := range entries {
		maxUID = max(maxUID, uid)
	}
	b := make([]byte, (maxUID+1)*lastlogSize)
	for uid, e := range entries {
		o := uid * lastlogSize
		binary.LittleEndian.PutUint32(b[o:], uint32(e.t.Unix()))
		copy(b[o+4:o+36], e.line)
		copy(b[o+36:o+292], e.host)
	}
	return b
}
