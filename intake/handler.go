package intake

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
)

// caller is the authenticated upload token of a request and what it acts for.
type caller struct {
	token    *quarry.UploadToken
	ip       string
	uploadID string // for a create: the id the new upload gets
	sha256   string // for a create: the declared hash
	filename string
}

type callerKey struct{}

func callerFrom(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	return c
}

// actor names a token in custody entries and the audit log; never the secret.
func (c *caller) actor() string { return "upload-token:" + c.token.Prefix }

// Handler serves the collector-facing endpoints: the tus uploads under BasePath and
// preflight, heartbeat and status under CollectorPath. Every request needs an upload token,
// except enrolment, which needs an enrolment token.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+CollectorPath+"preflight", s.withToken(s.handlePreflight))
	mux.HandleFunc("POST "+CollectorPath+"heartbeat", s.withToken(s.handleHeartbeat))
	mux.HandleFunc("GET "+CollectorPath+"status", s.withToken(s.handleStatus))
	// Enrolment takes the enrolment token of a bootstrap script, not an upload token.
	mux.HandleFunc("POST "+EnrolPath, func(w http.ResponseWriter, r *http.Request) {
		if err := s.handleEnrol(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
	mux.HandleFunc(CollectorPath, func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, quarry.Errorf(quarry.ENOTFOUND, "No collector endpoint %s %s.", r.Method, r.URL.Path))
	})
	uploads := http.StripPrefix(strings.TrimSuffix(BasePath, "/"), s.tus)
	mux.HandleFunc(BasePath, s.withToken(func(w http.ResponseWriter, r *http.Request) error {
		if err := s.guardUpload(r); err != nil {
			return err
		}
		uploads.ServeHTTP(w, r)
		return nil
	}))
	return mux
}

func (s *Service) withToken(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticate(r)
		if err == nil {
			err = h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
		}
		if err != nil {
			s.fail(w, r, err)
		}
	}
}

// fail writes err; 413 is tus's own answer, which the domain's error codes do not have.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	if tl, ok := err.(*tooLarge); ok {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody("too_large", tl.msg))
		return
	}
	var ex *uploadExists
	if errors.As(err, &ex) {
		w.Header().Set("Location", ex.location)
	}
	s.cfg.WriteError(w, r, err)
}

// uploadExists answers a second creation with a token: 409 with the Location of the upload the
// token made, so that a collector whose first creation's answer was lost (a cut connection, a
// restarted server, its own timeout) resumes that upload instead of failing.
type uploadExists struct {
	location string
	err      error
}

func (e *uploadExists) Error() string { return e.err.Error() }
func (e *uploadExists) Unwrap() error { return e.err }

func (s *Service) authenticate(r *http.Request) (*caller, error) {
	secret := bearer(r)
	switch {
	case strings.HasPrefix(secret, EnrolTokenPrefix):
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "An enrolment token only enrols a collector and downloads collector builds; this endpoint needs the upload token that enrolment returned (qu_…).")
	case !strings.HasPrefix(secret, TokenPrefix):
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "An upload token is required: send 'Authorization: Bearer qu_…'.")
	}
	t, err := s.cfg.Tokens.FindUploadTokenByHash(r.Context(), auth.HashSecret(secret))
	if quarry.ErrorCode(err) == quarry.ENOTFOUND {
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "The upload token is not known.")
	} else if err != nil {
		return nil, err
	}
	switch now := s.cfg.Now(); {
	case t.RevokedAt != nil:
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "The upload token was revoked.")
	case !now.Before(t.ExpiresAt):
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "The upload token expired at %s.", t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return &caller{token: t, ip: s.cfg.ClientIP(r)}, nil
}

// guardUpload enforces what a token may do with tus before tusd sees the request: create one
// upload for its own acquisition, and HEAD or PATCH that upload only.
func (s *Service) guardUpload(r *http.Request) error {
	c := callerFrom(r.Context())
	if r.Header.Get("X-HTTP-Method-Override") != "" {
		// tusd would honour it and turn a POST into a PATCH behind these checks.
		return quarry.Errorf(quarry.EINVALID, "X-HTTP-Method-Override is not accepted.")
	}
	id := strings.Trim(strings.TrimPrefix(r.URL.Path, BasePath), "/")
	switch {
	case id == "" && r.Method == http.MethodPost:
		return s.checkCreate(r, c)
	case id == "":
		return quarry.Errorf(quarry.ENOTFOUND, "Create an upload with POST %s.", BasePath)
	case id != c.token.UploadID:
		// Not this token's upload: whether it exists is none of its business.
		return quarry.Errorf(quarry.ENOTFOUND, "No such upload.")
	case r.Method == http.MethodHead:
		return nil
	case r.Method == http.MethodPatch:
		if r.ContentLength > s.cfg.MaxChunkBytes {
			return &tooLarge{fmt.Sprintf("A PATCH may carry at most %d bytes.", s.cfg.MaxChunkBytes)}
		}
		r.Body = http.MaxBytesReader(nil, r.Body, s.cfg.MaxChunkBytes)
		return nil
	default:
		return quarry.Errorf(quarry.EFORBIDDEN, "An upload token may only HEAD and PATCH its upload.")
	}
}

