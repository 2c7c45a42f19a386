package evtxwriter

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// Field values whose binary XML type cannot be told from their Go type alone are wrapped in these types.
// Plain Go values map as follows: string -> String, int8..int64 and uint8..uint64 -> the integer type of
// the same width, float32/float64 -> Real32/Real64, bool -> Boolean, []byte -> Binary, time.Time ->
// FILETIME, nil -> Null, []string -> an array of strings, []uint16/[]uint32/[]uint64 -> arrays of them.
type (
	// GUID is written as a GUID value: "5770385F-C22A-43E0-BF4C-06F5698FFBD9", braces optional.
	GUID string
	// SID is written as a binary security identifier: "S-1-5-21-...".
	SID string
	// HexInt32 is a 32-bit integer that readers show in hexadecimal (0x1f).
	HexInt32 uint32
	// HexInt64 is a 64-bit integer that readers show in hexadecimal, such as a logon id (0x3e7).
	HexInt64 uint64
	// SystemTime is written as a SYSTEMTIME (millisecond precision, UTC) rather than a FILETIME.
	SystemTime time.Time
)

// Binary XML value types (the libevtx "value type" table).
const (
	typeNull       = 0x00
	typeString     = 0x01
	typeInt8       = 0x03
	typeUInt8      = 0x04
	typeInt16      = 0x05
	typeUInt16     = 0x06
	typeInt32      = 0x07
	typeUInt32     = 0x08
	typeInt64      = 0x09
	typeUInt64     = 0x0a
	typeReal32     = 0x0b
	typeReal64     = 0x0c
	typeBool       = 0x0d
	typeBinary     = 0x0e
	typeGUID       = 0x0f
	typeFileTime   = 0x11
	typeSystemTime = 0x12
	typeSID        = 0x13
	typeHexInt32   = 0x14
	typeHexInt64   = 0x15
	typeArray      = 0x80
)

// maxValueSize is the largest substitution value: its size is a 16-bit field of the descriptor.
const maxValueSize = math.MaxUint16

// valueType returns the binary XML type a Go value is written as.
func valueType(v any) (byte, error) {
	switch v.(type) {
	case nil:
		return typeNull, nil
	case string:
		return typeString, nil
	case int8:
		return typeInt8, nil
	case uint8:
		return typeUInt8, nil
	case int16:
		return typeInt16, nil
	case uint16:
		return typeUInt16, nil
	case int32:
		return typeInt32, nil
	case uint32:
		return typeUInt32, nil
	case int64:
		return typeInt64, nil
	case uint64:
		return typeUInt64, nil
	case float32:
		return typeReal32, nil
	case float64:
		return typeReal64, nil
	case bool:
		return typeBool, nil
	case []byte:
		return typeBinary, nil
	case GUID:
		return typeGUID, nil
	case time.Time:
		return typeFileTime, nil
	case SystemTime:
		return typeSystemTime, nil
	case SID:
		return typeSID, nil
	case HexInt32:
		return typeHexInt32, nil
	case HexInt64:
		return typeHexInt64, nil
	case []string:
		return typeArray | typeString, nil
	case []uint16:
		return typeArray | typeUInt16, nil
	case []uint32:
		return typeArray | typeUInt32, nil
	case []uint64:
		return typeArray | typeUInt64, nil
	}
	return 0, fmt.Errorf("unsupported value type %T", v)
}

// appendValue appends v's binary form (as typed by valueType) to b.
func appendValue(b []byte, v any) ([]byte, error) {
	le := binary.LittleEndian
	switch x := v.(type) {
	case nil:
		return b, nil
	case string:
		return appendUTF16(b, x), nil
	case int8:
		return append(b, byte(x)), nil
	case uint8:
		return append(b, x), nil
	case int16:
		return le.AppendUint16(b, uint16(x)), nil
	case uint16:
		return le.AppendUint16(b, x), nil
	case int32:
		return le.AppendUint32(b, uint32(x)), nil
	case uint32:
		return le.AppendUint32(b, x), nil
	case int64:
		return le.AppendUint64(b, uint64(x)), nil
	case uint64:
		return le.AppendUint64(b, x), nil
	case float32:
		return le.AppendUint32(b, math.Float32bits(x)), nil
	case float64:
		return le.AppendUint64(b, math.Float64bits(x)), nil
	case bool:
		if x {
			return le.AppendUint32(b, 1), nil
		}
		return le.AppendUint32(b, 0), nil
	case []byte:
		return append(b, x...), nil
	case GUID:
		return appendGUID(b, string(x))
	case time.Time:
		ft, err := fileTime(x)
		if err != nil {
			return b, err
		}
		return le.AppendUint64(b, ft), nil
	case SystemTime:
		return appendSystemTime(b, time.Time(x))
	case SID:
		return appendSID(b, string(x))
	case HexInt32:
		return le.AppendUint32(b, uint32(x)), nil
	case HexInt64:
		return le.AppendUint64(b, uint64(x)), nil
	case []string:
		for _, s := range x {
			if strings.IndexByte(s, 0) >= 0 {
				return b, fmt.Errorf("string array element %q holds a NUL, the element separator", s)
			}
			b = appendUTF16(b, s)
			b = append(b, 0, 0)
		}
		return b, nil
	case []uint16:
		for _, n := range x {
			b = le.AppendUint16(b, n)
		}
		return b, nil
	case []uint32:
		for _, n := range x {
			b = le.AppendUint32(b, n)
		}
		return b, nil
	case []uint64:
		for _, n := range x {
			b = le.AppendUint64(b, n)
		}
		return b, nil
	}
	return b, fmt.Errorf("unsupported value type %T", v)
}

