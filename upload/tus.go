package upload

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Options describe one package upload.
type Options struct {
	SHA256        string // hex SHA-256 of the whole file; computed by reading it when empty
	AcquisitionID int64  // sent as upload metadata when not 0
	// Progress, when set, is called with the bytes the server holds or is being sent, as they grow.
	Progress func(done, total int64)
}

// State is what a collector keeps next to its package, in StatePath(package), so that after a restart
// it continues the same upload instead of starting over.
type State struct {
	URL    string `json:"url"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// StatePath is where the resume state of the package at path lives.
func StatePath(path string) string { return path + ".upload.json" }

// errGone means the server no longer knows the upload (expired, or finished and moved to evidence).
var errGone = errors.New("upload unknown to the server")

const tusVersion = "1.0.0"

// UploadFile sends the package at path with tus 1.0.0 and returns the server's verdict. Connection
// failures are retried with backoff, learning the server's offset with HEAD each time, until ctx ends
// or Config.MaxFailures attempts in a row made no progress. An upload interrupted in any way (even a
// killed process) is continued by the next UploadFile of the same file. A verdict other than received
// is returned with an error wrapping ErrRejected.
func (c *Client) UploadFile(ctx context.Context, path string, opt Options) (Status, error) {
	f, err := os.Open(path)
	if err != nil {
		return Status{}, fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Status{}, fmt.Errorf("upload: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Status{}, fmt.Errorf("upload: %s is not a regular file", path)
	}
	t := &transfer{c: c, f: f, path: path, size: fi.Size(), sum: strings.ToLower(opt.SHA256), opt: opt}
	if t.sum == "" {
		if t.sum, err = fileSHA256(f); err != nil {
			return Status{}, fmt.Errorf("upload: hash %s: %w", path, err)
		}
	}
	st, err := t.run(ctx)
	if err != nil {
		return Status{}, err
	}
	if !st.Received() {
		msg := st.Error
		if msg == "" {
			msg = "state " + st.State
		}
		return st, fmt.Errorf("upload: %w: %s", ErrRejected, msg)
	}
	return st, nil
}

type transfer struct {
	c    *Client
	f    *os.File
	path string
	size int64
	sum  string
	opt  Options
}

func (t *transfer) run(ctx context.Context) (Status, error) {
	url := t.loadState()
	fromState := url != ""
	offset := int64(-1) // unknown: ask the server
	best := int64(-1)
	failures := 0
	adopted := false // url is an upload the server named on a repeated creation
	for {
		var err error
		switch {
		case url == "":
			if url, adopted, err = t.create(ctx); err == nil && !adopted {
				offset = 0
			}
		case offset < 0:
			offset, err = t.head(ctx, url)
			var se *statusError
			if fromState && errors.As(err, &se) && (se.status == http.StatusUnauthorized || se.status == http.StatusForbidden) {
				// The state was left by a run with another token (a new acquisition for the same
				// package): that upload is not ours to continue.
				err = fmt.Errorf("%w: the resume state belongs to another token", errGone)
			}
			fromState = false
		case offset >= t.size:
			t.progress(t.size)
			return t.c.waitVerdict(ctx)
		default:
			var n int64
			if n, err = t.patch(ctx, url, offset); err == nil {
				offset = n
			} else {
				offset = -1
			}
		}
		if err == nil {
			if offset > best {
				best, failures = offset, 0
				t.progress(offset)
			}
			continue
		}
		if ctx.Err() != nil {
			return Status{}, fmt.Errorf("upload: %w (the upload continues from %s when started again)", ctx.Err(), StatePath(t.path))
		}
		if errors.Is(err, errGone) && adopted {
			// The token's one upload holds another package: nothing this run sends can fit it.
			return Status{}, fmt.Errorf("upload: the server holds another upload for this token, which this package cannot continue: %w", err)
		}
		if errors.Is(err, errGone) {
			// A finished upload is moved into evidence by the server, so a restart after the last
			// byte finds it gone: the verdict says whether there is anything left to send.
			if st, serr := t.c.Status(ctx); serr == nil && st.decided() {
				return st, nil
			}
			t.c.cfg.Logf("%v; starting a new upload", err)
			url, offset = "", -1
			os.Remove(StatePath(t.path))
		} else if permanent(err) {
			return Status{}, fmt.Errorf("upload: %w", err)
		}
		failures++
		if t.c.cfg.MaxFailures > 0 && failures >= t.c.cfg.MaxFailures {
			return Status{}, fmt.Errorf("upload: giving up after %d failed attempts: %w", failures, err)
		}
		wait := t.c.backoff(failures)
		t.c.cfg.Logf("upload attempt failed (retry in %s): %v", wait.Round(10*time.Millisecond), err)
		if sleep(ctx, wait) != nil {
			return Status{}, fmt.Errorf("upload: %w (the upload continues from %s when started again)", ctx.Err(), StatePath(t.path))
		}
	}
}

func (t *transfer) progress(done int64) {
	if t.opt.Progress != nil {
		t.opt.Progress(done, t.size)
	}
}

// loadState returns the upload URL of a previous run for this very file, or "".
func (t *transfer) loadState() string {
	b, err := os.ReadFile(StatePath(t.path))
	if err != nil {
		return ""
	}
	var s State
	if json.Unmarshal(b, &s) != nil || s.Size != t.size || !strings.EqualFold(s.SHA256, t.sum) || s.URL == "" {
		t.c.cfg.Logf("ignoring %s: it describes another file", StatePath(t.path))
		return ""
	}
	return s.URL
}

// saveState writes the resume state atomically, so a crash never leaves half a file that would make
// the next run start over.
func (t *transfer) saveState(url string) error {
	b, err := json.MarshalIndent(State{URL: url, Size: t.size, SHA256: t.sum}, "", "  ")
	if err != nil {
		return err
	}
	dst := StatePath(t.path)
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// create opens the upload and returns its URL. adopted tells that the server answered with the
// upload this token made before (a creation whose answer was lost), whose offset is unknown.
func (t *transfer) create(ctx context.Context) (url string, adopted bool, err error) {
	u, err := t.c.resolve(UploadsPath)
	if err != nil {
		return "", false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return "", false, fmt.Errorf("create: %w", err)
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	meta := "filename " + b64(filepath.Base(t.path)) + ",sha256 " + b64(t.sum)
	if t.opt.AcquisitionID != 0 {
		meta += ",acquisition_id " + b64(strconv.FormatInt(t.opt.AcquisitionID, 10))
	}
	req.Header.Set("Tus-Resumable", tusVersion)
	req.Header.Set("Upload-Length", strconv.FormatInt(t.size, 10))
	req.Header.Set("Upload-Metadata", meta)
	resp, err := t.c.do(req, "create", http.StatusCreated, http.StatusConflict)
	if err != nil {
		return "", false, err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode == http.StatusConflict {
		// The token made its upload already: an earlier creation whose answer was lost. The
		// server says where it is; resuming it (HEAD, then PATCH from its offset) loses nothing.
		if loc == "" {
			return "", false, &statusError{op: "create", status: resp.StatusCode, body: serverMessage(b)}
		}
		adopted = true
		t.c.cfg.Logf("the server has this token's upload already; resuming it")
	}
	if loc == "" {
		return "", false, errors.New("create: no Location in the answer")
	}
	if loc, err = t.c.resolve(loc); err != nil {
		return "", false, fmt.Errorf("create: %w", err)
	}
	if err := t.saveState(loc); err != nil {
		// Without the state a restart starts over, which costs time but loses nothing.
		t.c.cfg.Logf("cannot save resume state: %v", err)
	}
	return loc, adopted, nil
}

func (t *transfer) head(ctx context.Context, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	req.Header.Set("Tus-Resumable", tusVersion)
	resp, err := t.c.do(req, "head", http.StatusOK, http.StatusNoContent)
	if err != nil {
		return 0, gone(err)
	}
	resp.Body.Close()
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 || off > t.size {
		return 0, fmt.Errorf("head: bad Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	if l := resp.Header.Get("Upload-Length"); l != "" && l != strconv.FormatInt(t.size, 10) {
		return 0, fmt.Errorf("head: server upload has length %s, package has %d: %w", l, t.size, errGone)
	}
	if sum := metadataValue(resp.Header.Get("Upload-Metadata"), "sha256"); sum != "" && sum != t.sum {
		return 0, fmt.Errorf("head: server upload is of package %s, not %s: %w", sum, t.sum, errGone)
	}
	return off, nil
}

// patch sends one chunk from offset and returns the server's new offset.
func (t *transfer) patch(ctx context.Context, url string, offset int64) (int64, error) {
	n := min(t.c.cfg.ChunkSize, t.size-offset)
	body := &countingReader{r: io.NewSectionReader(t.f, offset, n), base: offset, t: t}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, url, body)
	if err != nil {
		return 0, fmt.Errorf("patch: %w", err)
	}
	req.ContentLength = n
	req.Header.Set("Tus-Resumable", tusVersion)
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp, err := t.c.do(req, "patch", http.StatusNoContent, http.StatusOK)
	if err != nil {
		return 0, gone(err)
	}
	resp.Body.Close()
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off <= offset || off > t.size {
		return 0, fmt.Errorf("patch: bad Upload-Offset %q after sending from %d", resp.Header.Get("Upload-Offset"), offset)
	}
	return off, nil
}

// gone translates the statuses tus uses for an unknown upload into errGone.
func gone(err error) error {
	var se *statusError
	if errors.As(err, &se) && (se.status == http.StatusNotFound || se.status == http.StatusGone) {
		return fmt.Errorf("%w: %w", errGone, err)
	}
	return err
}

// countingReader reports bytes as they leave, so heartbeats move during an 8 MiB chunk.
type countingReader struct {
	r    io.Reader
	base int64
	t    *transfer
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.base += int64(n)
	if n > 0 {
		r.t.progress(r.base)
	}
	return n, err
}

func fileSHA256(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// metadataValue returns one value of a tus Upload-Metadata header ("key base64,key base64"), or "".
func metadataValue(h, key string) string {
	for pair := range strings.SplitSeq(h, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(pair), " ")
		if k == key {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return ""
			}
			return string(b)
		}
	}
	return ""
}
