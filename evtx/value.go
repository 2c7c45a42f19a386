package evtx

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Value types of binary XML substitutions and Value tokens. The array flag
// 0x80 combined with a scalar type gives the array of that type.
const (
	typeNull     = 0x00
	typeString   = 0x01
	typeAnsi     = 0x02
	typeInt8     = 0x03
	typeUint8    = 0x04
	typeInt16    = 0x05
	typeUint16   = 0x06
	typeInt32    = 0x07
	typeUint32   = 0x08
	typeInt64    = 0x09
	typeUint64   = 0x0a
	typeReal32   = 0x0b
	typeReal64   = 0x0c
	typeBool     = 0x0d
	typeBinary   = 0x0e
	typeGUID     = 0x0f
	typeSizeT    = 0x10
	typeFileTime = 0x11
	typeSysTime  = 0x12
	typeSID      = 0x13
	typeHex32    = 0x14
	typeHex64    = 0x15
	typeHandle   = 0x20
	typeBinXML   = 0x21
	typeEvtXML   = 0x23
	typeArray    = 0x80
)

// value is one substitution value: its type and its bytes, which alias the
// chunk buffer. Decoding happens only when a value is rendered, so values a
// consumer never looks at cost nothing.
type value struct {
	typ  uint8
	raw  []byte
	frag *fragment // decoded nested binary XML (typeBinXML)
}

// fixedSize gives the size of a scalar type with a fixed width, 0 otherwise.
func fixedSize(t uint8) int {
	switch t {
	case typeInt8, typeUint8:
		return 1
	case typeInt16, typeUint16:
		return 2
	case typeInt32, typeUint32, typeReal32, typeBool, typeHex32:
		return 4
	case typeInt64, typeUint64, typeReal64, typeFileTime, typeHex64:
		return 8
	case typeGUID, typeSysTime:
		return 16
	}
	return 0
}

// trimUTF16 drops an odd trailing byte and the trailing NUL code units that
// Windows stores with many strings.
func trimUTF16(b []byte) []byte {
	b = b[:len(b)&^1]
	for len(b) >= 2 && b[len(b)-1] == 0 && b[len(b)-2] == 0 {
		b = b[:len(b)-2]
	}
	return b
}

// trimUTF16Space drops trailing white space: evtx_dump's JSON trims it from
// string values (a Sysmon CommandLine of `tasklist  ` is "tasklist").
func trimUTF16Space(b []byte) []byte {
	for len(b) >= 2 && isSpace(rune(b[len(b)-2])|rune(b[len(b)-1])<<8) {
		b = b[:len(b)-2]
	}
	return b
}

// isSpace is Unicode White_Space, the set Rust's trim_end uses.
func isSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// isEmpty reports whether v renders as nothing: a null, a missing optional
// value, or an empty string or byte string.
func (v *value) isEmpty() bool {
	switch v.typ {
	case typeNull:
		return true
	case typeString:
		return len(trimUTF16(v.raw)) == 0
	case typeAnsi:
		return len(trimNUL(v.raw)) == 0
	case typeBinXML:
		return v.frag == nil
	}
	return len(v.raw) == 0
}

// isNumber reports whether v is rendered as a JSON number or boolean, which
// evtx_dump does for integer and boolean types only (floats, hex integers and
// everything else become strings).
func (v *value) isNumber() bool {
	return isNumberType(v.typ) && len(v.raw) >= fixedSize(v.typ)
}

func isNumberType(t uint8) bool {
	switch t {
	case typeInt8, typeUint8, typeInt16, typeUint16, typeInt32, typeUint32, typeInt64, typeUint64, typeBool:
		return true
	}
	return false
}

