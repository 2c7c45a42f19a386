package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/quarry-dfir/quarry"
)

// EvidenceService stores received packages and their chain of custody. The database refuses
// updates and deletes of custody entries (triggers), as it does for the audit log.
type EvidenceService struct {
	db *DB
}

var _ quarry.EvidenceService = (*EvidenceService)(nil)

// NewEvidenceService returns an EvidenceService on db.
func NewEvidenceService(db *DB) *EvidenceService { return &EvidenceService{db: db} }

const evidenceColumns = `id, project_id, acquisition_id, sha256, size, blob_key, received_at, received_from_ip,
	token_id, token_prefix, collector_version, hostname, manifest, state, processing`

func scanEvidence(s interface{ Scan(...any) error }) (*quarry.Evidence, error) {
	var e quarry.Evidence
	var manifest, processing string
	err := s.Scan(&e.ID, &e.ProjectID, &e.AcquisitionID, &e.SHA256, &e.Size, &e.BlobKey, timeCol(&e.ReceivedAt), &e.ReceivedFromIP,
		&e.TokenID, &e.TokenPrefix, &e.CollectorVersion, &e.Hostname, &manifest, &e.State, &processing)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(manifest), &e.Manifest); err != nil {
		return nil, fmt.Errorf("decode manifest summary of evidence %d: %w", e.ID, err)
	}
	if processing != "" {
		e.Processing = new(quarry.ProcessingReport)
		if err := json.Unmarshal([]byte(processing), e.Processing); err != nil {
			return nil, fmt.Errorf("decode processing report of evidence %d: %w", e.ID, err)
		}
	}
	return &e, nil
}

