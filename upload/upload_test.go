package upload_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/upload"
	"github.com/quarry-dfir/quarry/upload/uploadtest"
)

// logs collects Logf lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// newClient builds a client for srv with fast retries; mod adjusts the config.
func newClient(t *testing.T, srv *uploadtest.Server, l *logs, mod func(*upload.Config)) *upload.Client {
	t.Helper()
	cfg := upload.Config{
		Server: srv.URL, Token: srv.Token, ChunkSize: 256 << 10,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxFailures: 20, Logf: l.Logf,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := upload.New(cfg)
	if err != nil {
		t.Fatalf("upload.New: %v", err)
	}
	return c
}

// writePackage writes n random bytes and returns the path and their hex SHA-256.
func writePackage(t *testing.T, n int) (string, string) {
	t.Helper()
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	path := filepath.Join(t.TempDir(), "pkg.zip")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

// cutTransport fails the body of the next `cuts` PATCH requests after `after` bytes, the way a flaky
// network or proxy drops a connection mid-transfer; onCut runs at each cut.
type cutTransport struct {
	base  http.RoundTripper
	after int64
	cuts  atomic.Int32
	onCut func()
}

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && c.cuts.Add(-1) >= 0 {
		r = r.Clone(r.Context())
		r.Body = &cutBody{ReadCloser: r.Body, left: c.after, onCut: c.onCut}
	}
	return c.base.RoundTrip(r)
}

type cutBody struct {
	io.ReadCloser
	left  int64
	onCut func()
}

var errCut = errors.New("connection cut by test")

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		if b.onCut != nil {
			b.onCut()
		}
		return 0, errCut
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

func TestUploadFile(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		path, sum := writePackage(t, 700<<10)
		var last atomic.Int64
		st, err := newClient(t, srv, &logs{}, nil).UploadFile(context.Background(), path, upload.Options{
			AcquisitionID: 42, Progress: func(done, total int64) { last.Store(done) },
		})
		if err != nil {
			t.Fatalf("UploadFile: %v", err)
		}
		if !st.Received() || st.SHA256 != sum {
			t.Errorf("verdict = %+v, want received with sha256 %s", st, sum)
		}
		assertSameFile(t, srv.Received(), path)
		if got := last.Load(); got != 700<<10 {
			t.Errorf("last progress = %d, want %d", got, 700<<10)
		}
	})

	t.Run("CutSeveralTimes", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		path, sum := writePackage(t, 1<<20+12345)
		cut := &cutTransport{base: http.DefaultTransport, after: 100 << 10}
		cut.cuts.Store(4)
		l := &logs{}
		c := newClient(t, srv, l, func(cfg *upload.Config) { cfg.Transport = cut })
		st, err := c.UploadFile(context.Background(), path, upload.Options{})
		if err != nil {
			t.Fatalf("UploadFile: %v\nlog:\n%s", err, l)
		}
		if st.SHA256 != sum || !st.Received() {
			t.Errorf("verdict = %+v, want received %s", st, sum)
		}
		if left := cut.cuts.Load(); left > 0 {
			t.Errorf("%d cuts never happened", left)
		}
		if n := srv.Requests(http.MethodPost, upload.UploadsPath); n != 1 {
			t.Errorf("%d uploads created, want 1 (a cut must resume, not restart)", n)
		}
		assertSameFile(t, srv.Received(), path)
	})

	t.Run("RestartResumes", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		size := 1 << 20
		path, sum := writePackage(t, size)

		// The first collector is killed a little into its third chunk.
		ctx, kill := context.WithCancel(context.Background())
		cut := &cutTransport{base: http.DefaultTransport, after: 10 << 10, onCut: kill}
		cut.cuts.Store(100)
		first := newClient(t, srv, &logs{}, func(cfg *upload.Config) {
			cfg.Transport = &skipPatches{RoundTripper: cut, skip: 2}
		})
		if _, err := first.UploadFile(ctx, path, upload.Options{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("first UploadFile = %v, want context.Canceled", err)
		}
		var state upload.State
		b, err := os.ReadFile(upload.StatePath(path))
		if err != nil || json.Unmarshal(b, &state) != nil || state.URL == "" || state.SHA256 != sum || state.Size != int64(size) {
			t.Fatalf("resume state = %s (%v), want url, size %d, sha256 %s", b, err, size, sum)
		}
		before := srv.PatchBytes()
		if before < 2*256<<10 {
			t.Fatalf("server holds %d bytes before the restart, want at least two chunks", before)
		}

		st, err := newClient(t, srv, &logs{}, nil).UploadFile(context.Background(), path, upload.Options{})
		if err != nil || !st.Received() {
			t.Fatalf("second UploadFile = %+v, %v", st, err)
		}
		if n := srv.Requests(http.MethodPost, upload.UploadsPath); n != 1 {
			t.Errorf("%d uploads created, want 1", n)
		}
		if total := srv.PatchBytes(); total > int64(size)+20<<10 {
			t.Errorf("server read %d PATCH bytes for a %d byte package: the restart started over", total, size)
		}
		assertSameFile(t, srv.Received(), path)

		// A third run after the server took the package only asks for the verdict.
		st, err = newClient(t, srv, &logs{}, nil).UploadFile(context.Background(), path, upload.Options{})
		if err != nil || !st.Received() {
			t.Fatalf("third UploadFile = %+v, %v", st, err)
		}
		if n := srv.Requests(http.MethodPost, upload.UploadsPath); n != 1 {
			t.Errorf("%d uploads created after completion, want 1", n)
		}
	})

	t.Run("HashMismatch", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		path, _ := writePackage(t, 10<<10)
		wrong := strings.Repeat("ab", 32)
		st, err := newClient(t, srv, &logs{}, nil).UploadFile(context.Background(), path, upload.Options{SHA256: wrong})
		if !errors.Is(err, upload.ErrRejected) || !strings.Contains(err.Error(), "hash mismatch") {
			t.Fatalf("UploadFile = %v, want ErrRejected with the server's hash mismatch", err)
		}
		if st.State != "failed" {
			t.Errorf("verdict state = %q, want failed", st.State)
		}
	})

	// A resume state that does not lead anywhere costs a new upload, never a failure.
	other := uploadtest.New(t, false)
	for _, tt := range []struct {
		name  string
		state func(server, sum string) string
	}{
		{"StateOfAnotherFile", func(server, _ string) string {
			return `{"url":"` + server + `/api/v1/uploads/nonexistent","size":5,"sha256":"00"}`
		}},
		{"UploadGone", func(server, sum string) string {
			return `{"url":"` + server + `/api/v1/uploads/0123456789abcdef","size":10240,"sha256":"` + sum + `"}`
		}},
		{"Garbage", func(string, string) string { return "\x00{{not json" }},
		{"AnotherTokensUpload", func(_, sum string) string {
			return `{"url":"` + other.URL + `/api/v1/uploads/0123456789abcdef","size":10240,"sha256":"` + sum + `"}`
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := uploadtest.New(t, false)
			path, sum := writePackage(t, 10<<10)
			if err := os.WriteFile(upload.StatePath(path), []byte(tt.state(srv.URL, sum)), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := newClient(t, srv, &logs{}, nil).UploadFile(context.Background(), path, upload.Options{}); err != nil {
				t.Fatalf("UploadFile: %v", err)
			}
			assertSameFile(t, srv.Received(), path)
		})
	}

	t.Run("ResumeStateLost", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		path, _ := writePackage(t, 300<<10)
		cut := &cutTransport{base: http.DefaultTransport, after: 10 << 10}
		cut.cuts.Store(1)
		c := newClient(t, srv, &logs{}, func(cfg *upload.Config) { cfg.Transport = cut; cfg.MaxFailures = 1 })
		if _, err := c.UploadFile(context.Background(), path, upload.Options{}); err == nil {
			t.Fatal("UploadFile with one allowed failure survived a cut")
		}
		os.Remove(upload.StatePath(path))
		c = newClient(t, srv, &logs{}, func(cfg *upload.Config) { cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour })
		_, err := c.UploadFile(context.Background(), path, upload.Options{})
		if err == nil || !strings.Contains(err.Error(), "resume it with HEAD and PATCH") {
			t.Errorf("UploadFile without its resume state = %v, want the server's conflict at once", err)
		}
	})

	t.Run("ErrUnauthorized", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		path, _ := writePackage(t, 10<<10)
		c := newClient(t, srv, &logs{}, func(cfg *upload.Config) { cfg.Token = "qu_wrong" })
		if _, err := c.UploadFile(context.Background(), path, upload.Options{}); !errors.Is(err, upload.ErrUnauthorized) {
			t.Fatalf("UploadFile = %v, want ErrUnauthorized", err)
		}
		if n := srv.Requests(http.MethodPost, upload.UploadsPath); n != 1 {
			t.Errorf("%d create attempts with a refused token, want 1", n)
		}
	})
}

