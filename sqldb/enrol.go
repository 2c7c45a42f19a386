package sqldb

import (
	"context"
	"fmt"
	"time"

	"github.com/quarry-dfir/quarry"
)

// EnrolTokenService stores the enrolment tokens of XDR connections and the enrolments they
// made. An enrolment is an upload token whose enrol_token_id is set; a partial unique index
// allows one per acquisition.
type EnrolTokenService struct {
	db *DB
}

var _ quarry.EnrolTokenService = (*EnrolTokenService)(nil)

// NewEnrolTokenService returns an EnrolTokenService on db.
func NewEnrolTokenService(db *DB) *EnrolTokenService { return &EnrolTokenService{db: db} }

const errEnrolTokenNotFound = "Enrolment token not found."

// CreateEnrolToken validates and stores t, setting its ID and creation time. The connection
// must exist (EINVALID otherwise).
func (s *EnrolTokenService) CreateEnrolToken(ctx context.Context, t *quarry.EnrolToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	t.CreatedAt, t.ExpiresAt = tx.now, storedTime(t.ExpiresAt)
	err = tx.queryRow(ctx, `INSERT INTO enrol_tokens (connection_id, purpose, prefix, hash, created_at, expires_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		t.ConnectionID, t.Purpose, t.Prefix, t.Hash, t.CreatedAt, t.ExpiresAt, t.RevokedAt).Scan(&t.ID)
	if err != nil {
		return translate(err, "create enrol token", "", "The token exists already.")
	}
	t.RevokedAt = storedTimePtr(t.RevokedAt)
	return tx.Commit()
}

// FindEnrolTokenByHash returns the token stored under hash, or ENOTFOUND, whether or not it
// is still active.
func (s *EnrolTokenService) FindEnrolTokenByHash(ctx context.Context, hash string) (*quarry.EnrolToken, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var t quarry.EnrolToken
	err = tx.queryRow(ctx, `SELECT id, connection_id, purpose, prefix, hash, created_at, expires_at, revoked_at
		FROM enrol_tokens WHERE hash = ?`, hash).Scan(&t.ID, &t.ConnectionID, &t.Purpose, &t.Prefix, &t.Hash,
		timeCol(&t.CreatedAt), timeCol(&t.ExpiresAt), nullTimeCol(&t.RevokedAt))
	if err != nil {
		return nil, translate(err, "find enrol token", errEnrolTokenNotFound, "")
	}
	return &t, nil
}

// RevokeEnrolToken marks the token with id revoked at at; ENOTFOUND if there is none.
// Revoking a revoked token keeps the first revocation time.
func (s *EnrolTokenService) RevokeEnrolToken(ctx context.Context, id int64, at time.Time) error {
	return s.db.change(ctx, "revoke enrol token", errEnrolTokenNotFound,
		"UPDATE enrol_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", at, id)
}

// RevokeEnrolTokens revokes the connection's tokens that are not revoked yet.
func (s *EnrolTokenService) RevokeEnrolTokens(ctx context.Context, connectionID int64, at time.Time) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, "UPDATE enrol_tokens SET revoked_at = ? WHERE connection_id = ? AND revoked_at IS NULL", at, connectionID); err != nil {
		return translate(err, "revoke enrol tokens", "", "")
	}
	return tx.Commit()
}

// DeleteExpiredEnrolTokens removes tokens that expired or were revoked before the cutoff and
// returns how many. The upload tokens they obtained keep their enrol_token_id.
func (s *EnrolTokenService) DeleteExpiredEnrolTokens(ctx context.Context, before time.Time) (int, error) {
	return s.db.deleteMany(ctx, "delete expired enrol tokens",
		"DELETE FROM enrol_tokens WHERE expires_at < ? OR revoked_at < ?", before, before)
}

// EnrolAcquisition stores upload (whose EnrolTokenID must be set) and appends custody for its
// acquisition in one transaction; ECONFLICT when the acquisition enrolled already.
func (s *EnrolTokenService) EnrolAcquisition(ctx context.Context, upload *quarry.UploadToken, custody []*quarry.CustodyEntry) error {
	if upload.EnrolTokenID == nil {
		return quarry.FieldError("enrol_token_id", "An enrolment names its enrolment token.")
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createUploadToken(ctx, tx, upload, fmt.Sprintf("Acquisition %d is enrolled already; each acquisition enrols once.", upload.AcquisitionID)); err != nil {
		return err
	}
	for _, c := range custody {
		c.AcquisitionID = upload.AcquisitionID
		if err := recordCustody(ctx, tx, c); err != nil {
			return err
		}
	}
	return tx.Commit()
}
