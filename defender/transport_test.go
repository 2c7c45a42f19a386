package defender

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryAfterHonoured(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header string
		scale  float64
		want   time.Duration
	}{
		{"Seconds", "7", 1, 7 * time.Second},
		{"HTTPDate", now.Add(30 * time.Second).Format(http.TimeFormat), 1, 30 * time.Second},
		{"NotScaled", "60", 60, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					w.Header().Set("Retry-After", tt.header)
					writeError(w, 429, "TooManyRequests", "slow down")
					return
				}
				writeJSON(w, 200, Machine{ID: "m1"})
			})
			c, rec := f.client(t, func(cfg *Config) {
				cfg.Now = func() time.Time { return now }
				cfg.Limits.TimeScale = tt.scale
			})
			m, err := c.GetMachine(ctxT(t), "m1")
			if err != nil || m.ID != "m1" {
				t.Fatalf("GetMachine = %v, %v", m, err)
			}
			if got := rec.all(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("waits = %v, want [%v]", got, tt.want)
			}
		})
	}
}

func TestRetryAfterTooLongIsReturned(t *testing.T) {
	var calls atomic.Int32
	f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "900")
		writeError(w, 429, "TooManyRequests", "slow down")
	})
	c, rec := f.client(t, nil)
	_, err := c.ListLibrary(ctxT(t))
	if d, ok := RetryAfter(err); !errors.Is(err, ErrThrottled) || !ok || d != 15*time.Minute {
		t.Fatalf("error = %v (retry after %v), want ErrThrottled after 15m", err, d)
	}
	if calls.Load() != 1 || len(rec.all()) != 0 {
		t.Errorf("calls = %d, waits = %v; a wait longer than MaxRetryAfter belongs to the caller", calls.Load(), rec.all())
	}
}

func TestRetriesOnServerAndNetworkErrors(t *testing.T) {
	tests := []struct {
		name      string
		fail      func(t *testing.T, w http.ResponseWriter)
		failures  int
		call      func(c *Client) error
		wantCalls int32
		wantErr   error
	}{
		{"GET503TwiceThenOK", fail503, 2, getMachine, 3, nil},
		{"GETConnectionLostThenOK", dropConnection, 1, getMachine, 2, nil},
		{"GETAlways500IsBounded", fail503, 100, getMachine, 4, ErrServer},
		{"DELETE502ThenOK", fail503, 1, deleteLib, 2, nil},
		{"PATCHWithoutCommentRetried", fail503, 1, patchStatus, 2, nil},
		{"PATCHWithCommentNotRetried", fail503, 1, patchComment, 1, ErrOutcomeUnknown},
		{"CollectPackageNotRetried", fail503, 1, collect, 1, ErrOutcomeUnknown},
		{"UploadWithOverrideRetried", fail503, 1, upload(true), 2, nil},
		{"UploadWithoutOverrideNotRetried", fail503, 1, upload(false), 1, ErrOutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
				if int(calls.Add(1)) <= tt.failures {
					tt.fail(t, w)
					return
				}
				switch r.Method {
				case http.MethodDelete:
					w.WriteHeader(204)
				default:
					writeJSON(w, 200, map[string]any{"id": "x"})
				}
			})
			c, rec := f.client(t, func(cfg *Config) {
				cfg.Limits.MaxAttempts = 4
				cfg.Limits.BaseBackoff = time.Second
				cfg.Limits.MaxBackoff = 4 * time.Second
			})
			err := tt.call(c)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if calls.Load() != tt.wantCalls {
				t.Errorf("requests = %d, want %d", calls.Load(), tt.wantCalls)
			}
			// Backoff n waits between half and all of min(base·2^(n-1), max).
			for i, d := range rec.all() {
				hi := min(time.Second<<i, 4*time.Second)
				if d < hi/2 || d > hi {
					t.Errorf("wait %d = %v, want within [%v, %v]", i+1, d, hi/2, hi)
				}
			}
		})
	}
}

func fail503(t *testing.T, w http.ResponseWriter) {
	writeError(w, 503, "ServiceUnavailable", "try later")
}