// CreateEvidence validates and stores e, then appends custody (their EvidenceID and
// AcquisitionID set from e), all in one transaction. When e.BlobKey is empty it becomes
// evidence/<id>/package.zip. A second package for one acquisition is ECONFLICT.
func (s *EvidenceService) CreateEvidence(ctx context.Context, e *quarry.Evidence, custody []*quarry.CustodyEntry) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	placeholder := e.BlobKey == ""
	if placeholder {
		e.BlobKey = "pending"
	}
	if err := e.Validate(); err != nil {
		return err
	}
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = tx.now
	}
	e.ReceivedAt = storedTime(e.ReceivedAt)
	manifest, err := json.Marshal(e.Manifest)
	if err != nil {
		return fmt.Errorf("create evidence: encode manifest summary: %w", err)
	}
	err = tx.queryRow(ctx, `INSERT INTO evidence (project_id, acquisition_id, sha256, size, blob_key, received_at, received_from_ip,
		token_id, token_prefix, collector_version, hostname, manifest, state)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		e.ProjectID, e.AcquisitionID, e.SHA256, e.Size, e.BlobKey, e.ReceivedAt, e.ReceivedFromIP,
		e.TokenID, e.TokenPrefix, e.CollectorVersion, e.Hostname, string(manifest), e.State).Scan(&e.ID)
	if err != nil {
		return translate(err, "create evidence", "", fmt.Sprintf("Acquisition %d has evidence already.", e.AcquisitionID))
	}
	if placeholder {
		e.BlobKey = EvidenceBlobKey(e.ID)
		if _, err := tx.exec(ctx, "UPDATE evidence SET blob_key = ? WHERE id = ?", e.BlobKey, e.ID); err != nil {
			return translate(err, "create evidence", "", "")
		}
	}
	for _, c := range custody {
		id := e.ID
		c.EvidenceID, c.AcquisitionID = &id, e.AcquisitionID
		if err := recordCustody(ctx, tx, c); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// UpdateEvidenceProcessing sets the processing state and report of evidence id.
func (s *EvidenceService) UpdateEvidenceProcessing(ctx context.Context, id int64, state string, r *quarry.ProcessingReport) error {
	switch state {
	case quarry.EvidenceReceived, quarry.EvidenceProcessing, quarry.EvidenceProcessed, quarry.EvidenceFailed:
	default:
		return quarry.FieldError("state", "Unknown evidence state %q.", state)
	}
	report := ""
	if r != nil {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("update evidence processing: encode report: %w", err)
		}
		report = string(b)
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.exec(ctx, "UPDATE evidence SET state = ?, processing = ? WHERE id = ?", state, report, id)
	if err != nil {
		return translate(err, "update evidence processing", "", "")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return quarry.Errorf(quarry.ENOTFOUND, "Evidence not found.")
	}
	return tx.Commit()
}

// EvidenceBlobKey is where the package of evidence id is stored.
func EvidenceBlobKey(id int64) string { return fmt.Sprintf("evidence/%d/package.zip", id) }

// FindEvidenceByID returns the evidence with id, or ENOTFOUND.
func (s *EvidenceService) FindEvidenceByID(ctx context.Context, id int64) (*quarry.Evidence, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	e, err := scanEvidence(tx.queryRow(ctx, "SELECT "+evidenceColumns+" FROM evidence WHERE id = ?", id))
	return e, translate(err, "find evidence", "Evidence not found.", "")
}

// FindEvidence returns the evidence matching filter, newest first, and how many match in all.
func (s *EvidenceService) FindEvidence(ctx context.Context, filter quarry.EvidenceFilter) ([]*quarry.Evidence, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var w where
	if filter.ProjectID != nil {
		w.add("project_id = ?", *filter.ProjectID)
	}
	if filter.AcquisitionID != nil {
		w.add("acquisition_id = ?", *filter.AcquisitionID)
	}
	var list []*quarry.Evidence
	total, err := findPage(ctx, tx, "SELECT "+evidenceColumns, "FROM evidence", &w, "received_at DESC, id DESC", filter.Offset, filter.Limit,
		func(rows *sql.Rows) error {
			e, err := scanEvidence(rows)
			list = append(list, e)
			return err
		})
	if err != nil {
		return nil, 0, translate(err, "find evidence", "", "")
	}
	return list, total, nil
}

// RecordCustody appends c to the chain of custody, setting its ID and, if zero, its time.
func (s *EvidenceService) RecordCustody(ctx context.Context, c *quarry.CustodyEntry) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := recordCustody(ctx, tx, c); err != nil {
		return err
	}
	return tx.Commit()
}

// FindCustody returns the chain of custody of an acquisition's package, oldest first.
func (s *EvidenceService) FindCustody(ctx context.Context, acquisitionID int64) ([]*quarry.CustodyEntry, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.query(ctx, "SELECT id, evidence_id, acquisition_id, at, actor, action, details FROM custody_log WHERE acquisition_id = ? ORDER BY id", acquisitionID)
	if err != nil {
		return nil, translate(err, "find custody", "", "")
	}
	defer rows.Close()
	var list []*quarry.CustodyEntry
	for rows.Next() {
		var c quarry.CustodyEntry
		var evidenceID sql.NullInt64
		var details sql.NullString
		if err := rows.Scan(&c.ID, &evidenceID, &c.AcquisitionID, timeCol(&c.At), &c.Actor, &c.Action, &details); err != nil {
			return nil, translate(err, "find custody", "", "")
		}
		if evidenceID.Valid {
			c.EvidenceID = &evidenceID.Int64
		}
		if details.Valid {
			if err := json.Unmarshal([]byte(details.String), &c.Details); err != nil {
				return nil, fmt.Errorf("decode details of custody entry %d: %w", c.ID, err)
			}
		}
		list = append(list, &c)
	}
	return list, translate(rows.Err(), "find custody", "", "")
}

func recordCustody(ctx context.Context, tx *Tx, c *quarry.CustodyEntry) error {
	if c.Action == "" || c.Actor == "" || c.AcquisitionID <= 0 {
		return quarry.FieldError("action", "Custody entries need an acquisition, an actor and an action.")
	}
	if c.At.IsZero() {
		c.At = tx.now
	}
	c.At = storedTime(c.At)
	var details *string
	if len(c.Details) > 0 {
		b, err := json.Marshal(c.Details)
		if err != nil {
			return fmt.Errorf("record custody: encode details: %w", err)
		}
		d := string(b)
		details = &d
	}
	err := tx.queryRow(ctx, `INSERT INTO custody_log (evidence_id, acquisition_id, at, actor, action, details)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, c.EvidenceID, c.AcquisitionID, c.At, c.Actor, c.Action, details).Scan(&c.ID)
	return translate(err, "record custody", "", "")
}