// skipPatches lets the first skip PATCH requests through untouched before handing the rest to the
// wrapped transport.
type skipPatches struct {
	http.RoundTripper
	skip int
	mu   sync.Mutex
}

func (s *skipPatches) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	pass := r.Method == http.MethodPatch && s.skip > 0
	if pass {
		s.skip--
	}
	s.mu.Unlock()
	if pass || r.Method != http.MethodPatch {
		return http.DefaultTransport.RoundTrip(r)
	}
	return s.RoundTripper.RoundTrip(r)
}

func assertSameFile(t *testing.T, got, want string) {
	t.Helper()
	if got == "" {
		t.Fatal("server received no complete upload")
	}
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("server holds %d bytes that differ from the %d byte package", len(a), len(b))
	}
}

func TestPreflight(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		l := &logs{}
		res, err := newClient(t, srv, l, nil).Preflight(context.Background())
		if err != nil {
			t.Fatalf("Preflight: %v", err)
		}
		if res.AcquisitionID != 42 || res.MaxUploadBytes != 1<<30 {
			t.Errorf("Preflight = %+v, want acquisition 42, max 1 GiB", res)
		}
		if strings.Contains(l.String(), "clock") {
			t.Errorf("clock warning without skew: %s", l)
		}
	})

	t.Run("ClockSkew", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		srv.SkewSeconds = -400
		l := &logs{}
		res, err := newClient(t, srv, l, nil).Preflight(context.Background())
		if err != nil {
			t.Fatalf("Preflight: %v", err)
		}
		if res.ClockSkew != -400*time.Second || !strings.Contains(l.String(), "warning: host clock differs") {
			t.Errorf("skew %s, log %q; want -6m40s and a warning", res.ClockSkew, l)
		}
	})

	t.Run("ErrUnauthorized", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		c := newClient(t, srv, &logs{}, func(cfg *upload.Config) {
			cfg.Token = "qu_secret-wrong-token"
			cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour // a retry would hang the test
		})
		_, err := c.Preflight(context.Background())
		if !errors.Is(err, upload.ErrUnauthorized) || !strings.Contains(err.Error(), "the token is invalid or expired") {
			t.Fatalf("Preflight = %v, want ErrUnauthorized", err)
		}
		if strings.Contains(err.Error(), "secret-wrong") {
			t.Errorf("error shows the token: %v", err)
		}
		if n := srv.Requests(http.MethodPost, upload.PreflightPath); n != 1 {
			t.Errorf("%d preflight requests, want 1", n)
		}
	})

	t.Run("RetriesServerErrors", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		var fails atomic.Int32
		fails.Store(2)
		c := newClient(t, srv, &logs{}, func(cfg *upload.Config) {
			cfg.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if fails.Add(-1) >= 0 {
					return &http.Response{StatusCode: 502, Body: io.NopCloser(strings.NewReader("bad gateway")), Request: r}, nil
				}
				return http.DefaultTransport.RoundTrip(r)
			})
		})
		if _, err := c.Preflight(context.Background()); err != nil {
			t.Fatalf("Preflight after two 502s: %v", err)
		}
	})
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTLS(t *testing.T) {
	srv := uploadtest.New(t, true)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mod     func(*upload.Config)
		wantErr bool
	}{
		{"UntrustedFailsAtOnce", func(cfg *upload.Config) { cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour }, true},
		{"CACert", func(cfg *upload.Config) { cfg.CACertFile = caFile }, false},
		{"Insecure", func(cfg *upload.Config) { cfg.Insecure = true }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newClient(t, srv, &logs{}, tt.mod).Preflight(context.Background())
			if (err != nil) != tt.wantErr {
				t.Errorf("Preflight = %v, want error %v", err, tt.wantErr)
			}
		})
	}
	t.Run("BadCAFile", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		os.WriteFile(bad, []byte("not a certificate"), 0o600)
		if _, err := upload.New(upload.Config{Server: srv.URL, Token: "qu_x", CACertFile: bad}); err == nil {
			t.Error("New with a file without PEM = nil error")
		}
	})
}

