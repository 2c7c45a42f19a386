package livestate

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// parseProcArgs splits kern.procargs2: argc, the executable path, NUL
// padding, then argc NUL-terminated arguments (followed by the environment,
// which is not collected).
func parseProcArgs(b []byte) (exe, cmdline string) {
	if len(b) < 4 {
		return "", ""
	}
	argc := int(binary.LittleEndian.Uint32(b))
	rest := b[4:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return string(rest), ""
	}
	exe, rest = string(rest[:i]), bytes.TrimLeft(rest[i:], "\x00")
	var args []string
	for len(args) < argc && len(rest) > 0 {
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			j = len(rest)
		}
		args = append(args, string(rest[:j]))
		rest = rest[min(j+1, len(rest)):]
	}
	return exe, strings.Join(args, " ")
}
