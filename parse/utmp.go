package parse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// utmp, wtmp and btmp share glibc's struct utmp. Two layouts exist on Linux: 384 bytes where the
// session and time fields are 32-bit (every 32-bit ABI, and x86_64/ppc64 through glibc's
// __WORDSIZE_TIME64_COMPAT32) and 400 bytes where they are 64-bit (aarch64, s390x, riscv64…), each in
// either byte order.
type utmpLayout struct {
	name    string
	size    int
	order   binary.ByteOrder
	wide    bool // 64-bit session, tv_sec and tv_usec
	addrOff int
}

var utmpLayouts = []utmpLayout{
	{"384-le", 384, binary.LittleEndian, false, 348},
	{"400-le", 400, binary.LittleEndian, true, 360},
	{"384-be", 384, binary.BigEndian, false, 348},
	{"400-be", 400, binary.BigEndian, true, 360},
}

const (
	utEmpty        = 0
	utRunLvl       = 1
	utBootTime     = 2
	utNewTime      = 3
	utOldTime      = 4
	utInitProcess  = 5
	utLoginProcess = 6
	utUserProcess  = 7
	utDeadProcess  = 8
	utAccounting   = 9
)

var utTypeNames = []string{"EMPTY", "RUN_LVL", "BOOT_TIME", "NEW_TIME", "OLD_TIME", "INIT_PROCESS",
	"LOGIN_PROCESS", "USER_PROCESS", "DEAD_PROCESS", "ACCOUNTING"}

type utmpRecord struct {
	typ       int
	pid       int64
	line, id  string
	user      string
	host      string
	exitTerm  int64
	exitCode  int64
	session   int64
	sec, usec int64
	addr      netip.Addr
}

func (l utmpLayout) decode(b []byte) utmpRecord {
	o := l.order
	var r utmpRecord
	r.typ = int(int16(o.Uint16(b[0:2])))
	r.pid = int64(int32(o.Uint32(b[4:8])))
	r.line = cString(b[8:40])
	r.id = cString(b[40:44])
	r.user = cString(b[44:76])
	r.host = cString(b[76:332])
	r.exitTerm = int64(int16(o.Uint16(b[332:334])))
	r.exitCode = int64(int16(o.Uint16(b[334:336])))
	if l.wide {
		r.session = int64(o.Uint64(b[336:344]))
		r.sec = int64(o.Uint64(b[344:352]))
		r.usec = int64(o.Uint64(b[352:360]))
	} else {
		r.session = int64(int32(o.Uint32(b[336:340])))
		r.sec = int64(int32(o.Uint32(b[340:344])))
		r.usec = int64(int32(o.Uint32(b[344:348])))
	}
	a := b[l.addrOff : l.addrOff+16]
	switch {
	case allZero(a):
	case allZero(a[4:]):
		r.addr = netip.AddrFrom4([4]byte(a[:4]))
	default:
		r.addr = netip.AddrFrom16([16]byte(a))
	}
	return r
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// recentBonus favours, between layouts that both read plausible times, the one whose times lie in the
// ten years before the file's time: a byte-swapped modern time also decodes to some date after 1980.
func recentBonus(sec int64, ref time.Time) int {
	r := ref.Unix()
	if sec <= r+86400 && sec >= r-10*365*86400 {
		return 1
	}
	return 0
}

// plausibleTime is a Unix time between 1980 and 2100, the range login records can hold.
func plausibleTime(sec int64) bool { return sec >= 315532800 && sec < 4102444800 }

// score rates how well b's records fit layout l. A record fits when its type and padding are sane,
// its text fields are text, its time is zero or plausible and its usec below a second; only records
// with a time count for the layout (zero-filled slots fit every layout), misfits count against it.
func (l utmpLayout) score(b []byte, ref time.Time) int {
	s := 0
	for off := 0; off+l.size <= len(b); off += l.size {
		rec := b[off : off+l.size]
		r := l.decode(rec)
		// ut_type is a short followed by two bytes of alignment padding, zero in files glibc wrote.
		if r.typ < 0 || r.typ > utAccounting || !allZero(rec[2:4]) ||
			!textField(rec[8:40]) || !textField(rec[44:76]) || !textField(rec[76:332]) ||
			r.sec != 0 && !plausibleTime(r.sec) || r.usec < 0 || r.usec >= 1e6 {
			s--
			continue
		}
		if r.sec != 0 {
			s += 3 + recentBonus(r.sec, ref)
		}
	}
	return s
}

// detectUTMP picks the layout that fits the first records best; ok is false when none fits at all.
func detectUTMP(head []byte, ref time.Time) (utmpLayout, bool) {
	best, bestScore := utmpLayouts[0], 0
	for _, l := range utmpLayouts {
		if sc := l.score(head, ref); sc > bestScore {
			best, bestScore = l, sc
		}
	}
	return best, bestScore > 0
}

func utmpSniffName(in Input) string {
	n := logName(in.HostPath)
	switch {
	case strings.HasPrefix(n, "btmp"):
		return "btmp"
	case strings.HasPrefix(n, "wtmp"):
		return "wtmp"
	case strings.HasPrefix(n, "utmp"):
		return "utmp"
	}
	return ""
}

func newUTMPParser(name string) Parser {
	return Parser{
		Name: name,
		Sniff: func(head []byte, in Input) bool {
			n := utmpSniffName(in)
			if n != name && !(n == "" && name == "utmp") {
				return false
			}
			// Content alone must show several sane records, each with a time; a file name makes one enough.
			l, ok := detectUTMP(head, in.refTime())
			if !ok {
				return false
			}
			if n == "" {
				return len(head) >= 2*l.size && l.score(head, in.refTime()) >= 3*(len(head)/l.size)
			}
			return true
		},
		Parse: func(ctx context.Context, in Input, r io.Reader, emit func(*quarry.Event) error) (Stats, error) {
			return parseUTMP(ctx, in, r, emit, name)
		},
	}
}

var (
	utmpParser = newUTMPParser("utmp")
	wtmpParser = newUTMPParser("wtmp")
	btmpParser = newUTMPParser("btmp")
)

func parseUTMP(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error, src string) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: src, emit: emitFn, stats: &st}
	br := bufio.NewReaderSize(r, 16*400)
	head, err := br.Peek(16 * 400)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return st, fmt.Errorf("%s: read: %w", src, err)
	}
	if len(head) == 0 {
		return st, nil
	}
	l, ok := detectUTMP(head, in.refTime())
	if !ok {
		return st, fmt.Errorf("%s: %w: no utmp record layout fits the first %d bytes", src, ErrFormat, len(head))
	}
	buf := make([]byte, l.size)
	for idx := 0; ; idx++ {
		if err := ctxErr(ctx, idx); err != nil {
			return st, err
		}
		off := int64(idx) * int64(l.size)
		n, err := io.ReadFull(br, buf)
		if err == io.EOF {
			break
		}
		if err == io.ErrUnexpectedEOF {
			st.Records++
			st.skip("offset %d: trailing %d bytes, not a whole %d-byte record", off, n, l.size)
			break
		}
		if err != nil {
			return st, fmt.Errorf("%s: read at offset %d: %w", src, off, err)
		}
		st.Records++
		rec := l.decode(buf)
		switch {
		case rec.typ < 0 || rec.typ > utAccounting:
			st.skip("record %d at offset %d: unknown type %d", idx, off, rec.typ)
			continue
		case rec.usec < 0 || rec.usec >= 1e6 || rec.sec < 0:
			st.skip("record %d at offset %d: bad time %d.%d", idx, off, rec.sec, rec.usec)
			continue
		case rec.typ == utEmpty && rec.sec == 0:
			continue // an unused slot
		}
		if err := e.event(time.Unix(rec.sec, rec.usec*1000), utmpDesc(src, rec.typ), utmpUser(rec),
			utmpMessage(src, rec), utmpFields(rec, idx, l)); err != nil {
			return st, err
		}
	}
	return st, nil
}

