// Package uploadtest runs a stand-in for quarry's collector API on 127.0.0.1 for tests of the upload
// client and of quarry-host: the real tusd handler with its file store for /api/v1/uploads/, plus
// enrol, preflight, heartbeat and status endpoints that follow the issue #5 and #6 contracts and verify the
// declared SHA-256 like the server does. It is for tests only; quarry-host never imports it.
package uploadtest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"golang.org/x/exp/slog"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/upload"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
)

// Server is the stand-in. Its fields may be changed before the first request.
type Server struct {
	*httptest.Server
	Token         string
	EnrolToken    string // accepted by the enrol endpoint only: it enrols AcquisitionID once, answering Token
	AcquisitionID int64
	SkewSeconds   float64 // reported by preflight
	Reject        string  // when set, every completed upload fails with this error (a server-side failure)
	Closed        bool    // when set, heartbeats answer 409: the acquisition was cancelled
	OnPatch       func()  // when set, called as each PATCH arrives (tests interrupt the client there)

	mu         sync.Mutex
	requests   map[string]int // "POST /api/v1/collector/preflight" → count
	patchBytes int64
	creates    int
	heartbeats []upload.Heartbeat
	status     upload.Status
	received   string // path of the completed upload in the store
	beat       chan struct{}
	enrolments []Enrolment
}

// Enrolment is one accepted enrol request.
type Enrolment struct {
	AcquisitionID int64  `json:"acquisition_id"`
	Hostname      string `json:"hostname"`
	OS            string `json:"os"`
}

