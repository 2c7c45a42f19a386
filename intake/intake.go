// Package intake receives evidence packages from collectors: per-acquisition upload tokens,
// the enrolment that trades a connection's enrolment token for one, the preflight, heartbeat
// and status endpoints, and resumable tus uploads (tusd) whose bytes are verified against the
// declared SHA-256 and then stored immutably in the blob store with a chain of custody.
package intake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"gocloud.dev/blob"
	expslog "golang.org/x/exp/slog"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
)

// Defaults and limits.
const (
	DefaultMaxUploadBytes = 20 << 30 // 20 GiB: the largest package accepted
	DefaultMaxChunkBytes  = 16 << 20 // per PATCH; collectors send 8 MiB chunks
	DefaultTokenTTL       = 24 * time.Hour
	MaxTokenTTL           = 30 * 24 * time.Hour
	TokenPrefix           = "qu_"
	// EnrolTokenPrefix starts the enrolment tokens that bootstrap scripts carry.
	EnrolTokenPrefix     = "qe_"
	DefaultEnrolTokenTTL = 24 * time.Hour // short: the bootstrap script is re-uploaded before it expires
	// BasePath is where the tus endpoint is mounted.
	BasePath = "/api/v1/uploads/"
	// CollectorPath is where preflight, heartbeat and status are mounted.
	CollectorPath = "/api/v1/collector/"
)

// Config is what a Service needs. The services, Bucket and UploadDir are required.
type Config struct {
	Acquisitions quarry.AcquisitionService
	Evidence     quarry.EvidenceService
	Tokens       quarry.UploadTokenService
	Audit        quarry.AuditService
	// Enrol stores enrolment tokens; nil turns enrolment off (the endpoint answers 503).
	Enrol quarry.EnrolTokenService
	// Bucket is the evidence store; BlobURL is the URL it was opened from, used to find the
	// folder of a file:// store so that stored packages can be made read-only there.
	Bucket  *blob.Bucket
	BlobURL string
	// UploadDir keeps partial uploads (tusd's folder store), so they survive restarts.
	UploadDir string
	// PublicURL is how collectors reach the server; upload locations are absolute URLs
	// under it. Empty: locations are built from the request's Host.
	PublicURL      string
	MaxUploadBytes int64 // default DefaultMaxUploadBytes
	MaxChunkBytes  int64 // default DefaultMaxChunkBytes
	Now            func() time.Time
	Logger         *slog.Logger
	// WriteError writes an error response; the HTTP server passes its own so that errors look
	// the same on every route. The default writes the same JSON envelope.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
	// ClientIP returns a request's source address (the server knows about trusted proxies).
	ClientIP func(r *http.Request) string
	// OnReceived, when set, is called once evidence is stored and its acquisition moved to
	// received (processing.Processor.OnReceived queues it). It must not block for long; a
	// failure it meets is its own to log, since the evidence is received either way.
	OnReceived func(ctx context.Context, e *quarry.Evidence)
}

// Service receives packages. It is safe for concurrent use.
type Service struct {
	cfg   Config
	store filestore.FileStore
	tus   *tusd.Handler
	root  string // folder of a file:// blob store, or ""

	mu        sync.Mutex
	finishing map[string]*sync.Mutex // per upload id: one finisher at a time in this process
}

