package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// SignTool is the program Sign runs: Debian's osslsigncode package (2.7 or later signs PowerShell).
var SignTool = "osslsigncode"

// Sign adds an Authenticode signature to a PowerShell script, with the code-signing certificate and
// its key in PEM (certPEM may carry the chain after the leaf), so a tenant can keep unsigned script
// execution off in Live Response. No timestamp is requested: signing must not depend on a third
// party being reachable, and a script is re-signed whenever Quarry renders it anew.
func Sign(ctx context.Context, ps1, certPEM, keyPEM []byte) ([]byte, error) {
	if len(ps1) == 0 || len(certPEM) == 0 || len(keyPEM) == 0 {
		return nil, errors.New("bootstrap: sign: script, certificate and key are required")
	}
	tool, err := exec.LookPath(SignTool)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: sign: %s not found (install the Debian package osslsigncode): %w", SignTool, err)
	}
	dir, err := os.MkdirTemp("", "quarry-sign-")
	if err != nil {
		return nil, fmt.Errorf("bootstrap: sign: %w", err)
	}
	defer os.RemoveAll(dir)
	// The tool takes the script type from the extension.
	in, out := filepath.Join(dir, "in.ps1"), filepath.Join(dir, "out.ps1")
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for name, b := range map[string][]byte{in: ps1, cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			return nil, fmt.Errorf("bootstrap: sign: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, "sign", "-certs", cert, "-key", key, "-h", "sha256",
		"-n", "Quarry bootstrap", "-in", in, "-out", out)
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bootstrap: sign: %s: %w: %s", SignTool, err, bytes.TrimSpace(msg.Bytes()))
	}
	signed, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: sign: %w", err)
	}
	return signed, nil
}