// New starts a server on 127.0.0.1 (TLS when tls is true) and closes it when the test ends.
func New(tb testing.TB, tls bool) *Server {
	tb.Helper()
	s := &Server{
		Token:         "qu_test-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		EnrolToken:    "qe_test-enrol-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		AcquisitionID: 42,
		requests:      map[string]int{},
		status:        upload.Status{State: "collecting"},
		beat:          make(chan struct{}, 1000),
	}
	composer := handler.NewStoreComposer()
	filestore.New(tb.TempDir()).UseIn(composer)
	composer.UseLocker(&waitLocker{held: map[string]chan struct{}{}})
	tus, err := handler.NewHandler(handler.Config{
		BasePath:                  upload.UploadsPath,
		StoreComposer:             composer,
		Logger:                    slog.New(slog.NewTextHandler(io.Discard, nil)),
		PreFinishResponseCallback: s.finish,
		DisableDownload:           true,
	})
	if err != nil {
		tb.Fatalf("tusd handler: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(upload.UploadsPath, http.StripPrefix(upload.UploadsPath, tus))
	mux.HandleFunc("POST "+upload.EnrolPath, s.enrol)
	mux.HandleFunc("POST "+upload.PreflightPath, s.preflight)
	mux.HandleFunc("POST "+upload.HeartbeatPath, s.heartbeat)
	mux.HandleFunc("GET "+upload.StatusPath, s.statusHandler)
	s.Server = httptest.NewUnstartedServer(s.auth(mux))
	// A client refusing the test certificate is an expected case, not news for the test log.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	tb.Cleanup(s.Close)
	return s
}

// auth counts every request and refuses those without the token, as the real server does.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.Method+" "+r.URL.Path]++
		s.mu.Unlock()
		if r.URL.Path == upload.EnrolPath {
			// Enrolment takes the enrolment token and nothing else, like quarry.
			if r.Header.Get("Authorization") != "Bearer "+s.EnrolToken {
				http.Error(w, `{"error":{"code":"unauthorized","message":"The enrolment token is not known to this server."}}`, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+s.Token {
			http.Error(w, `{"error":{"code":"unauthorized","message":"invalid or expired token"}}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == upload.UploadsPath {
			s.mu.Lock()
			// Like quarry: a token makes one upload, continued with HEAD and PATCH; only a decided
			// (failed) acquisition takes another.
			again := s.creates > 0 && s.status.State != "failed"
			closed := s.Closed
			s.creates++
			s.mu.Unlock()
			if closed {
				http.Error(w, `{"error":{"code":"conflict","message":"Acquisition 42 is cancelled; it takes no upload."}}`, http.StatusConflict)
				return
			}
			if again {
				http.Error(w, `{"error":{"code":"conflict","message":"This token created an upload already; resume it with HEAD and PATCH."}}`, http.StatusConflict)
				return
			}
		}
		if r.Method == http.MethodPatch {
			if s.OnPatch != nil {
				s.OnPatch()
			}
			r.Body = &counter{ReadCloser: r.Body, s: s}
		}
		next.ServeHTTP(w, r)
	})
}

type counter struct {
	io.ReadCloser
	s *Server
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.s.mu.Lock()
	c.s.patchBytes += int64(n)
	c.s.mu.Unlock()
	return n, err
}

// enrol answers the upload token for AcquisitionID, once; other ids are unknown.
func (s *Server) enrol(w http.ResponseWriter, r *http.Request) {
	var in Enrolment
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, `{"error":{"code":"invalid","message":"bad json"}}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case in.AcquisitionID != s.AcquisitionID:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":{"code":"not_found","message":"Acquisition %d does not exist on this server."}}`, in.AcquisitionID)
	case len(s.enrolments) > 0:
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, `{"error":{"code":"conflict","message":"Acquisition %d is enrolled already; each acquisition enrols once."}}`, in.AcquisitionID)
	default:
		s.enrolments = append(s.enrolments, in)
		writeJSON(w, map[string]any{"upload_token": s.Token, "acquisition_id": s.AcquisitionID, "expires_at": time.Now().Add(time.Hour).UTC()})
	}
}

// Enrolments returns the enrol requests that were accepted.
func (s *Server) Enrolments() []Enrolment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Enrolment(nil), s.enrolments...)
}

func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Probe       string    `json:"probe"`
		ProbeSHA256 string    `json:"probe_sha256"`
		ClientTime  time.Time `json:"client_time"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	probe, err := base64.StdEncoding.DecodeString(in.Probe)
	sum := sha256.Sum256(probe)
	if err != nil || len(probe) != 1024 || hex.EncodeToString(sum[:]) != in.ProbeSHA256 || in.ClientTime.IsZero() {
		http.Error(w, `{"error":{"code":"invalid","message":"probe damaged in transit"}}`, http.StatusBadRequest)
		return
	}
	writeJSON(w, map[string]any{
		"ok": true, "server_time": time.Now().UTC().Format(time.RFC3339Nano), "acquisition_id": s.AcquisitionID,
		"max_upload_bytes": 1 << 30, "clock_skew_seconds": s.SkewSeconds,
	})
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	var hb upload.Heartbeat
	if err := json.NewDecoder(r.Body).Decode(&hb); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if s.Closed {
		s.mu.Unlock()
		http.Error(w, `{"error":{"code":"conflict","message":"Acquisition 42 is cancelled; stop collecting."}}`, http.StatusConflict)
		return
	}
	s.heartbeats = append(s.heartbeats, hb)
	if !s.status.Received() && s.status.State != "failed" {
		s.status.State = hb.Phase
	}
	s.mu.Unlock()
	select {
	case s.beat <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) statusHandler(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, s.status)
}

// finish verifies the declared hash against the bytes received, like quarry's intake.
func (s *Server) finish(ev handler.HookEvent) (handler.HTTPResponse, error) {
	path := ev.Upload.Storage["Path"]
	f, err := os.Open(path)
	if err != nil {
		return handler.HTTPResponse{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return handler.HTTPResponse{}, err
	}
	got := hex.EncodeToString(h.Sum(nil))
	declared := ev.Upload.MetaData["sha256"]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received = path
	switch {
	case s.Reject != "":
		s.status = upload.Status{State: "failed", Error: s.Reject}
	case declared != got:
		s.status = upload.Status{State: "failed", Error: fmt.Sprintf("hash mismatch: declared %s, received %s", declared, got)}
	default:
		s.status = upload.Status{State: "received", EvidenceID: 7, SHA256: got}
	}
	return handler.HTTPResponse{}, nil
}

// waitLocker serialises requests per upload, so a resuming client's HEAD waits for the server to
// finish writing the bytes of the PATCH that was cut. It never asks the holder to let go: tusd
// v2.9.1's memorylocker does, and tusd then races on its request context (seen under -race).
type waitLocker struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

func (l *waitLocker) NewLock(id string) (handler.Lock, error) { return &waitLock{l: l, id: id}, nil }

type waitLock struct {
	l  *waitLocker
	id string
}

func (k *waitLock) Lock(ctx context.Context, _ func()) error {
	for {
		k.l.mu.Lock()
		ch, busy := k.l.held[k.id]
		if !busy {
			k.l.held[k.id] = make(chan struct{})
			k.l.mu.Unlock()
			return nil
		}
		k.l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return handler.ErrLockTimeout
		}
	}
}

func (k *waitLock) Unlock() error {
	k.l.mu.Lock()
	defer k.l.mu.Unlock()
	close(k.l.held[k.id])
	delete(k.l.held, k.id)
	return nil
}

// Requests returns how many requests reached method and path (token or not).
func (s *Server) Requests(method, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[method+" "+path]
}

// PatchBytes returns the body bytes the server read from all PATCH requests, cut ones included.
func (s *Server) PatchBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.patchBytes
}

// Heartbeats returns the heartbeats received so far.
func (s *Server) Heartbeats() []upload.Heartbeat {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]upload.Heartbeat(nil), s.heartbeats...)
}

// WaitHeartbeat blocks until the next heartbeat arrives.
func (s *Server) WaitHeartbeat() { <-s.beat }

// Received returns the path of the completed upload's bytes, or "" before one completes.
func (s *Server) Received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// Status returns the verdict the server would report now.
func (s *Server) Status() upload.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