func (v *value) appendNumber(dst []byte) []byte {
	b := v.raw
	switch v.typ {
	case typeInt8:
		return strconv.AppendInt(dst, int64(int8(b[0])), 10)
	case typeUint8:
		return strconv.AppendUint(dst, uint64(b[0]), 10)
	case typeInt16:
		return strconv.AppendInt(dst, int64(int16(binary.LittleEndian.Uint16(b))), 10)
	case typeUint16:
		return strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint16(b)), 10)
	case typeInt32:
		return strconv.AppendInt(dst, int64(int32(binary.LittleEndian.Uint32(b))), 10)
	case typeUint32:
		return strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(b)), 10)
	case typeInt64:
		return strconv.AppendInt(dst, int64(binary.LittleEndian.Uint64(b)), 10)
	case typeUint64:
		return strconv.AppendUint(dst, binary.LittleEndian.Uint64(b), 10)
	case typeBool:
		if binary.LittleEndian.Uint32(b) != 0 {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	}
	return dst
}

// escaper says how text is escaped while it is appended: for a JSON string
// body or for XML character data.
type escaper uint8

const (
	escNone escaper = iota
	escJSON
	escXML
)

const hexDigits = "0123456789abcdef"
const hexUpper = "0123456789ABCDEF"

// safeChars says, per escaper, which bytes are copied as they are: printable
// ASCII without the characters the syntax escapes.
var safeChars = func() (t [3][256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[escNone][c] = true
		t[escJSON][c] = c != '"' && c != '\\'
		t[escXML][c] = !strings.ContainsRune(`<>&"'`, rune(c))
	}
	for c := range 0x20 {
		t[escNone][c] = true
	}
	t[escNone][0x7f] = true
	t[escJSON][0x7f] = true
	t[escXML][0x7f] = true
	return t
}()

// appendRune appends r escaped for the target syntax.
func appendRune(dst []byte, r rune, esc escaper) []byte {
	switch esc {
	case escJSON:
		switch {
		case r == '"':
			return append(dst, '\\', '"')
		case r == '\\':
			return append(dst, '\\', '\\')
		case r < 0x20:
			switch r {
			case '\n':
				return append(dst, '\\', 'n')
			case '\r':
				return append(dst, '\\', 'r')
			case '\t':
				return append(dst, '\\', 't')
			}
			return append(dst, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xf])
		}
	case escXML:
		switch r {
		case '<':
			return append(dst, "&lt;"...)
		case '>':
			return append(dst, "&gt;"...)
		case '&':
			return append(dst, "&amp;"...)
		case '"':
			return append(dst, "&quot;"...)
		case '\'':
			return append(dst, "&apos;"...)
		}
	}
	if r < utf8.RuneSelf {
		return append(dst, byte(r))
	}
	return utf8.AppendRune(dst, r)
}

// appendUTF16 decodes little-endian UTF-16 straight into dst, escaping as it
// goes. Unpaired surrogates become U+FFFD so the output is valid UTF-8.
func appendUTF16(dst, b []byte, esc escaper) []byte {
	n := len(b) &^ 1
	safe := &safeChars[esc]
	dst = slices.Grow(dst, n/2)
	for i := 0; i < n; i += 2 {
		if b[i+1] == 0 && safe[b[i]] {
			dst = append(dst, b[i])
			continue
		}
		u := rune(b[i]) | rune(b[i+1])<<8
		if utf16.IsSurrogate(u) {
			r := utf8.RuneError
			if u < 0xdc00 && i+3 < n {
				u2 := rune(b[i+2]) | rune(b[i+3])<<8
				if u2 >= 0xdc00 && u2 < 0xe000 {
					r = utf16.DecodeRune(u, u2)
					i += 2
				}
			}
			dst = appendRune(dst, r, esc)
			continue
		}
		dst = appendRune(dst, u, esc)
	}
	return dst
}

// appendBytesText appends an ANSI/UTF-8 byte string, escaped; bytes that are
// not UTF-8 are taken as Latin-1, the usual fallback for event log code pages.
func appendBytesText(dst, b []byte, esc escaper) []byte {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			r = rune(b[0])
		}
		dst = appendRune(dst, r, esc)
		b = b[n:]
	}
	return dst
}