func TestProxyFromEnvironment(t *testing.T) {
	srv := uploadtest.New(t, false)
	target, _ := url.Parse(srv.URL)
	var proxied atomic.Int32
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		proxied.Add(1)
		r.Out.URL.Scheme, r.Out.URL.Host = "http", target.Host
		r.Out.Host = r.In.Host // keep the name the client used, so tus Locations stay on it
	}}
	proxy := &http.Server{Handler: rp}
	ln := listen(t)
	go proxy.Serve(ln)
	t.Cleanup(func() { proxy.Close() })

	// Go never proxies loopback addresses, so the client uses a name only the proxy resolves.
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
	t.Setenv("HTTP_PROXY", "http://"+ln.Addr().String())
	c := newClient(t, srv, &logs{}, func(cfg *upload.Config) { cfg.Server = "http://quarry.test:" + target.Port() })
	if _, err := c.Preflight(context.Background()); err != nil {
		t.Fatalf("Preflight through the proxy: %v", err)
	}
	path, _ := writePackage(t, 300<<10)
	if _, err := c.UploadFile(context.Background(), path, upload.Options{}); err != nil {
		t.Fatalf("UploadFile through the proxy: %v", err)
	}
	// preflight, create, 2 patches, status
	if n := proxied.Load(); n < 5 {
		t.Errorf("proxy saw %d requests, want at least 5", n)
	}
}