// UploadTokenService stores the per-acquisition upload tokens of collectors.
type UploadTokenService struct {
	db *DB
}

var _ quarry.UploadTokenService = (*UploadTokenService)(nil)

// NewUploadTokenService returns an UploadTokenService on db.
func NewUploadTokenService(db *DB) *UploadTokenService { return &UploadTokenService{db: db} }

// CreateUploadToken validates and stores t, setting its ID and creation time.
func (s *UploadTokenService) CreateUploadToken(ctx context.Context, t *quarry.UploadToken) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createUploadToken(ctx, tx, t, "The token exists already."); err != nil {
		return err
	}
	return tx.Commit()
}

// createUploadToken inserts t; a unique violation becomes ECONFLICT with the message conflict.
func createUploadToken(ctx context.Context, tx *Tx, t *quarry.UploadToken, conflict string) error {
	if err := t.Validate(); err != nil {
		return err
	}
	t.CreatedAt, t.ExpiresAt = tx.now, storedTime(t.ExpiresAt)
	err := tx.queryRow(ctx, `INSERT INTO upload_tokens (acquisition_id, purpose, prefix, hash, upload_id, enrol_token_id, created_at, expires_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		t.AcquisitionID, t.Purpose, t.Prefix, t.Hash, t.UploadID, t.EnrolTokenID, t.CreatedAt, t.ExpiresAt, t.RevokedAt).Scan(&t.ID)
	return translate(err, "create upload token", "", conflict)
}

// FindUploadTokenByHash returns the token stored under hash, or ENOTFOUND.
func (s *UploadTokenService) FindUploadTokenByHash(ctx context.Context, hash string) (*quarry.UploadToken, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var t quarry.UploadToken
	var enrol sql.NullInt64
	err = tx.queryRow(ctx, `SELECT id, acquisition_id, purpose, prefix, hash, upload_id, enrol_token_id, created_at, expires_at, revoked_at
		FROM upload_tokens WHERE hash = ?`, hash).Scan(&t.ID, &t.AcquisitionID, &t.Purpose, &t.Prefix, &t.Hash, &t.UploadID, &enrol,
		timeCol(&t.CreatedAt), timeCol(&t.ExpiresAt), nullTimeCol(&t.RevokedAt))
	if enrol.Valid {
		t.EnrolTokenID = &enrol.Int64
	}
	if err != nil {
		return nil, translate(err, "find upload token", "Unknown upload token.", "")
	}
	return &t, nil
}

// BindUploadTokenUpload sets token id's upload to uploadID if it is still prev; ECONFLICT if not.
func (s *UploadTokenService) BindUploadTokenUpload(ctx context.Context, id int64, prev, uploadID string) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.exec(ctx, "UPDATE upload_tokens SET upload_id = ? WHERE id = ? AND upload_id = ?", uploadID, id, prev)
	if err != nil {
		return translate(err, "bind upload token", "", "")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return quarry.Errorf(quarry.ECONFLICT, "This token has created an upload already.")
	}
	return tx.Commit()
}

// RevokeUploadTokens revokes the acquisition's tokens that are not revoked yet.
func (s *UploadTokenService) RevokeUploadTokens(ctx context.Context, acquisitionID int64, at time.Time) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, "UPDATE upload_tokens SET revoked_at = ? WHERE acquisition_id = ? AND revoked_at IS NULL", at, acquisitionID); err != nil {
		return translate(err, "revoke upload tokens", "", "")
	}
	return tx.Commit()
}
