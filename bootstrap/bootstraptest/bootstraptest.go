// Package bootstraptest helps tests check Authenticode-signed bootstrap scripts: a throw-away
// code-signing certificate, and verification with the signing tool.
package bootstraptest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/bootstrap"
)

// NeedSignTool finds osslsigncode; CI must have it (Debian package osslsigncode), elsewhere the
// signing tests are skipped.
func NeedSignTool(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath(bootstrap.SignTool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is required in CI (apt-get install osslsigncode): %v", bootstrap.SignTool, err)
		}
		tb.Skipf("%s not installed (Debian package osslsigncode)", bootstrap.SignTool)
	}
	return path
}

// CodeSigningCert makes a self-signed code-signing certificate and its key, in PEM.
func CodeSigningCert(tb testing.TB) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Quarry test code signing"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// Verify checks a signed PowerShell script against caPEM with the signing tool and returns its
// output; err is non-nil when the signature does not verify.
func Verify(tb testing.TB, script, caPEM []byte) ([]byte, error) {
	tb.Helper()
	tool := NeedSignTool(tb)
	dir := tb.TempDir()
	ca, f := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "script.ps1")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(f, script, 0o600); err != nil {
		tb.Fatal(err)
	}
	return exec.Command(tool, "verify", "-CAfile", ca, "-in", f).CombinedOutput()
}
