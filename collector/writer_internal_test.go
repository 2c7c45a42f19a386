package collector

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestCompressionChoice(t *testing.T) {
	random := make([]byte, probeSize)
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	text := bytes.Repeat([]byte("Nov 20 12:00:01 web-03 sshd[811]: Accepted password for root\n"), 1000)
	tests := []struct {
		name string
		head []byte
		want bool // stored
	}{
		{"x.log", text, false},
		{"Security.evtx", append([]byte("ElfFile\x00"), text...), false},
		{"x.bin", random, true},
		{"x.log.gz", text, true},               // by extension
		{"noext", []byte{0x1f, 0x8b, 8}, true}, // by magic
		{"small", random[:100], false},         // too little to judge: deflate
	}
	for _, tt := range tests {
		if got := compressed(tt.name, tt.head) || incompressible(tt.head); got != tt.want {
			t.Errorf("stored(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBadName(t *testing.T) {
	tests := map[string]bool{
		"/var/log/auth.log":                            true,
		`C:\Users\Zoë\NTUSER.DAT`:                      true,
		"/tmp/bad\xff":                                 false,
		"/tmp/a\nb":                                    false,
		"/tmp/invoice\u202egpj.exe":                    false,
		"/tmp/" + string(make([]byte, 0)):              true,
		"/" + string(bytes.Repeat([]byte("a"), 256)):   false,
		string(bytes.Repeat([]byte("/aaaaaaaa"), 600)): false,
	}
	for p, ok := range tests {
		if got := badName(p) == ""; got != ok {
			t.Errorf("badName(%q) = %q, want ok=%v", p, badName(p), ok)
		}
	}
}
