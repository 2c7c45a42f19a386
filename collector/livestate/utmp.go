package livestate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// utmpRecordSize is sizeof(struct utmp) in glibc and musl on 64-bit and
// 32-bit Linux alike (ut_tv is two int32 for compatibility).
const utmpRecordSize = 384

// utmpUserProcess is ut_type USER_PROCESS: a logged-on user.
const utmpUserProcess = 7

// maxUtmpRecords bounds a hostile or runaway utmp file.
const maxUtmpRecords = 1 << 16

// parseUtmp reads Linux utmp records and returns the logged-on users.
func parseUtmp(r io.Reader) ([]User, error) {
	out := []User{}
	rec := make([]byte, utmpRecordSize)
	for i := 0; i < maxUtmpRecords; i++ {
		if _, err := io.ReadFull(r, rec); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, fmt.Errorf("utmp record %d: %w", i, err)
		}
		if int16(binary.LittleEndian.Uint16(rec[0:])) != utmpUserProcess {
			continue
		}
		u := User{
			PID:      int(int32(binary.LittleEndian.Uint32(rec[4:]))),
			Terminal: cString(rec[8:40]),
			Name:     cString(rec[44:76]),
			Host:     cString(rec[76:332]),
		}
		if sec := int32(binary.LittleEndian.Uint32(rec[340:])); sec > 0 {
			usec := int32(binary.LittleEndian.Uint32(rec[344:]))
			u.LoginTime = time.Unix(int64(sec), int64(usec)*1000).UTC()
		}
		if u.Name != "" {
			out = append(out, u)
		}
	}
	return out, fmt.Errorf("utmp: more than %d records", maxUtmpRecords)
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