// tooLarge is answered with 413, as tus answers an Upload-Length over the maximum.
type tooLarge struct{ msg string }

func (e *tooLarge) Error() string { return e.msg }

// checkCreate validates an upload creation: its length, its metadata (parsed strictly, as
// tusd silently drops values that are not base64), and the state of the acquisition.
func (s *Service) checkCreate(r *http.Request, c *caller) error {
	if r.Header.Get("Upload-Defer-Length") != "" || r.Header.Get("Upload-Concat") != "" {
		return quarry.Errorf(quarry.EINVALID, "Uploads must declare Upload-Length; deferred lengths and concatenation are not accepted.")
	}
	size, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
	if err != nil || size < 0 {
		return quarry.FieldError("Upload-Length", "Upload-Length must be a non-negative integer.")
	}
	if size == 0 {
		return quarry.FieldError("Upload-Length", "A package cannot be empty.")
	}
	if size > s.cfg.MaxUploadBytes {
		return &tooLarge{fmt.Sprintf("The package is %d bytes; this server accepts at most %d.", size, s.cfg.MaxUploadBytes)}
	}
	meta, err := parseMetadata(r.Header.Get("Upload-Metadata"))
	if err != nil {
		return err
	}
	sum := strings.ToLower(meta["sha256"])
	if sum == "" {
		return quarry.FieldError("sha256", "Upload-Metadata must carry sha256 (the package's SHA-256, hex, base64-encoded).")
	}
	if !quarry.ValidSHA256(sum) {
		return quarry.FieldError("sha256", "Upload-Metadata sha256 must be 64 hex digits.")
	}
	if v, ok := meta["acquisition_id"]; ok && v != strconv.FormatInt(c.token.AcquisitionID, 10) {
		return quarry.Errorf(quarry.EFORBIDDEN, "This token uploads for acquisition %d, not %q.", c.token.AcquisitionID, v)
	}
	if c.token.UploadID != "" {
		if _, err := s.store.GetUpload(r.Context(), c.token.UploadID); err == nil {
			loc := s.location(c.token.UploadID)
			return &uploadExists{loc, quarry.Errorf(quarry.ECONFLICT, "This token created upload %s already; resume it with HEAD and PATCH.", loc)}
		}
		// The upload it created is gone (stored and cleaned up, or never written): the
		// acquisition's state below decides whether another is welcome.
	}
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(r.Context(), c.token.AcquisitionID)
	if err != nil {
		return err
	}
	if a.State != quarry.AcquisitionUploading && !quarry.CanTransitionAcquisition(a.State, quarry.AcquisitionUploading) {
		return quarry.Errorf(quarry.ECONFLICT, "Acquisition %d is %s; it takes no upload.", a.ID, a.State)
	}
	var b [12]byte
	rand.Read(b[:])
	c.uploadID = fmt.Sprintf("a%d-%s", a.ID, hex.EncodeToString(b[:]))
	c.sha256, c.filename = sum, meta["filename"]
	return nil
}

func (s *Service) location(id string) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimSuffix(s.cfg.PublicURL, "/") + BasePath + id
	}
	return BasePath + id
}

// parseMetadata decodes a tus Upload-Metadata header: comma-separated "key base64value" pairs.
func parseMetadata(h string) (map[string]string, error) {
	meta := map[string]string{}
	if len(h) > 4096 {
		return nil, quarry.FieldError("Upload-Metadata", "Upload-Metadata is longer than 4096 bytes.")
	}
	for pair := range strings.SplitSeq(h, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		key, value, _ := strings.Cut(pair, " ")
		if strings.ContainsAny(value, " ") {
			return nil, quarry.FieldError("Upload-Metadata", "Upload-Metadata entry %q has more than one value.", key)
		}
		dec, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return nil, quarry.FieldError("Upload-Metadata", "Upload-Metadata value of %q is not valid base64.", key)
		}
		meta[key] = string(dec)
	}
	return meta, nil
}

