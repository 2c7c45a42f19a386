package secret_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry/secret"
)

func mustBox(t *testing.T, key []byte) *secret.Box {
	t.Helper()
	b, err := secret.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	b := mustBox(t, key)
	sealed := b.Seal([]byte("hunter2-client-secret"), "connection:1:client_secret")
	if strings.Contains(sealed, "hunter2") {
		t.Fatalf("sealed value contains the plaintext: %q", sealed)
	}
	if again := b.Seal([]byte("hunter2-client-secret"), "connection:1:client_secret"); again == sealed {
		t.Fatal("two seals of the same value are equal: nonce reuse")
	}
	got, err := b.Open(sealed, "connection:1:client_secret")
	if err != nil || string(got) != "hunter2-client-secret" {
		t.Fatalf("Open = %q, %v; want the plaintext", got, err)
	}

	other := mustBox(t, bytes.Repeat([]byte{8}, 32))
	tamper := []byte(sealed)
	tamper[len(tamper)-3] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"WrongKey":     func() ([]byte, error) { return other.Open(sealed, "connection:1:client_secret") },
		"WrongPlace":   func() ([]byte, error) { return b.Open(sealed, "connection:2:client_secret") },
		"Tampered":     func() ([]byte, error) { return b.Open(string(tamper), "connection:1:client_secret") },
		"NoVersion":    func() ([]byte, error) { return b.Open(strings.TrimPrefix(sealed, "v1:"), "connection:1:client_secret") },
		"Short":        func() ([]byte, error) { return b.Open("v1:AAAA", "x") },
		"NotBase64":    func() ([]byte, error) { return b.Open("v1:!!!", "x") },
		"EmptyString":  func() ([]byte, error) { return b.Open("", "x") },
		"OnlyPrefixed": func() ([]byte, error) { return b.Open("v1:", "x") },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := open(); err != secret.ErrOpen {
				t.Fatalf("Open = %v, want ErrOpen", err)
			}
		})
	}
}

func TestNewBoxRejectsShortKey(t *testing.T) {
	if _, err := secret.NewBox(make([]byte, 16)); err == nil {
		t.Fatal("NewBox accepted a 16-byte key")
	}
}

func TestParseKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"Hex", strings.Repeat("ab", 32), true},
		{"Base64", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", true},
		{"TooShort", "abcd", false},
		{"Garbage", strings.Repeat("z", 64), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := secret.ParseKey(tc.in)
			if tc.ok && (err != nil || !bytes.Equal(got, key)) {
				t.Fatalf("ParseKey(%q) = %x, %v; want %x", tc.in, got, err, key)
			}
			if !tc.ok && err == nil {
				t.Fatalf("ParseKey(%q) succeeded, want error", tc.in)
			}
		})
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret.key")
	k1, err := secret.LoadOrCreateKey("", path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	k2, err := secret.LoadOrCreateKey("", path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load = %x, %v; want the same key %x", k2, err, k1)
	}
	env := strings.Repeat("01", 32)
	k3, err := secret.LoadOrCreateKey(env, path)
	if err != nil || bytes.Equal(k3, k1) {
		t.Fatalf("env key not preferred: %x, %v", k3, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := secret.LoadOrCreateKey("", path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}
}
