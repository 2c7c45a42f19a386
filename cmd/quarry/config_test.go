package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/bootstrap/bootstraptest"
)

// TestConfigLimits: the Live Response limits, timeouts and signing settings come from flags and
// QUARRY_* variables, and a value that cannot work is refused with what to fix.
func TestConfigLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		want  string // an error substring, or "" for success
		check func(t *testing.T, c Config)
	}{
		{name: "Defaults", check: func(t *testing.T, c Config) {
			if c.LRMaxSessions != 25 || c.LRLaunchesPerMinute != 10 || c.LRWindowMargin != time.Second ||
				c.HeartbeatTimeout != 15*time.Minute || c.OfflineExpiry != 72*time.Hour || c.TimeScale != 1 || c.JobRescueAfter != 5*time.Minute {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "Env", env: map[string]string{"QUARRY_LR_MAX_SESSIONS": "5", "QUARRY_OFFLINE_EXPIRY": "24h"}, check: func(t *testing.T, c Config) {
			if c.LRMaxSessions != 5 || c.OfflineExpiry != 24*time.Hour {
				t.Errorf("from the environment: %+v", c)
			}
		}},
		{name: "FlagWins", env: map[string]string{"QUARRY_LR_LAUNCHES_PER_MINUTE": "5"}, args: []string{"--lr-launches-per-minute", "7"}, check: func(t *testing.T, c Config) {
			if c.LRLaunchesPerMinute != 7 {
				t.Errorf("launches = %d, want the flag's 7", c.LRLaunchesPerMinute)
			}
		}},
		{name: "BadDuration", env: map[string]string{"QUARRY_HEARTBEAT_TIMEOUT": "soon"}, want: "QUARRY_HEARTBEAT_TIMEOUT"},
		{name: "NegativeSessions", args: []string{"--lr-max-sessions", "-1"}, want: "must be at least 1"},
		{name: "ShortHeartbeat", args: []string{"--heartbeat-timeout", "10s"}, want: "at least a minute"},
		{name: "HugeMargin", args: []string{"--lr-window-margin", "2m"}, want: "between 0 and a minute"},
		{name: "CertWithoutKey", args: []string{"--sign-cert", "c.pem"}, want: "both --sign-cert and --sign-key"},
		{name: "SlowScale", args: []string{"--time-scale", "0.5"}, want: "time scale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var c Config
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.bind(fs, "127.0.0.1:0", t.TempDir())
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := c.normalize()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("normalize = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("normalize = %v, want an error about %q", err, tc.want)
			case tc.check != nil:
				tc.check(t, c)
			}
		})
	}
}

// TestSigner: a configured certificate is tried once at start, so a wrong one stops the server
// with a message instead of failing the first Windows acquisition.
func TestSigner(t *testing.T) {
	bootstraptest.NeedSignTool(t)
	cert, key := bootstraptest.CodeSigningCert(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, cert, 0o600)
	os.WriteFile(keyFile, key, 0o600)
	sign, err := signer(Config{SignCert: certFile, SignKey: keyFile})
	if err != nil || sign == nil {
		t.Fatalf("signer = %v", err)
	}
	signed, err := sign(context.Background(), []byte("Write-Output 'hello'\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := bootstraptest.Verify(t, signed, cert); err != nil {
		t.Fatalf("signature does not verify: %v\n%s", err, out)
	}
	other, _ := bootstraptest.CodeSigningCert(t)
	os.WriteFile(certFile, other, 0o600) // the key no longer matches the certificate
	if _, err := signer(Config{SignCert: certFile, SignKey: keyFile}); err == nil || !strings.Contains(err.Error(), "cannot sign") {
		t.Errorf("signer with a mismatched key = %v", err)
	}
	if _, err := signer(Config{SignCert: filepath.Join(dir, "missing.pem"), SignKey: keyFile}); err == nil {
		t.Error("signer with a missing certificate file succeeded")
	}
}
