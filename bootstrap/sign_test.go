package bootstrap

import (
	"bytes"
	"context"
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
)

// needSignTool finds osslsigncode; CI must have it (Debian package osslsigncode), elsewhere the
// signing tests are skipped.
func needSignTool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath(SignTool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (apt-get install osslsigncode): %v", SignTool, err)
		}
		t.Skipf("%s not installed (Debian package osslsigncode)", SignTool)
	}
	return path
}

// codeSigningCert makes a self-signed code-signing certificate and its key, in PEM.
func codeSigningCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Quarry test code signing"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func TestSign(t *testing.T) {
	tool := needSignTool(t)
	certPEM, keyPEM := codeSigningCert(t)
	s, err := Render(testParams("windows"))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := Sign(context.Background(), s.Content, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(signed, s.Content[:100]) || !bytes.Contains(signed, []byte("# SIG # Begin signature block")) {
		t.Fatalf("signed script does not look like the script plus a signature block")
	}
	if len(signed) >= MaxScriptSize {
		t.Errorf("signed script is %d bytes", len(signed))
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, certPEM, 0o600)
	verify := func(content []byte) ([]byte, error) {
		f := filepath.Join(dir, "script.ps1")
		os.WriteFile(f, content, 0o600)
		return exec.Command(tool, "verify", "-CAfile", ca, "-in", f).CombinedOutput()
	}
	if out, err := verify(signed); err != nil {
		t.Fatalf("verify signed script: %v\n%s", err, out)
	}
	tampered := bytes.Replace(signed, []byte("$ErrorActionPreference = 'Stop'"), []byte("$ErrorActionPreference = 'Gone'"), 1)
	if bytes.Equal(tampered, signed) {
		t.Fatal("tampering changed nothing")
	}
	if out, err := verify(tampered); err == nil {
		t.Errorf("a tampered script verified:\n%s", out)
	}
	// Another certificate's trust does not verify it either.
	other, _ := codeSigningCert(t)
	os.WriteFile(ca, other, 0o600)
	if out, err := verify(signed); err == nil {
		t.Errorf("verified against an unrelated CA:\n%s", out)
	}

	for name, args := range map[string][3][]byte{
		"NoKey":    {s.Content, certPEM, nil},
		"BadKey":   {s.Content, certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
		"KeyOther": {s.Content, other, keyPEM},
	} {
		if _, err := Sign(context.Background(), args[0], args[1], args[2]); err == nil {
			t.Errorf("%s: Sign succeeded", name)
		}
	}
}
