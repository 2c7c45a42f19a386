package sqldb

import (
	"context"
	"database/sql"
	"time"

	"github.com/quarry-dfir/quarry"
)

// TokenService stores API tokens.
type TokenService struct {
	db *DB
}

var _ quarry.TokenService = (*TokenService)(nil)

// NewTokenService returns a TokenService on db.
func NewTokenService(db *DB) *TokenService { return &TokenService{db: db} }

const (
	tokenColumns       = "id, user_id, name, prefix, hash, role, created_at, expires_at, last_used_at, revoked_at"
	errTokenNotFound   = "API token not found."
	errTokenDuplicated = "The API token already exists."
)

func scanToken(s interface{ Scan(...any) error }) (*quarry.APIToken, error) {
	var t quarry.APIToken
	err := s.Scan(&t.ID, &t.UserID, &t.Name, &t.Prefix, &t.Hash, &t.Role,
		timeCol(&t.CreatedAt), timeCol(&t.ExpiresAt), nullTimeCol(&t.LastUsedAt), nullTimeCol(&t.RevokedAt))
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateToken validates and stores t, setting its ID and CreatedAt. The user must exist
// (EINVALID otherwise).
func (s *TokenService) CreateToken(ctx context.Context, t *quarry.APIToken) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createToken(ctx, tx, t); err != nil {
		return err
	}
	return tx.Commit()
}

// FindTokenByID returns the token with id, or ENOTFOUND.
func (s *TokenService) FindTokenByID(ctx context.Context, id int64) (*quarry.APIToken, error) {
	return s.findOne(ctx, "id = ?", id)
}

// FindTokenByHash returns the token with hash, or ENOTFOUND, whether or not it is still active.
func (s *TokenService) FindTokenByHash(ctx context.Context, hash string) (*quarry.APIToken, error) {
	return s.findOne(ctx, "hash = ?", hash)
}

func (s *TokenService) findOne(ctx context.Context, cond string, arg any) (*quarry.APIToken, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	t, err := scanToken(tx.queryRow(ctx, "SELECT "+tokenColumns+" FROM api_tokens WHERE "+cond, arg))
	return t, translate(err, "find token", errTokenNotFound, "")
}

// FindTokens returns the tokens matching filter, newest first, and how many match in all.
func (s *TokenService) FindTokens(ctx context.Context, filter quarry.TokenFilter) ([]*quarry.APIToken, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var w where
	if filter.UserID != nil {
		w.add("user_id = ?", *filter.UserID)
	}
	var tokens []*quarry.APIToken
	total, err := findPage(ctx, tx, "SELECT "+tokenColumns, "FROM api_tokens", &w, "created_at DESC, id DESC", filter.Offset, filter.Limit,
		func(rows *sql.Rows) error {
			t, err := scanToken(rows)
			tokens = append(tokens, t)
			return err
		})
	if err != nil {
		return nil, 0, translate(err, "find tokens", "", "")
	}
	return tokens, total, nil
}

// RevokeToken marks the token with id revoked at at; ENOTFOUND if there is none. Revoking a
// revoked token keeps the first revocation time.
func (s *TokenService) RevokeToken(ctx context.Context, id int64, at time.Time) error {
	return s.db.change(ctx, "revoke token", errTokenNotFound,
		"UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", at, id)
}

// TouchToken records a use of the token with id; ENOTFOUND if there is none.
func (s *TokenService) TouchToken(ctx context.Context, id int64, at time.Time) error {
	return s.db.change(ctx, "touch token", errTokenNotFound, "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", at, id)
}

// DeleteExpiredTokens removes tokens that expired or were revoked before the cutoff and
// returns how many.
func (s *TokenService) DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error) {
	return s.db.deleteMany(ctx, "delete expired tokens",
		"DELETE FROM api_tokens WHERE expires_at < ? OR revoked_at < ?", before, before)
}

func createToken(ctx context.Context, tx *Tx, t *quarry.APIToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	t.CreatedAt, t.ExpiresAt = tx.now, storedTime(t.ExpiresAt)
	err := tx.queryRow(ctx, `INSERT INTO api_tokens (user_id, name, prefix, hash, role, created_at, expires_at, last_used_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		t.UserID, t.Name, t.Prefix, t.Hash, t.Role, t.CreatedAt, t.ExpiresAt, t.LastUsedAt, t.RevokedAt).Scan(&t.ID)
	if err == nil {
		t.LastUsedAt, t.RevokedAt = storedTimePtr(t.LastUsedAt), storedTimePtr(t.RevokedAt)
	}
	return translate(err, "create token", "", errTokenDuplicated)
}