func utmpUser(r utmpRecord) string {
	if r.typ == utUserProcess || r.typ == utLoginProcess && r.user != "LOGIN" {
		return r.user
	}
	return ""
}

func utmpDesc(src string, typ int) string {
	switch {
	case src == "btmp":
		return "Failed Login Time"
	case typ == utBootTime:
		return "Boot Time"
	case typ == utUserProcess:
		return "Login Time"
	case typ == utDeadProcess:
		return "Logout Time"
	}
	return "Entry Time"
}

func utmpMessage(src string, r utmpRecord) string {
	var b strings.Builder
	switch {
	case src == "btmp":
		b.WriteString("failed login")
	case r.typ == utUserProcess:
		b.WriteString("login")
	case r.typ == utDeadProcess:
		b.WriteString("logout")
	case r.typ == utBootTime:
		b.WriteString("system boot")
	case r.typ == utRunLvl:
		b.WriteString("run level change")
	default:
		b.WriteString(utTypeNames[r.typ])
	}
	if r.user != "" {
		b.WriteString(" user=" + r.user)
	}
	if r.line != "" {
		b.WriteString(" line=" + r.line)
	}
	if r.host != "" {
		b.WriteString(" host=" + r.host)
	}
	if r.addr.IsValid() && r.addr.String() != r.host {
		b.WriteString(" ip=" + r.addr.String())
	}
	if r.pid != 0 {
		b.WriteString(" pid=" + strconv.FormatInt(r.pid, 10))
	}
	return b.String()
}

func utmpFields(r utmpRecord, idx int, l utmpLayout) map[string]any {
	f := map[string]any{
		"type":     utTypeNames[r.typ],
		"type_num": int64(r.typ),
		"pid":      r.pid,
		"record":   int64(idx),
		"layout":   l.name,
	}
	if r.user != "" {
		f["user"] = r.user
	}
	if r.line != "" {
		f["terminal"] = r.line
	}
	if r.id != "" {
		f["terminal_id"] = r.id
	}
	if r.host != "" {
		f["hostname"] = r.host
	}
	if r.addr.IsValid() {
		f["ip"] = r.addr.String()
	}
	if r.session != 0 {
		f["session"] = r.session
	}
	if r.typ == utDeadProcess && (r.exitTerm != 0 || r.exitCode != 0) {
		f["exit_termination"], f["exit_code"] = r.exitTerm, r.exitCode
	}
	return f
}
