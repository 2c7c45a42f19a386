package upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"
)

// The collector API paths, relative to the server URL.
const (
	PreflightPath = "/api/v1/collector/preflight"
	HeartbeatPath = "/api/v1/collector/heartbeat"
	StatusPath    = "/api/v1/collector/status"
	EnrolPath     = "/api/v1/collector/enrol"
	UploadsPath   = "/api/v1/uploads/"
)

// MaxClockSkew is the difference between host and server clocks above which Preflight warns: beyond
// it the host's timestamps in the timeline need the analyst's attention.
const MaxClockSkew = 5 * time.Minute

// PreflightResult is the server's answer to a preflight.
type PreflightResult struct {
	AcquisitionID  int64         `json:"acquisition_id"`
	MaxUploadBytes int64         `json:"max_upload_bytes"`
	ServerTime     time.Time     `json:"server_time"`
	SkewSeconds    float64       `json:"clock_skew_seconds"`
	ClockSkew      time.Duration `json:"-"` // host's clock minus the server's; positive when the host is ahead
}

// Preflight proves the whole path works before any collection starts: the token, TLS, any proxy in
// between (a random probe and its hash must arrive intact) and the clocks. A refused token fails at
// once with ErrUnauthorized; transient failures are retried a few times.
func (c *Client) Preflight(ctx context.Context) (PreflightResult, error) {
	probe := make([]byte, 1024)
	rand.Read(probe)
	sum := sha256.Sum256(probe)
	var res PreflightResult
	err := c.attempts(ctx, "preflight", func() error {
		sent := c.cfg.Now()
		body := map[string]string{
			"probe":        base64.StdEncoding.EncodeToString(probe),
			"probe_sha256": hex.EncodeToString(sum[:]),
			"client_time":  sent.UTC().Format(time.RFC3339Nano),
		}
		res = PreflightResult{}
		return c.postJSON(ctx, "preflight", PreflightPath, body, &res, http.StatusOK)
	})
	if err != nil {
		return PreflightResult{}, fmt.Errorf("upload: %w", err)
	}
	res.ClockSkew = time.Duration(res.SkewSeconds * float64(time.Second))
	if res.SkewSeconds == 0 && !res.ServerTime.IsZero() {
		res.ClockSkew = c.cfg.Now().Sub(res.ServerTime)
	}
	if math.Abs(res.ClockSkew.Seconds()) > MaxClockSkew.Seconds() {
		c.cfg.Logf("warning: host clock differs from the server's by %s (positive: host ahead); host timestamps may be off", res.ClockSkew.Round(time.Second))
	}
	return res, nil
}

// Phases of a collector run, as reported in heartbeats.
const (
	PhaseStarting   = "starting"
	PhaseCollecting = "collecting"
	PhaseUploading  = "uploading"
	PhaseDone       = "done"
	PhaseFailed     = "failed"
)

// Heartbeat is one progress report.
type Heartbeat struct {
	Phase      string `json:"phase"`
	FilesDone  int64  `json:"files_done"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total"`
	Message    string `json:"message,omitempty"`
}

// Heartbeat sends one progress report, once: a lost heartbeat is replaced by the next. When the
// server answers that the acquisition is over (cancelled, expired or failed), the error wraps
// ErrAcquisitionClosed.
func (c *Client) Heartbeat(ctx context.Context, hb Heartbeat) error {
	err := c.postJSON(ctx, "heartbeat", HeartbeatPath, hb, nil, http.StatusNoContent, http.StatusOK)
	var se *statusError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && se.status == http.StatusConflict:
		return fmt.Errorf("upload: %w: %s", ErrAcquisitionClosed, se.body)
	}
	return fmt.Errorf("upload: %w", err)
}

// Heartbeats sends current() every interval until stop is called or ctx ends. It is best effort:
// failures are logged (once per run of failures, so an unreachable server does not flood the log)
// and never end the collection by themselves. When the server says the acquisition is over, the
// heartbeats stop and closed (if not nil) is called with that error, so the caller can stop working
// for nobody. stop waits for the goroutine and is safe to call twice.
func (c *Client) Heartbeats(ctx context.Context, interval time.Duration, current func() Heartbeat, closed func(error)) (stop func()) {
	// stop ends the loop but lets a report in flight finish, so that it cannot reach the server
	// after the caller's final report and undo it.
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case <-t.C:
			}
			hctx, done := context.WithTimeout(ctx, max(interval, 10*time.Second))
			err := c.Heartbeat(hctx, current())
			done()
			if errors.Is(err, ErrAcquisitionClosed) {
				if closed != nil {
					closed(err)
				}
				return
			}
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				c.cfg.Logf("heartbeat failed (will keep trying): %v", err)
				failing = true
			case err == nil && failing:
				c.cfg.Logf("heartbeat delivered again")
				failing = false
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); wg.Wait() }) }
}

// Status is the server's verdict on the acquisition's upload.
type Status struct {
	State      string `json:"state"` // "received" (or later: "processing", "completed") or "failed"; others mean not yet decided
	Error      string `json:"error,omitempty"`
	EvidenceID int64  `json:"evidence_id,omitempty"`
	SHA256     string `json:"sha256,omitempty"`
}

// Received reports whether the server holds the package as evidence.
func (s Status) Received() bool {
	switch s.State {
	case "received", "processing", "completed":
		return true
	}
	return false
}

// decided reports whether the state is final for the upload.
func (s Status) decided() bool {
	return s.Received() || s.State == "failed" || s.State == "cancelled" || s.State == "expired"
}

// Status asks the server once for the acquisition's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	u, err := c.resolve(StatusPath)
	if err != nil {
		return Status{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Status{}, fmt.Errorf("upload: status: %w", err)
	}
	resp, err := c.do(req, "status", http.StatusOK)
	if err != nil {
		return Status{}, fmt.Errorf("upload: %w", err)
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("upload: status: decode: %w", err)
	}
	return st, nil
}

// waitVerdict polls Status until the server decides, for at most StatusWait: the server may verify
// a large package after answering the last PATCH.
func (c *Client) waitVerdict(ctx context.Context) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StatusWait)
	defer cancel()
	var last error
	for n := 1; ; n++ {
		st, err := c.Status(ctx)
		switch {
		case err == nil && st.decided():
			return st, nil
		case err == nil:
			last = fmt.Errorf("state still %q", st.State)
		case permanent(err) && ctx.Err() == nil:
			return Status{}, err
		default:
			last = err
		}
		if sleep(ctx, c.backoff(n)) != nil {
			return Status{}, fmt.Errorf("upload: no verdict from the server within %s: %w", c.cfg.StatusWait, last)
		}
	}
}

func (c *Client) postJSON(ctx context.Context, op, path string, in, out any, want ...int) error {
	u, err := c.resolve(path)
	if err != nil {
		return err
	}
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req, op, want...)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s: decode: %w", op, err)
	}
	return nil
}