// appendUTF16 appends s as UTF-16LE without a terminator. Invalid UTF-8 becomes U+FFFD, as it would in
// any Windows API that converts it.
func appendUTF16(b []byte, s string) []byte {
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			b = append(b, byte(r1), byte(r1>>8), byte(r2), byte(r2>>8))
			continue
		}
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}

// utf16Len is the number of UTF-16 code units of s.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r >= 0x10000 {
			n++
		}
	}
	return n
}

// fileTimeEpoch is 1601-01-01, the FILETIME origin.
var fileTimeEpoch = time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)

// fileTime converts t to 100-nanosecond intervals since 1601. Go's Duration covers only ±292 years, so
// the conversion goes through whole seconds.
func fileTime(t time.Time) (uint64, error) {
	if t.Before(fileTimeEpoch) {
		return 0, fmt.Errorf("time %v is before 1601, the FILETIME origin", t)
	}
	secs := t.Unix() - fileTimeEpoch.Unix()
	if uint64(secs) > math.MaxUint64/10_000_000-1 {
		return 0, fmt.Errorf("time %v is beyond the FILETIME range", t)
	}
	return uint64(secs)*1e7 + uint64(t.Nanosecond()/100), nil
}

func appendSystemTime(b []byte, t time.Time) ([]byte, error) {
	t = t.UTC()
	if t.Year() < 1601 || t.Year() > 30827 {
		return b, fmt.Errorf("time %v outside the SYSTEMTIME range", t)
	}
	le := binary.LittleEndian
	for _, n := range []int{t.Year(), int(t.Month()), int(t.Weekday()), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond() / 1e6} {
		b = le.AppendUint16(b, uint16(n))
	}
	return b, nil
}

// appendGUID writes a GUID in its Windows layout: the first three groups little endian, the rest as is.
func appendGUID(b []byte, s string) ([]byte, error) {
	raw, err := parseGUID(s)
	if err != nil {
		return b, err
	}
	return append(b, raw[:]...), nil
}

func parseGUID(s string) ([16]byte, error) {
	var g [16]byte
	t := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(t) != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
		return g, fmt.Errorf("guid %q: want 8-4-4-4-12 hexadecimal digits", s)
	}
	h, err := hex.DecodeString(t[0:8] + t[9:13] + t[14:18] + t[19:23] + t[24:])
	if err != nil {
		return g, fmt.Errorf("guid %q: %w", s, err)
	}
	g[0], g[1], g[2], g[3] = h[3], h[2], h[1], h[0]
	g[4], g[5] = h[5], h[4]
	g[6], g[7] = h[7], h[6]
	copy(g[8:], h[8:])
	return g, nil
}

// appendSID writes "S-R-A-S1-S2..." as revision, sub-authority count, 48-bit big-endian authority and
// little-endian 32-bit sub-authorities.
func appendSID(b []byte, s string) ([]byte, error) {
	parts := strings.Split(s, "-")
	if len(parts) < 3 || parts[0] != "S" && parts[0] != "s" || len(parts)-3 > 15 {
		return b, fmt.Errorf("sid %q: want S-revision-authority[-subauthority]..., at most 15 subauthorities", s)
	}
	rev, err := strconv.ParseUint(parts[1], 10, 8)
	if err != nil {
		return b, fmt.Errorf("sid %q: revision: %w", s, err)
	}
	var auth uint64
	if strings.HasPrefix(parts[2], "0x") || strings.HasPrefix(parts[2], "0X") {
		auth, err = strconv.ParseUint(parts[2][2:], 16, 48)
	} else {
		auth, err = strconv.ParseUint(parts[2], 10, 48)
	}
	if err != nil {
		return b, fmt.Errorf("sid %q: authority: %w", s, err)
	}
	b = append(b, byte(rev), byte(len(parts)-3))
	for i := 5; i >= 0; i-- {
		b = append(b, byte(auth>>(8*i)))
	}
	for _, p := range parts[3:] {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return b, fmt.Errorf("sid %q: subauthority %q: %w", s, p, err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
	}
	return b, nil
}
