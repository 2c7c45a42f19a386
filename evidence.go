package quarry

import (
	"context"
	"regexp"
	"time"
)

// Evidence processing states.
const (
	EvidenceReceived   = "received"
	EvidenceProcessing = "processing"
	EvidenceProcessed  = "processed"
	EvidenceFailed     = "failed"
)

// ManifestSummary is what the server reads from a package's manifest.json on receipt.
type ManifestSummary struct {
	Format  string `json:"format"`
	Files   int64  `json:"files"`
	Skipped int64  `json:"skipped"`
	Bytes   int64  `json:"bytes"`
	OS      string `json:"os"`
	Profile string `json:"profile"`
}

// Evidence is one received package, stored immutably in the blob store under BlobKey. Its
// SHA-256 was declared by the collector and verified on receipt.
type Evidence struct {
	ID               int64           `json:"id"`
	ProjectID        int64           `json:"project_id"`
	AcquisitionID    int64           `json:"acquisition_id"`
	SHA256           string          `json:"sha256"`
	Size             int64           `json:"size"`
	BlobKey          string          `json:"blob_key"`
	ReceivedAt       time.Time       `json:"received_at"`
	ReceivedFromIP   string          `json:"received_from_ip"`
	TokenID          int64           `json:"token_id"`     // the upload token that sent it
	TokenPrefix      string          `json:"token_prefix"` // its readable prefix
	CollectorVersion string          `json:"collector_version"`
	Hostname         string          `json:"hostname"`
	Manifest         ManifestSummary `json:"manifest"`
	State            string          `json:"state"`
	// Processing is the last (or running) processing's report; nil before the first.
	Processing *ProcessingReport `json:"processing,omitempty"`
}

// Processing stages, in order.
const (
	StageQueued    = "queued"
	StageOpening   = "opening"   // reading the archive and its manifest
	StageVerifying = "verifying" // checking files against the manifest's hashes
	StageParsing   = "parsing"
	StageDone      = "done"
)

// ProcessingReport is what processing an evidence item did, kept beside it for the UI: stage and
// progress while it runs, counts per parser and the problems it met.
type ProcessingReport struct {
	Stage      string                   `json:"stage"`
	Format     string                   `json:"format"` // quarry-package/1, kape, velociraptor, uac, archive
	StartedAt  time.Time                `json:"started_at"`
	EndedAt    *time.Time               `json:"ended_at,omitempty"`
	FilesTotal int                      `json:"files_total"`
	FilesDone  int                      `json:"files_done"`
	Events     int64                    `json:"events"`
	Detections int64                    `json:"detections"` // events a detector tagged
	Parsers    map[string]*ParserReport `json:"parsers,omitempty"`
	Problems   []ProcessingProblem      `json:"problems,omitempty"` // capped; ProblemsTotal counts all
	// ProblemsTotal counts every problem, also those past the cap of Problems.
	ProblemsTotal int    `json:"problems_total"`
	Error         string `json:"error,omitempty"` // what stopped processing, when it failed
}

// ParserReport sums up one parser's work on an evidence item.
type ParserReport struct {
	Files      int   `json:"files"`
	Records    int64 `json:"records"`
	Events     int64 `json:"events"`
	Skipped    int64 `json:"skipped"`
	Errors     int   `json:"errors"` // files it could not finish
	DurationMS int64 `json:"duration_ms"`
}