func appendString(dst []byte, s string, esc escaper) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && (esc != escXML || (c != '<' && c != '>' && c != '&' && c != '\'')) {
			continue
		}
		dst = append(dst, s[start:i]...)
		if c < 0x80 {
			dst = appendRune(dst, rune(c), esc)
			start = i + 1
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		dst = appendRune(dst, r, esc)
		i += n - 1
		start = i + 1
	}
	return append(dst, s[start:]...)
}

func utf16String(b []byte) string {
	return string(appendUTF16(make([]byte, 0, len(b)/2), b, escNone))
}

// appendGUID writes the registry form of a GUID in upper case, without braces.
func appendGUID(dst, b []byte) []byte {
	le := binary.LittleEndian
	dst = appendHexFixed(dst, uint64(le.Uint32(b)), 8)
	dst = append(dst, '-')
	dst = appendHexFixed(dst, uint64(le.Uint16(b[4:])), 4)
	dst = append(dst, '-')
	dst = appendHexFixed(dst, uint64(le.Uint16(b[6:])), 4)
	dst = append(dst, '-')
	for i := 8; i < 16; i++ {
		if i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexUpper[b[i]>>4], hexUpper[b[i]&0xf])
	}
	return dst
}

func appendHexFixed(dst []byte, v uint64, digits int) []byte {
	for i := digits - 1; i >= 0; i-- {
		dst = append(dst, hexUpper[(v>>(uint(i)*4))&0xf])
	}
	return dst
}

// sidLen returns the size of the SID at the start of b, or 0 when b does not
// hold a whole SID.
func sidLen(b []byte) int {
	if len(b) < 8 {
		return 0
	}
	n := 8 + 4*int(b[1])
	if n > len(b) {
		return 0
	}
	return n
}

func appendSID(dst, b []byte) []byte {
	if sidLen(b) == 0 {
		return dst
	}
	dst = append(dst, "S-"...)
	dst = strconv.AppendUint(dst, uint64(b[0]), 10)
	var auth uint64
	for _, c := range b[2:8] {
		auth = auth<<8 | uint64(c)
	}
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, auth, 10)
	for i := 0; i < int(b[1]); i++ {
		dst = append(dst, '-')
		dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(b[8+4*i:])), 10)
	}
	return dst
}

// filetimeEpochDelta is the number of 100 ns intervals between 1601-01-01 and
// 1970-01-01.
const filetimeEpochDelta = 116444736000000000

func filetimeToTime(ft uint64) time.Time {
	if ft < filetimeEpochDelta {
		d := filetimeEpochDelta - ft
		return time.Unix(-int64(d/1e7), -int64(d%1e7)*100).UTC()
	}
	d := ft - filetimeEpochDelta
	return time.Unix(int64(d/1e7), int64(d%1e7)*100).UTC()
}

func systemtimeToTime(b []byte) time.Time {
	le := binary.LittleEndian
	return time.Date(int(le.Uint16(b)), time.Month(le.Uint16(b[2:])), int(le.Uint16(b[6:])),
		int(le.Uint16(b[8:])), int(le.Uint16(b[10:])), int(le.Uint16(b[12:])),
		int(le.Uint16(b[14:]))*1e6, time.UTC)
}

// appendTime writes t as RFC 3339 in UTC with microseconds (truncated), the
// form evtx_dump uses.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	if y < 0 || y > 9999 {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	dst = appendDec(dst, y, 4)
	dst = append(dst, '-')
	dst = appendDec(dst, int(mo), 2)
	dst = append(dst, '-')
	dst = appendDec(dst, d, 2)
	dst = append(dst, 'T')
	dst = appendDec(dst, h, 2)
	dst = append(dst, ':')
	dst = appendDec(dst, mi, 2)
	dst = append(dst, ':')
	dst = appendDec(dst, s, 2)
	dst = append(dst, '.')
	dst = appendDec(dst, t.Nanosecond()/1e3, 6)
	return append(dst, 'Z')
}