// New checks cfg, opens the upload folder and builds the tus handler.
func New(cfg Config) (*Service, error) {
	if cfg.Acquisitions == nil || cfg.Evidence == nil || cfg.Tokens == nil || cfg.Audit == nil || cfg.Bucket == nil || cfg.UploadDir == "" {
		return nil, errors.New("intake: services, bucket and upload folder are required")
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.MaxChunkBytes <= 0 {
		cfg.MaxChunkBytes = DefaultMaxChunkBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WriteError == nil {
		cfg.WriteError = writeError
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = remoteIP
	}
	if err := os.MkdirAll(cfg.UploadDir, 0o700); err != nil {
		return nil, fmt.Errorf("intake: create upload folder: %w", err)
	}
	s := &Service{cfg: cfg, store: filestore.New(cfg.UploadDir), finishing: map[string]*sync.Mutex{}}
	if u, err := url.Parse(cfg.BlobURL); err == nil && u.Scheme == "file" {
		s.root = filepath.FromSlash(u.Path)
	}
	composer := tusd.NewStoreComposer()
	s.store.UseIn(composer)
	filelocker.New(cfg.UploadDir).UseIn(composer)
	base := BasePath
	if cfg.PublicURL != "" {
		base = strings.TrimSuffix(cfg.PublicURL, "/") + BasePath
	}
	h, err := tusd.NewHandler(tusd.Config{
		StoreComposer:        composer,
		BasePath:             base,
		MaxSize:              cfg.MaxUploadBytes,
		DisableDownload:      true, // a token writes; it never reads a package back
		DisableTermination:   true,
		DisableConcatenation: true,
		Cors:                 &tusd.CorsConfig{Disable: true},
		// tusd logs every request at info; Quarry logs the verdicts itself.
		Logger:                    expslog.New(expslog.NewTextHandler(io.Discard, nil)),
		PreUploadCreateCallback:   s.preCreate,
		PreFinishResponseCallback: s.preFinish,
	})
	if err != nil {
		return nil, fmt.Errorf("intake: tus handler: %w", err)
	}
	s.tus = h
	return s, nil
}

// IssueUploadToken mints the upload token of an acquisition: it may preflight, send
// heartbeats and write that acquisition's one package until it expires after ttl (0: the
// default of 24 h). The secret is returned once; only its hash is stored.
func (s *Service) IssueUploadToken(ctx context.Context, acquisitionID int64, ttl time.Duration) (string, *quarry.UploadToken, error) {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Minute || ttl > MaxTokenTTL {
		return "", nil, quarry.FieldError("expires_in", "Upload tokens live between one minute and %d days.", int(MaxTokenTTL.Hours()/24))
	}
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, acquisitionID)
	if err != nil {
		return "", nil, err
	}
	if quarry.AcquisitionTerminal(a.State) {
		return "", nil, quarry.Errorf(quarry.ECONFLICT, "Acquisition %d is %s; it takes no upload.", a.ID, a.State)
	}
	secret, hash := auth.NewSecret(TokenPrefix)
	t := &quarry.UploadToken{AcquisitionID: a.ID, Purpose: quarry.UploadTokenPurposeUpload, Prefix: prefixOf(secret, TokenPrefix), Hash: hash, ExpiresAt: s.cfg.Now().Add(ttl)}
	if err := s.cfg.Tokens.CreateUploadToken(ctx, t); err != nil {
		return "", nil, fmt.Errorf("intake: issue upload token: %w", err)
	}
	return secret, t, nil
}

// CreateManualUpload opens an acquisition for a collector that an analyst runs by hand: the
// acquisition starts in collecting, and its upload token (the secret is returned once) lives
// for ttl (0: 24 h).
func (s *Service) CreateManualUpload(ctx context.Context, projectID int64, hostName string, ttl time.Duration) (*quarry.Acquisition, string, *quarry.UploadToken, error) {
	a := &quarry.Acquisition{ProjectID: projectID, HostName: hostName, Source: quarry.SourceManual, State: quarry.AcquisitionCollecting}
	if ttl != 0 && (ttl < time.Minute || ttl > MaxTokenTTL) {
		return nil, "", nil, quarry.FieldError("expires_in", "Upload tokens live between one minute and %d days.", int(MaxTokenTTL.Hours()/24))
	}
	if err := s.cfg.Acquisitions.CreateAcquisition(ctx, a); err != nil {
		return nil, "", nil, err
	}
	secret, t, err := s.IssueUploadToken(ctx, a.ID, ttl)
	if err != nil {
		return nil, "", nil, err
	}
	return a, secret, t, nil
}

// Recover finishes the uploads that were complete when the server stopped but not yet
// verified and stored (a crash between the last byte and the verdict). Call it at start-up,
// before serving.
func (s *Service) Recover(ctx context.Context) error {
	infos, err := filepath.Glob(filepath.Join(s.cfg.UploadDir, "*.info"))
	if err != nil {
		return fmt.Errorf("intake: recover: %w", err)
	}
	var errs []error
	for _, p := range infos {
		id := strings.TrimSuffix(filepath.Base(p), ".info")
		// The store computes the offset from the data file; the .info file keeps only what
		// was declared at creation.
		up, err := s.store.GetUpload(ctx, id)
		if err != nil {
			s.cfg.Logger.Warn("intake: unreadable upload", "upload", id, "err", err)
			continue
		}
		info, err := up.GetInfo(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("upload %s: %w", id, err))
			continue
		}
		if info.SizeIsDeferred || info.Offset != info.Size {
			continue // still in progress: the collector resumes it
		}
		if err := s.finish(ctx, info); err != nil {
			errs = append(errs, fmt.Errorf("upload %s: %w", info.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("intake: recover: %w", err)
	}
	return nil
}
