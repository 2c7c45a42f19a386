// Package secret seals secrets at rest (connection client secrets, signing keys) with AES-256-GCM
// under the server's key, which comes from QUARRY_SECRET_KEY or a key file created on first start.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of the sealing key in bytes (AES-256).
const KeySize = 32

// version prefixes every sealed value so the format can change without guessing.
const version = "v1:"

// Box seals and opens values under one key.
type Box struct {
	aead cipher.AEAD
}

// NewBox returns a Box for a 32-byte key.
func NewBox(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext. The associated data binds the sealed value to its place (for example
// "connection:12:client_secret"), so a value copied to another row does not open there.
func (b *Box) Seal(plaintext []byte, associated string) string {
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("secret: no randomness: " + err.Error()) // crypto/rand never fails on supported systems
	}
	out := b.aead.Seal(nonce, nonce, plaintext, []byte(associated))
	return version + base64.RawStdEncoding.EncodeToString(out)
}

// ErrOpen is returned when a sealed value is malformed, was sealed under another key, or was
// sealed for another place.
var ErrOpen = errors.New("secret: cannot open sealed value (wrong key, wrong place, or corrupted)")

// Open decrypts a value made by Seal with the same associated data.
func (b *Box) Open(sealed, associated string) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, version)
	if !ok {
		return nil, ErrOpen
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(raw) < b.aead.NonceSize()+b.aead.Overhead() {
		return nil, ErrOpen
	}
	n := b.aead.NonceSize()
	pt, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(associated))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// ParseKey accepts a key as 64 hex characters or as standard/URL base64 of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if k, err := hex.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, errors.New("secret: key must be 32 bytes written as 64 hex characters or base64")
}

// LoadOrCreateKey returns the key given in value (QUARRY_SECRET_KEY) when it is set; otherwise it
// reads the key file at path, creating it with a new random key and mode 0600 when it does not
// exist. A key file readable by group or others is refused: it guards every stored secret.
func LoadOrCreateKey(value, path string) ([]byte, error) {
	if value != "" {
		return ParseKey(value)
	}
	if b, err := os.ReadFile(path); err == nil {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("secret: key file %s is readable by others (mode %v); run chmod 600 on it", path, st.Mode().Perm())
		}
		k, err := ParseKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("secret: key file %s: %w", path, err)
		}
		return k, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("secret: read key file: %w", err)
	}
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("secret: generate key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("secret: create key folder: %w", err)
	}
	// O_EXCL: if another process created the file meanwhile, use theirs rather than overwrite it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKey("", path)
	} else if err != nil {
		return nil, fmt.Errorf("secret: create key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("secret: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("secret: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("secret: write key file: %w", err)
	}
	return k, nil
}