func appendDec(dst []byte, v, digits int) []byte {
	var buf [20]byte
	i := len(buf)
	for v > 0 || digits > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		digits--
	}
	return append(dst, buf[i:]...)
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-inf"...)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, bits)
}

// appendScalarText appends the text form of one scalar of type t held in b
// (which has at least fixedSize(t) bytes for fixed types).
func appendScalarText(dst []byte, t uint8, b []byte, esc escaper) []byte {
	le := binary.LittleEndian
	switch t {
	case typeNull, typeHandle, typeEvtXML, typeBinXML:
		return dst
	case typeString:
		b = trimUTF16(b)
		if esc == escJSON {
			b = trimUTF16Space(b)
		}
		return appendUTF16(dst, b, esc)
	case typeAnsi:
		b = trimNUL(b)
		if esc == escJSON {
			for len(b) > 0 && isSpace(rune(b[len(b)-1])) {
				b = b[:len(b)-1]
			}
		}
		return appendBytesText(dst, b, esc)
	case typeInt8, typeUint8, typeInt16, typeUint16, typeInt32, typeUint32, typeInt64, typeUint64, typeBool:
		v := value{typ: t, raw: b}
		return v.appendNumber(dst)
	case typeReal32:
		return appendFloat(dst, float64(math.Float32frombits(le.Uint32(b))), 32)
	case typeReal64:
		return appendFloat(dst, math.Float64frombits(le.Uint64(b)), 64)
	case typeBinary:
		for _, c := range b {
			dst = append(dst, hexUpper[c>>4], hexUpper[c&0xf])
		}
		return dst
	case typeGUID:
		return appendGUID(dst, b)
	case typeSizeT:
		var v uint64
		if len(b) >= 8 {
			v = le.Uint64(b)
		} else if len(b) >= 4 {
			v = uint64(le.Uint32(b))
		}
		dst = append(dst, "0x"...)
		return strconv.AppendUint(dst, v, 16)
	case typeFileTime:
		return appendTime(dst, filetimeToTime(le.Uint64(b)))
	case typeSysTime:
		return appendTime(dst, systemtimeToTime(b))
	case typeSID:
		return appendSID(dst, b)
	case typeHex32:
		dst = append(dst, "0x"...)
		return strconv.AppendUint(dst, uint64(le.Uint32(b)), 16)
	case typeHex64:
		dst = append(dst, "0x"...)
		return strconv.AppendUint(dst, le.Uint64(b), 16)
	}
	return dst
}

// forEachElem splits an array value into its elements.
func forEachElem(t uint8, b []byte, fn func(e []byte)) {
	switch t {
	case typeString:
		for len(b) >= 2 {
			i := 0
			for i+1 < len(b) && (b[i] != 0 || b[i+1] != 0) {
				i += 2
			}
			fn(b[:i])
			if i+2 > len(b) {
				return
			}
			b = b[i+2:]
		}
	case typeAnsi:
		for len(b) > 0 {
			i := 0
			for i < len(b) && b[i] != 0 {
				i++
			}
			fn(b[:i])
			if i+1 > len(b) {
				return
			}
			b = b[i+1:]
		}
	case typeSID:
		for {
			n := sidLen(b)
			if n == 0 {
				return
			}
			fn(b[:n])
			b = b[n:]
		}
	case typeSizeT:
		for len(b) >= 8 {
			fn(b[:8])
			b = b[8:]
		}
	default:
		n := fixedSize(t)
		if n == 0 {
			return
		}
		for len(b) >= n {
			fn(b[:n])
			b = b[n:]
		}
	}
}

