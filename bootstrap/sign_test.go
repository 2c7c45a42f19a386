package bootstrap_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry/bootstrap"
	"github.com/quarry-dfir/quarry/bootstrap/bootstraptest"
)

// windowsParams are a Windows bootstrap's parameters with a made-up build pin.
func windowsParams() bootstrap.Params {
	return bootstrap.Params{OS: "windows", ServerURL: "https://quarry.example:8443/", EnrolToken: "qe_Zm9vYmFyYmF6cXV4",
		Builds: map[string]string{"windows/amd64": strings.Repeat("ab", 32)}, Version: "1.2.3", ConnectionID: 12}
}

func TestSign(t *testing.T) {
	certPEM, keyPEM := bootstraptest.CodeSigningCert(t)
	bootstraptest.NeedSignTool(t)
	s, err := bootstrap.Render(windowsParams())
	if err != nil {
		t.Fatal(err)
	}
	signed, err := bootstrap.Sign(context.Background(), s.Content, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(signed, s.Content[:100]) || !bytes.Contains(signed, []byte("# SIG # Begin signature block")) {
		t.Fatalf("signed script does not look like the script plus a signature block")
	}
	if len(signed) >= bootstrap.MaxScriptSize {
		t.Errorf("signed script is %d bytes", len(signed))
	}
	verify := func(content []byte) ([]byte, error) { return bootstraptest.Verify(t, content, certPEM) }
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
	other, _ := bootstraptest.CodeSigningCert(t)
	if out, err := bootstraptest.Verify(t, signed, other); err == nil {
		t.Errorf("verified against an unrelated CA:\n%s", out)
	}

	for name, args := range map[string][3][]byte{
		"NoKey":    {s.Content, certPEM, nil},
		"BadKey":   {s.Content, certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
		"KeyOther": {s.Content, other, keyPEM},
	} {
		if _, err := bootstrap.Sign(context.Background(), args[0], args[1], args[2]); err == nil {
			t.Errorf("%s: Sign succeeded", name)
		}
	}
}