func TestHeartbeats(t *testing.T) {
	t.Run("Delivered", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		var n atomic.Int64
		stop := newClient(t, srv, &logs{}, nil).Heartbeats(context.Background(), time.Millisecond, func() upload.Heartbeat {
			return upload.Heartbeat{Phase: upload.PhaseCollecting, FilesDone: n.Add(1)}
		}, nil)
		for range 3 {
			srv.WaitHeartbeat()
		}
		stop()
		stop()
		hbs := srv.Heartbeats()
		if len(hbs) < 3 || hbs[0].Phase != "collecting" || hbs[2].FilesDone != 3 {
			t.Errorf("heartbeats = %+v, want 3+ collecting with growing counts", hbs)
		}
	})

	t.Run("FailuresLoggedOnce", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		l := &logs{}
		var sent atomic.Int32
		done := make(chan struct{})
		c := newClient(t, srv, l, func(cfg *upload.Config) {
			cfg.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if sent.Add(1) == 5 {
					close(done)
				}
				return nil, errors.New("network down")
			})
		})
		stop := c.Heartbeats(context.Background(), time.Millisecond, func() upload.Heartbeat { return upload.Heartbeat{Phase: "collecting"} }, func(err error) {
			t.Errorf("closed(%v) for a network failure", err)
		})
		<-done
		stop()
		if got := strings.Count(l.String(), "heartbeat failed"); got != 1 {
			t.Errorf("%d failure lines for a run of failures, want 1:\n%s", got, l)
		}
	})

	t.Run("AcquisitionClosed", func(t *testing.T) {
		srv := uploadtest.New(t, false)
		srv.Closed = true
		got := make(chan error, 1)
		stop := newClient(t, srv, &logs{}, nil).Heartbeats(context.Background(), time.Millisecond, func() upload.Heartbeat {
			return upload.Heartbeat{Phase: upload.PhaseCollecting}
		}, func(err error) { got <- err })
		err := <-got
		stop()
		if !errors.Is(err, upload.ErrAcquisitionClosed) || !strings.Contains(err.Error(), "stop collecting") {
			t.Errorf("closed(%v), want ErrAcquisitionClosed with the server's words", err)
		}
		if n := srv.Requests(http.MethodPost, upload.HeartbeatPath); n != 1 {
			t.Errorf("%d heartbeats after the server closed the acquisition, want 1", n)
		}
	})
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		cfg  upload.Config
	}{
		{"NoServer", upload.Config{Token: "qu_x"}},
		{"BadScheme", upload.Config{Server: "ftp://x", Token: "qu_x"}},
		{"NoToken", upload.Config{Server: "https://x"}},
		{"TokenWithNewline", upload.Config{Server: "https://x", Token: "qu_x\nEvil: 1"}},
		{"MissingCA", upload.Config{Server: "https://x", Token: "qu_x", CACertFile: "/nonexistent/ca.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := upload.New(tt.cfg); err == nil {
				t.Errorf("New(%+v) = nil error", tt.cfg)
			}
		})
	}
}