// appendText appends the text form of v; arrays are joined with commas.
func (v *value) appendText(dst []byte, esc escaper) []byte {
	if v.typ&typeArray != 0 {
		first := true
		forEachElem(v.typ&^typeArray, v.raw, func(e []byte) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendScalarText(dst, v.typ&^typeArray, e, esc)
		})
		return dst
	}
	if n := fixedSize(v.typ); n > 0 && len(v.raw) < n {
		return dst
	}
	if v.typ == typeBinXML && v.frag != nil && esc == escXML {
		return v.frag.appendXML(dst)
	}
	return appendScalarText(dst, v.typ, v.raw, esc)
}

// scalarAny decodes one scalar into the Go value the event API promises.
func scalarAny(t uint8, b []byte) any {
	le := binary.LittleEndian
	if n := fixedSize(t); n > 0 && len(b) < n {
		return nil
	}
	switch t {
	case typeNull, typeHandle, typeEvtXML:
		return nil
	case typeString:
		return utf16String(trimUTF16(b))
	case typeAnsi:
		return string(appendBytesText(nil, trimNUL(b), escNone))
	case typeInt8:
		return int8(b[0])
	case typeUint8:
		return b[0]
	case typeInt16:
		return int16(le.Uint16(b))
	case typeUint16:
		return le.Uint16(b)
	case typeInt32:
		return int32(le.Uint32(b))
	case typeUint32, typeHex32:
		return le.Uint32(b)
	case typeInt64:
		return int64(le.Uint64(b))
	case typeUint64, typeHex64:
		return le.Uint64(b)
	case typeReal32:
		return math.Float32frombits(le.Uint32(b))
	case typeReal64:
		return math.Float64frombits(le.Uint64(b))
	case typeBool:
		return le.Uint32(b) != 0
	case typeBinary:
		return append([]byte(nil), b...)
	case typeGUID:
		return string(appendGUID(nil, b))
	case typeSizeT:
		if len(b) >= 8 {
			return le.Uint64(b)
		}
		if len(b) >= 4 {
			return uint64(le.Uint32(b))
		}
		return nil
	case typeFileTime:
		return filetimeToTime(le.Uint64(b))
	case typeSysTime:
		return systemtimeToTime(b)
	case typeSID:
		return string(appendSID(nil, b))
	}
	return nil
}

// arrayAny decodes an array value into a typed slice.
func arrayAny(t uint8, b []byte) any {
	switch t {
	case typeString, typeAnsi, typeGUID, typeSID:
		var out []string
		forEachElem(t, b, func(e []byte) { out = append(out, scalarAny(t, e).(string)) })
		return out
	}
	var out []any
	forEachElem(t, b, func(e []byte) { out = append(out, scalarAny(t, e)) })
	switch t {
	case typeInt8:
		return collect[int8](out)
	case typeUint8:
		return collect[uint8](out)
	case typeInt16:
		return collect[int16](out)
	case typeUint16:
		return collect[uint16](out)
	case typeInt32:
		return collect[int32](out)
	case typeUint32, typeHex32:
		return collect[uint32](out)
	case typeInt64:
		return collect[int64](out)
	case typeUint64, typeHex64, typeSizeT:
		return collect[uint64](out)
	case typeReal32:
		return collect[float32](out)
	case typeReal64:
		return collect[float64](out)
	case typeBool:
		return collect[bool](out)
	case typeFileTime, typeSysTime:
		return collect[time.Time](out)
	}
	return out
}

func collect[T any](in []any) []T {
	out := make([]T, 0, len(in))
	for _, v := range in {
		if t, ok := v.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// goValue decodes v for the event API.
func (v *value) goValue() any {
	if v.typ&typeArray != 0 {
		return arrayAny(v.typ&^typeArray, v.raw)
	}
	if v.typ == typeBinXML {
		if v.frag == nil {
			return nil
		}
		return string(v.frag.appendXML(nil))
	}
	return scalarAny(v.typ, v.raw)
}