// ProcessingProblem is a file that was skipped or only partly read, and why.
type ProcessingProblem struct {
	Path   string `json:"path"`
	Parser string `json:"parser,omitempty"`
	Reason string `json:"reason"`
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidSHA256 reports whether s is a lower-case hex SHA-256 digest.
func ValidSHA256(s string) bool { return sha256Hex.MatchString(s) }

// Validate checks the fields set on receipt.
func (e *Evidence) Validate() error {
	if e.ProjectID <= 0 || e.AcquisitionID <= 0 {
		return FieldError("acquisition_id", "Evidence belongs to an acquisition of a project.")
	}
	if !ValidSHA256(e.SHA256) {
		return FieldError("sha256", "SHA-256 must be 64 lower-case hex digits.")
	}
	if e.Size < 0 {
		return FieldError("size", "Size cannot be negative.")
	}
	if e.BlobKey == "" {
		return FieldError("blob_key", "Evidence needs a blob key.")
	}
	if e.State == "" {
		e.State = EvidenceReceived
	}
	switch e.State {
	case EvidenceReceived, EvidenceProcessing, EvidenceProcessed, EvidenceFailed:
	default:
		return FieldError("state", "Unknown evidence state %q.", e.State)
	}
	return nil
}

// EvidenceFilter selects evidence, newest first; zero fields match everything.
type EvidenceFilter struct {
	ProjectID     *int64
	AcquisitionID *int64
	Offset        int
	Limit         int
}

// Chain-of-custody actions.
const (
	CustodyUploaded = "uploaded" // all bytes arrived
	CustodyVerified = "verified" // the declared SHA-256 matched
	CustodyStored   = "stored"   // written immutably to the blob store
	CustodyRejected = "rejected" // refused (hash mismatch); the bytes are kept apart for inspection
)

// CustodyEntry is one line of an evidence package's chain of custody. The log is append-only:
// the SQL stores refuse updates and deletes with triggers. EvidenceID is nil for packages that
// were rejected before they became evidence; AcquisitionID names them then.
type CustodyEntry struct {
	ID            int64          `json:"id"`
	EvidenceID    *int64         `json:"evidence_id,omitempty"`
	AcquisitionID int64          `json:"acquisition_id"`
	At            time.Time      `json:"at"`
	Actor         string         `json:"actor"` // e.g. "upload-token:qu_abc123" or a username
	Action        string         `json:"action"`
	Details       map[string]any `json:"details,omitempty"`
}

// EvidenceService stores evidence and its chain of custody.
//
// CreateEvidence stores e with its first custody entries in one transaction and returns
// ECONFLICT when the acquisition has evidence already. FindEvidenceByID returns ENOTFOUND.
// RecordCustody appends to the chain; FindCustody returns an acquisition's chain, oldest first.
type EvidenceService interface {
	CreateEvidence(ctx context.Context, e *Evidence, custody []*CustodyEntry) error
	FindEvidenceByID(ctx context.Context, id int64) (*Evidence, error)
	FindEvidence(ctx context.Context, filter EvidenceFilter) ([]*Evidence, int, error)
	RecordCustody(ctx context.Context, c *CustodyEntry) error
	FindCustody(ctx context.Context, acquisitionID int64) ([]*CustodyEntry, error)
	// UpdateEvidenceProcessing sets the processing state and report.
	UpdateEvidenceProcessing(ctx context.Context, id int64, state string, r *ProcessingReport) error
}

// Upload token purposes. An upload token lets a collector preflight, send heartbeats and
// write one package for its acquisition, nothing else.
const UploadTokenPurposeUpload = "upload"

// UploadToken is a per-acquisition bearer secret ("qu_…") given to a collector. Only its
// SHA-256 is stored; Prefix tells tokens apart in logs and custody entries.
type UploadToken struct {
	ID            int64      `json:"id"`
	AcquisitionID int64      `json:"acquisition_id"`
	Purpose       string     `json:"purpose"`
	Prefix        string     `json:"prefix"`
	Hash          string     `json:"-"`
	UploadID      string     `json:"upload_id,omitempty"`      // the tus upload it created, once it did
	EnrolTokenID  *int64     `json:"enrol_token_id,omitempty"` // the enrolment token that obtained it, if one did
	CreatedAt     time.Time  `json:"created_at"`
	ExpiresAt     time.Time  `json:"expires_at"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
}

// Validate checks the fields a caller sets.
func (t *UploadToken) Validate() error {
	if t.AcquisitionID <= 0 {
		return FieldError("acquisition_id", "An upload token belongs to an acquisition.")
	}
	if t.Purpose == "" {
		t.Purpose = UploadTokenPurposeUpload
	}
	if t.Purpose != UploadTokenPurposeUpload {
		return FieldError("purpose", "Unknown upload token purpose %q.", t.Purpose)
	}
	if t.Hash == "" || t.Prefix == "" {
		return FieldError("hash", "An upload token needs its hash and prefix.")
	}
	if t.ExpiresAt.IsZero() {
		return FieldError("expires_at", "Tokens must expire.")
	}
	return nil
}

// Active reports whether the token may be used at now.
func (t *UploadToken) Active(now time.Time) bool {
	return t.RevokedAt == nil && now.Before(t.ExpiresAt)
}

// UploadTokenService stores upload tokens. FindUploadTokenByHash returns ENOTFOUND for an
// unknown hash (expiry and revocation are the caller's to check). BindUploadTokenUpload sets
// the tus upload a token created, but only while the token's upload is still prev (compare and
// set); otherwise it returns ECONFLICT. That is how "one upload per token" holds even with
// several servers. RevokeUploadTokens revokes every token of an acquisition.
type UploadTokenService interface {
	CreateUploadToken(ctx context.Context, t *UploadToken) error
	FindUploadTokenByHash(ctx context.Context, hash string) (*UploadToken, error)
	BindUploadTokenUpload(ctx context.Context, id int64, prev, uploadID string) error
	RevokeUploadTokens(ctx context.Context, acquisitionID int64, at time.Time) error
}
