package upload_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/upload"
	"github.com/quarry-dfir/quarry/upload/uploadtest"
)

func enrolConfig(srv *uploadtest.Server, mod func(*upload.Config)) upload.Config {
	// An hour of backoff: a retry of a refusal would hang the test instead of passing it.
	cfg := upload.Config{Server: srv.URL, Token: srv.EnrolToken, MinBackoff: time.Hour, MaxBackoff: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

func TestEnrol(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		tok, err := upload.Enrol(ctx, enrolConfig(srv, nil), srv.AcquisitionID, "web-07", "linux")
		if err != nil || tok != srv.Token {
			t.Fatalf("Enrol = %q, %v; want the server's upload token", tok, err)
		}
		if got := srv.Enrolments(); len(got) != 1 || got[0] != (uploadtest.Enrolment{AcquisitionID: srv.AcquisitionID, Hostname: "web-07", OS: "linux"}) {
			t.Fatalf("enrolments = %+v", got)
		}
		// The upload token then works like --token's.
		if _, err := newClient(t, srv, &logs{}, nil).Preflight(ctx); err != nil {
			t.Fatalf("preflight with the enrolled token: %v", err)
		}
	})

	refusals := []struct {
		name   string
		mod    func(*upload.Config)
		acq    int64
		want   string
		status int
	}{
		{name: "UnknownToken", mod: func(c *upload.Config) { c.Token = "qe_secret-wrong" }, want: "the token is invalid or expired", status: 401},
		{name: "UploadToken", want: "the token is invalid or expired", status: 401},
		{name: "UnknownAcquisition", acq: 7, want: "Acquisition 7 does not exist", status: 404},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			srv := uploadtest.New(t, false)
			mod := tt.mod
			if tt.name == "UploadToken" {
				mod = func(c *upload.Config) { c.Token = srv.Token }
			}
			acq := srv.AcquisitionID
			if tt.acq != 0 {
				acq = tt.acq
			}
			tok, err := upload.Enrol(ctx, enrolConfig(srv, mod), acq, "web-07", "linux")
			if err == nil || tok != "" || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Enrol = %q, %v; want an error saying %q", tok, err, tt.want)
			}
			if errors.Is(err, upload.ErrUnauthorized) != (tt.status == 401) {
				t.Errorf("errors.Is(%v, ErrUnauthorized) = %v", err, !(tt.status == 401))
			}
			if strings.Contains(err.Error(), "secret-wrong") || strings.Contains(err.Error(), srv.Token) {
				t.Errorf("error shows a token: %v", err)
			}
			if n := srv.Requests(http.MethodPost, upload.EnrolPath); n != 1 {
				t.Errorf("%d enrol requests, want 1 (refusals are not retried)", n)
			}
		})
	}

	t.Run("EnrolledAlready", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		if _, err := upload.Enrol(ctx, enrolConfig(srv, nil), srv.AcquisitionID, "h", "linux"); err != nil {
			t.Fatal(err)
		}
		_, err := upload.Enrol(ctx, enrolConfig(srv, nil), srv.AcquisitionID, "h", "linux")
		if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "enrolled already") {
			t.Fatalf("second Enrol = %v, want the 409 and the server's words", err)
		}
		if n := srv.Requests(http.MethodPost, upload.EnrolPath); n != 2 {
			t.Errorf("%d enrol requests, want 2", n)
		}
	})

	t.Run("RetriesServerErrors", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		var fails atomic.Int32
		fails.Store(2)
		cfg := enrolConfig(srv, func(c *upload.Config) {
			c.MinBackoff, c.MaxBackoff = time.Millisecond, time.Millisecond
			c.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if fails.Add(-1) >= 0 {
					return &http.Response{StatusCode: 503, Body: io.NopCloser(strings.NewReader("busy")), Request: r}, nil
				}
				return http.DefaultTransport.RoundTrip(r)
			})
		})
		if tok, err := upload.Enrol(ctx, cfg, srv.AcquisitionID, "h", "linux"); err != nil || tok != srv.Token {
			t.Fatalf("Enrol after two 503s = %q, %v", tok, err)
		}
	})

	t.Run("TLS", func(t *testing.T) {
		srv := uploadtest.New(t, true)
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := upload.Enrol(ctx, enrolConfig(srv, nil), srv.AcquisitionID, "h", "linux"); err == nil {
			t.Fatal("Enrol trusted an unknown CA")
		}
		if _, err := upload.Enrol(ctx, enrolConfig(srv, func(c *upload.Config) { c.CACertFile = ca }), srv.AcquisitionID, "h", "linux"); err != nil {
			t.Fatalf("Enrol with --ca-cert: %v", err)
		}
	})

	t.Run("BadArguments", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		for _, cfg := range []upload.Config{
			enrolConfig(srv, func(c *upload.Config) { c.Token = "" }),
			enrolConfig(srv, func(c *upload.Config) { c.Server = "ftp://x" }),
		} {
			if _, err := upload.Enrol(ctx, cfg, 42, "h", "linux"); err == nil {
				t.Errorf("Enrol(%+v) = nil error", cfg)
			}
		}
		if _, err := upload.Enrol(ctx, enrolConfig(srv, nil), 0, "h", "linux"); err == nil {
			t.Error("Enrol(acquisition 0) = nil error")
		}
		if n := srv.Requests(http.MethodPost, upload.EnrolPath); n != 0 {
			t.Errorf("%d requests for bad arguments", n)
		}
	})
}
