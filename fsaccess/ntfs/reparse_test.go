package ntfs

import (
	"encoding/binary"
	"testing"
	"unicode/utf16"
)

// reparseBuffer builds a REPARSE_DATA_BUFFER with the given substitute and
// print names.
func reparseBuffer(tag uint32, subst, print string) []byte {
	enc := func(s string) []byte {
		var b []byte
		for _, u := range utf16.Encode([]rune(s)) {
			b = binary.LittleEndian.AppendUint16(b, u)
		}
		return b
	}
	sb, pb := enc(subst), enc(print)
	b := binary.LittleEndian.AppendUint32(nil, tag)
	b = binary.LittleEndian.AppendUint16(b, 0) // data length, unused here
	b = binary.LittleEndian.AppendUint16(b, 0)
	for _, v := range []int{0, len(sb), len(sb), len(pb)} {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	if tag == reparseTagSymlink {
		b = binary.LittleEndian.AppendUint32(b, 1) // relative flag
	}
	return append(append(b, sb...), pb...)
}

func TestParseReparse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		want   string
		isLink bool
	}{
		{"Junction", reparseBuffer(reparseTagMountPoint, `\??\C:\Users\Public`, `C:\Users\Public`), `C:\Users\Public`, true},
		{"Symlink", reparseBuffer(reparseTagSymlink, `..\target.txt`, `..\target.txt`), `..\target.txt`, true},
		{"NoPrintName", reparseBuffer(reparseTagMountPoint, `\??\D:\`, ""), `\??\D:\`, true},
		{"CloudFile", reparseBuffer(0x9000001A, "x", "x"), "", false},
		{"Short", []byte{0x0c, 0, 0, 0xa0}, "", false},
		{"NamesOutOfRange", append(reparseBuffer(reparseTagSymlink, "a", "b")[:20], 0xff, 0xff), "", true},
	} {
		got, isLink := parseReparse(tc.in)
		if got != tc.want || isLink != tc.isLink {
			t.Errorf("%s: parseReparse = %q, %v; want %q, %v", tc.name, got, isLink, tc.want, tc.isLink)
		}
	}
}