func getMachine(c *Client) error { _, err := c.GetMachine(context.Background(), "m1"); return err }
func deleteLib(c *Client) error  { return c.DeleteLibraryFile(context.Background(), "a.ps1") }
func patchStatus(c *Client) error {
	_, err := c.UpdateAlert(context.Background(), "a1", AlertUpdate{Status: "InProgress"})
	return err
}
func patchComment(c *Client) error {
	_, err := c.UpdateAlert(context.Background(), "a1", AlertUpdate{Comment: "collected"})
	return err
}
func collect(c *Client) error {
	_, err := c.CollectInvestigationPackage(context.Background(), "m1", "")
	return err
}
func upload(override bool) func(c *Client) error {
	return func(c *Client) error {
		_, err := c.UploadLibraryFile(context.Background(), LibraryUpload{FileName: "a.ps1", Content: []byte("x"), OverrideIfExists: override})
		return err
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	var calls atomic.Int32
	f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1); fail503(t, w) })
	c, _ := f.client(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	c.sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	_, err := c.GetMachine(ctx, "m1")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrServer) {
		t.Errorf("error = %v, want the 503 and context.Canceled", err)
	}
	if calls.Load() != 1 {
		t.Errorf("requests = %d after cancel, want 1", calls.Load())
	}
}

// fakeClock is a clock whose sleep advances it, so rate-limiter pacing runs instantly and exactly.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
	return ctx.Err()
}

func TestRateLimitsPerFamily(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		call   func(c *Client) error
		path   string
		window time.Duration
		max    int
		calls  int
	}{
		{"RunLiveResponse10PerMinute", Limits{}, func(c *Client) error {
			_, err := c.RunLiveResponse(context.Background(), "m1", LiveResponseRequest{Commands: []Command{RunScriptCommand("a.ps1", "")}})
			return err
		}, "/runliveresponse", time.Minute, 10, 35},
		{"GetMachine100PerMinute", Limits{PerHour: 1000000}, getMachine, "/api/machines/", time.Minute, 100, 350},
		{"GetMachine1500PerHour", Limits{PerMinute: 100000}, getMachine, "/api/machines/", time.Hour, 1500, 3200},
		{"PackageURI2PerMinute", Limits{}, func(c *Client) error { _, err := c.GetPackageURI(context.Background(), "a1"); return err },
			"/GetPackageUri", time.Minute, 2, 9},
		{"ScaledRunLiveResponse", Limits{TimeScale: 60}, func(c *Client) error {
			_, err := c.RunLiveResponse(context.Background(), "m1", LiveResponseRequest{Commands: []Command{RunScriptCommand("a.ps1", "")}})
			return err
		}, "/runliveresponse", time.Second, 10, 35},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			var mu sync.Mutex
			var at []time.Time
			f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, tt.path) || strings.Contains(r.URL.Path, tt.path) {
					mu.Lock()
					at = append(at, clock.Now())
					mu.Unlock()
				}
				switch {
				case strings.HasSuffix(r.URL.Path, "/GetPackageUri"):
					writeJSON(w, 200, map[string]string{"value": "https://blob.example/p.zip"})
				case r.Method == http.MethodPost:
					writeJSON(w, 201, MachineAction{ID: "a"})
				default:
					writeJSON(w, 200, Machine{ID: "m1"})
				}
			})
			c, _ := f.client(t, func(cfg *Config) { cfg.Limits = tt.limits; cfg.Now = clock.Now })
			c.sleep = clock.Sleep
			for range tt.calls {
				if err := tt.call(c); err != nil {
					t.Fatal(err)
				}
			}
			if len(at) != tt.calls {
				t.Fatalf("server saw %d calls, want %d", len(at), tt.calls)
			}
			// In every window the number of calls stays within the limit...
			for i := range at {
				j := i
				for j < len(at) && at[j].Sub(at[i]) < tt.window {
					j++
				}
				if j-i > tt.max {
					t.Fatalf("%d calls within %v from call %d, limit %d", j-i, tt.window, i, tt.max)
				}
			}
			// ...and the client does not crawl: it keeps at least half the documented throughput.
			took := at[len(at)-1].Sub(at[0])
			if need := 2 * time.Duration(float64(tt.calls)/float64(tt.max)*float64(tt.window)); took > need {
				t.Errorf("%d calls took %v of fake time, want at most %v", tt.calls, took, need)
			}
		})
	}
}

func TestEncodeQuery(t *testing.T) {
	q := map[string][]string{"$filter": {"machineId eq 'a b' and status eq 'Pending'"}, "$top": {"10"}, "$expand": {"evidence"}}
	got := encodeQuery(q)
	want := "$filter=machineId%20eq%20%27a%20b%27%20and%20status%20eq%20%27Pending%27&$expand=evidence&$top=10"
	if got != want {
		t.Errorf("encodeQuery = %s, want %s", got, want)
	}
}