// preCreate runs inside tusd once checkCreate passed: it names the upload, keeps only the
// metadata the server trusts, binds the upload to the token, and moves the acquisition to
// uploading.
func (s *Service) preCreate(hook tusd.HookEvent) (tusd.HTTPResponse, tusd.FileInfoChanges, error) {
	c := callerFrom(hook.Context)
	if c == nil || c.uploadID == "" {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_FORBIDDEN", "upload creation was not checked", http.StatusForbidden)
	}
	ctx := context.WithoutCancel(hook.Context)
	if err := s.cfg.Tokens.BindUploadTokenUpload(ctx, c.token.ID, c.token.UploadID, c.uploadID); err != nil && quarry.ErrorCode(err) != quarry.ECONFLICT {
		// The database did not answer (busy, timed out): nothing was decided, so the collector
		// may try again, which a 409 would forbid.
		s.cfg.Logger.Warn("intake: bind upload to token", "token", c.token.Prefix, "err", err)
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_UNAVAILABLE", "the upload could not be recorded; try again", http.StatusServiceUnavailable)
	} else if err != nil {
		// Another creation with this token won the race (the collector retried while its first
		// request was still being answered): point at that upload, as checkCreate does.
		e := tusd.NewError("ERR_UPLOAD_EXISTS", "this token created an upload already", http.StatusConflict)
		if t, err := s.cfg.Tokens.FindUploadTokenByHash(ctx, c.token.Hash); err == nil && t.UploadID != "" {
			e.HTTPResponse.Header["Location"] = s.location(t.UploadID)
		}
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, e
	}
	if _, err := s.cfg.Acquisitions.TransitionAcquisition(ctx, c.token.AcquisitionID, quarry.AcquisitionTransition{State: quarry.AcquisitionUploading}); err != nil {
		s.cfg.Logger.Warn("intake: acquisition not moved to uploading", "acquisition", c.token.AcquisitionID, "err", err)
	}
	meta := tusd.MetaData{
		"filename":       c.filename,
		"sha256":         c.sha256,
		"acquisition_id": strconv.FormatInt(c.token.AcquisitionID, 10),
		"token_id":       strconv.FormatInt(c.token.ID, 10),
		"token_prefix":   c.token.Prefix,
		"ip":             c.ip,
	}
	return tusd.HTTPResponse{}, tusd.FileInfoChanges{ID: c.uploadID, MetaData: meta}, nil
}

// preFinish runs inside tusd when the last byte arrived. The verdict is recorded before the
// final PATCH is answered (204 either way); the collector learns it from the status endpoint.
func (s *Service) preFinish(hook tusd.HookEvent) (tusd.HTTPResponse, error) {
	if err := s.finish(context.WithoutCancel(hook.Context), hook.Upload); err != nil {
		s.cfg.Logger.Error("intake: finish upload", "upload", hook.Upload.ID, "err", err)
		return tusd.HTTPResponse{}, tusd.NewError("ERR_INTERNAL", "the package arrived but could not be stored; ask for the status later", http.StatusInternalServerError)
	}
	return tusd.HTTPResponse{}, nil
}

type preflightRequest struct {
	Probe       string `json:"probe"`
	ProbeSHA256 string `json:"probe_sha256"`
	ClientTime  string `json:"client_time"`
}

func (s *Service) handlePreflight(w http.ResponseWriter, r *http.Request) error {
	c := callerFrom(r.Context())
	var req preflightRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	probe, err := base64.StdEncoding.DecodeString(req.Probe)
	if err != nil || len(probe) == 0 {
		return quarry.FieldError("probe", "probe must be non-empty base64.")
	}
	sum := sha256.Sum256(probe)
	if got := hex.EncodeToString(sum[:]); got != strings.ToLower(req.ProbeSHA256) {
		return quarry.FieldError("probe_sha256", "The probe arrived changed: its SHA-256 is %s, not %s. Something between the collector and the server alters request bodies.", got, req.ProbeSHA256)
	}
	now := s.cfg.Now()
	var skew float64
	if req.ClientTime != "" {
		ct, err := time.Parse(time.RFC3339Nano, req.ClientTime)
		if err != nil {
			return quarry.FieldError("client_time", "client_time must be RFC 3339.")
		}
		skew = ct.Sub(now).Seconds()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ok": true, "server_time": now.UTC().Format(time.RFC3339Nano), "acquisition_id": c.token.AcquisitionID,
		"max_upload_bytes": s.cfg.MaxUploadBytes, "clock_skew_seconds": skew,
	})
	return nil
}

type heartbeatRequest struct {
	Phase      string `json:"phase"`
	FilesDone  int64  `json:"files_done"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total"`
	Message    string `json:"message"`
}

