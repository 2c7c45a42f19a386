package parse

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/quarry-dfir/quarry"
)

// lastlog is an array of struct lastlog indexed by uid: a time, a line and a host. The time is 32-bit
// on 32-bit ABIs and on x86_64 (292-byte records) and 64-bit elsewhere (296-byte records). The file is
// sparse: users who never logged in are zero records, often most of it.
type lastlogLayout struct {
	name  string
	size  int
	order binary.ByteOrder
	wide  bool
}

var lastlogLayouts = []lastlogLayout{
	{"292-le", 292, binary.LittleEndian, false},
	{"296-le", 296, binary.LittleEndian, true},
	{"292-be", 292, binary.BigEndian, false},
	{"296-be", 296, binary.BigEndian, true},
}

// maxLastlogZeros bounds how far the parser reads through empty records: a lastlog's apparent size
// reaches ~1.2 TB when uid 4294967294 (nfsnobody) ever logged in, all of it holes. 256 MiB covers
// uids up to about 900,000.
const maxLastlogZeros = 256 << 20

// lastlogAlign is a multiple of both record sizes: leading zeros are skipped in steps of it so the
// position stays on a record boundary whichever layout the file has.
const lastlogAlign = 292 * 296 / 4

func (l lastlogLayout) decode(b []byte) (sec int64, line, host string) {
	off := 4
	if l.wide {
		sec = int64(l.order.Uint64(b[:8]))
		off = 8
	} else {
		sec = int64(int32(l.order.Uint32(b[:4])))
	}
	return sec, cString(b[off : off+32]), cString(b[off+32 : off+32+256])
}

// score rates the non-zero records in b: a plausible time with text line and host fields fits.
func (l lastlogLayout) score(b []byte, ref time.Time) int {
	s := 0
	for off := 0; off+l.size <= len(b); off += l.size {
		rec := b[off : off+l.size]
		if allZero(rec) {
			continue
		}
		sec, _, _ := l.decode(rec)
		lineOff := 4
		if l.wide {
			lineOff = 8
		}
		if !plausibleTime(sec) || !textField(rec[lineOff:lineOff+32]) || !textField(rec[lineOff+32:lineOff+288]) {
			s -= 4
			continue
		}
		s += 3 + recentBonus(sec, ref)
	}
	return s
}

// textField reports whether b is printable bytes followed only by NULs.
func textField(b []byte) bool {
	end := len(b)
	for i, c := range b {
		if c == 0 {
			end = i
			break
		}
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return allZero(b[end:])
}

func detectLastlog(head []byte, ref time.Time) (lastlogLayout, bool) {
	best, bestScore := lastlogLayouts[0], 0
	for _, l := range lastlogLayouts {
		if sc := l.score(head, ref); sc > bestScore {
			best, bestScore = l, sc
		}
	}
	return best, bestScore > 0
}

var lastlogParser = Parser{
	Name: "lastlog",
	Sniff: func(head []byte, in Input) bool {
		if logName(in.HostPath) != "lastlog" || len(head) == 0 {
			return false
		}
		if allZero(head) {
			return true // the sparse start of the file: the name has to do
		}
		_, ok := detectLastlog(head, in.refTime())
		return ok
	},
	Parse: parseLastlog,
}

func parseLastlog(ctx context.Context, in Input, r io.Reader, emitFn func(*quarry.Event) error) (Stats, error) {
	var st Stats
	e := &emitter{in: in, src: "lastlog", emit: emitFn, stats: &st}
	const peek = 64 * 1024
	br := bufio.NewReaderSize(r, peek)
	var base int64
	var head []byte
	for {
		h, err := br.Peek(peek)
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return st, fmt.Errorf("lastlog: read at offset %d: %w", base, err)
		}
		if len(h) < peek || !allZero(h) || base > maxLastlogZeros {
			head = h
			break
		}
		skip := peek / lastlogAlign * lastlogAlign
		if _, err := br.Discard(skip); err != nil {
			return st, fmt.Errorf("lastlog: read at offset %d: %w", base, err)
		}
		base += int64(skip)
		if err := ctx.Err(); err != nil {
			return st, err
		}
	}
	if allZero(head) {
		if base > maxLastlogZeros {
			st.skip("offset %d: stopped after %d MiB of empty records; the rest of the sparse file was not read", base, base>>20)
		}
		return st, nil // nobody ever logged in
	}
	l, ok := detectLastlog(head, in.refTime())
	if !ok {
		return st, fmt.Errorf("lastlog: %w: no record layout fits the bytes at offset %d", ErrFormat, base)
	}
	buf := make([]byte, l.size)
	uid := base / int64(l.size)
	st.Records += int(uid) // the zero records skipped above
	zeroRun := base
	for ; ; uid++ {
		if zeroRun > maxLastlogZeros {
			st.skip("offset %d: stopped after %d MiB of empty records; the rest of the sparse file was not read",
				uid*int64(l.size), zeroRun>>20)
			return st, nil
		}
		if err := ctxErr(ctx, int(uid)); err != nil {
			return st, err
		}
		off := uid * int64(l.size)
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
			return st, fmt.Errorf("lastlog: read at offset %d: %w", off, err)
		}
		st.Records++
		if allZero(buf) {
			zeroRun += int64(l.size)
			continue
		}
		zeroRun = 0
		sec, line, host := l.decode(buf)
		if sec <= 0 {
			st.skip("uid %d at offset %d: bad time %d", uid, off, sec)
			continue
		}
		msg := "last login uid=" + strconv.FormatInt(uid, 10)
		f := map[string]any{"uid": uid, "layout": l.name}
		if line != "" {
			msg += " line=" + line
			f["terminal"] = line
		}
		if host != "" {
			msg += " host=" + host
			f["hostname"] = host
		}
		if err := e.event(time.Unix(sec, 0), "Last Login Time", "", msg, f); err != nil {
			return st, err
		}
	}
	return st, nil
}