// heartbeatStates maps a collector's phase to the acquisition state it implies; "done" implies
// none (the upload's verdict decides).
var heartbeatStates = map[string]string{
	"starting":   quarry.AcquisitionCollecting,
	"collecting": quarry.AcquisitionCollecting,
	"uploading":  quarry.AcquisitionUploading,
	"failed":     quarry.AcquisitionFailed,
}

func (s *Service) handleHeartbeat(w http.ResponseWriter, r *http.Request) error {
	c := callerFrom(r.Context())
	var req heartbeatRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Phase == "" {
		return quarry.FieldError("phase", "phase is required.")
	}
	p := quarry.Progress{Phase: req.Phase, FilesDone: req.FilesDone, BytesDone: req.BytesDone, BytesTotal: req.BytesTotal}
	if err := p.Validate(); err != nil {
		return err
	}
	ctx := r.Context()
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, c.token.AcquisitionID)
	if err != nil {
		return err
	}
	switch a.State {
	case quarry.AcquisitionCancelled, quarry.AcquisitionExpired, quarry.AcquisitionFailed:
		// Tell the collector to stop: nobody will take its package.
		return quarry.Errorf(quarry.ECONFLICT, "Acquisition %d is %s; stop collecting.", a.ID, a.State)
	}
	if err := s.cfg.Acquisitions.UpdateAcquisitionProgress(ctx, a.ID, p, s.cfg.Now()); err != nil {
		return err
	}
	if to := heartbeatStates[req.Phase]; to != "" && to != a.State && quarry.CanTransitionAcquisition(a.State, to) {
		t := quarry.AcquisitionTransition{State: to}
		if to == quarry.AcquisitionFailed {
			t.Error = "collector failed: " + truncate(strings.TrimSpace(req.Message), 500)
		}
		// A late heartbeat may race a transition made by the upload: ECONFLICT is harmless.
		if _, err := s.cfg.Acquisitions.TransitionAcquisition(ctx, a.ID, t); err != nil && quarry.ErrorCode(err) != quarry.ECONFLICT {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Status is the verdict the collector asks for after its last PATCH.
type Status struct {
	State      string `json:"state"`
	Error      string `json:"error"`
	EvidenceID *int64 `json:"evidence_id"`
	SHA256     string `json:"sha256"`
}

func (s *Service) handleStatus(w http.ResponseWriter, r *http.Request) error {
	c := callerFrom(r.Context())
	ctx := r.Context()
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, c.token.AcquisitionID)
	if err != nil {
		return err
	}
	if a.State == quarry.AcquisitionUploading && c.token.UploadID != "" {
		// A verdict that failed earlier (store unavailable) is retried when asked for.
		if up, err := s.store.GetUpload(ctx, c.token.UploadID); err == nil {
			if info, err := up.GetInfo(ctx); err == nil && !info.SizeIsDeferred && info.Offset == info.Size {
				if err := s.finish(context.WithoutCancel(ctx), info); err != nil {
					return err
				}
				if a, err = s.cfg.Acquisitions.FindAcquisitionByID(ctx, a.ID); err != nil {
					return err
				}
			}
		}
	}
	st := Status{State: a.State, Error: a.Error, EvidenceID: a.EvidenceID}
	if a.EvidenceID != nil {
		e, err := s.cfg.Evidence.FindEvidenceByID(ctx, *a.EvidenceID)
		if err != nil {
			return err
		}
		st.SHA256 = e.SHA256
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

const maxJSONBody = 64 << 10

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return quarry.Errorf(quarry.EINVALID, "The request body is larger than %d bytes.", maxJSONBody)
		}
		return quarry.Errorf(quarry.EINVALID, "The request body is not the JSON expected: %s.", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return quarry.Errorf(quarry.EINVALID, "The request body has data after the JSON object.")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// statuses is the default error writer's mapping; the HTTP server passes its own writer.
var statuses = map[string]int{
	quarry.ECONFLICT:     http.StatusConflict,
	quarry.EINVALID:      http.StatusBadRequest,
	quarry.ENOTFOUND:     http.StatusNotFound,
	quarry.EUNAUTHORIZED: http.StatusUnauthorized,
	quarry.EFORBIDDEN:    http.StatusForbidden,
	quarry.EUNAVAILABLE:  http.StatusServiceUnavailable,
}

// writeError is the default error writer: the JSON envelope of design.md.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, ok := statuses[quarry.ErrorCode(err)]
	if !ok {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, errorBody(quarry.ErrorCode(err), quarry.ErrorMessage(err)))
}

func errorBody(code, msg string) map[string]any {
	return map[string]any{"error": map[string]string{"code": code, "message": msg}}
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
