package sqldb

import (
	"context"
	"time"

	"github.com/quarry-dfir/quarry"
)

// SessionService stores browser sessions.
type SessionService struct {
	db *DB
}

var _ quarry.SessionService = (*SessionService)(nil)

// NewSessionService returns a SessionService on db.
func NewSessionService(db *DB) *SessionService { return &SessionService{db: db} }

const errSessionNotFound = "Session not found."

// CreateSession stores s, setting its ID, CreatedAt and, if zero, LastSeenAt. The user must
// exist (EINVALID otherwise) and the token hash be new (ECONFLICT otherwise).
func (s *SessionService) CreateSession(ctx context.Context, sess *quarry.Session) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createSession(ctx, tx, sess); err != nil {
		return err
	}
	return tx.Commit()
}

// FindSessionByTokenHash returns the session with hash that is still valid at now, or ENOTFOUND.
func (s *SessionService) FindSessionByTokenHash(ctx context.Context, hash string, now time.Time) (*quarry.Session, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var sess quarry.Session
	err = tx.queryRow(ctx, `SELECT id, token_hash, csrf_token, user_id, ip, user_agent, created_at, expires_at, last_seen_at
		FROM sessions WHERE token_hash = ? AND expires_at > ?`, hash, now).Scan(
		&sess.ID, &sess.TokenHash, &sess.CSRFToken, &sess.UserID, &sess.IP, &sess.UserAgent,
		timeCol(&sess.CreatedAt), timeCol(&sess.ExpiresAt), timeCol(&sess.LastSeenAt))
	if err != nil {
		return nil, translate(err, "find session", errSessionNotFound, "")
	}
	return &sess, nil
}

// TouchSession records activity on the session with id and moves its expiry; ENOTFOUND if
// there is none.
func (s *SessionService) TouchSession(ctx context.Context, id int64, lastSeen, expires time.Time) error {
	return s.db.change(ctx, "touch session", errSessionNotFound,
		"UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id = ?", lastSeen, expires, id)
}

// DeleteSession removes the session with id (a logout); ENOTFOUND if there is none.
func (s *SessionService) DeleteSession(ctx context.Context, id int64) error {
	return s.db.change(ctx, "delete session", errSessionNotFound, "DELETE FROM sessions WHERE id = ?", id)
}

// DeleteUserSessions removes every session of the user, e.g. after a password change.
func (s *SessionService) DeleteUserSessions(ctx context.Context, userID int64) error {
	_, err := s.db.deleteMany(ctx, "delete user sessions", "DELETE FROM sessions WHERE user_id = ?", userID)
	return err
}

// DeleteExpiredSessions removes sessions that expired at or before now and returns how many.
func (s *SessionService) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	return s.db.deleteMany(ctx, "delete expired sessions", "DELETE FROM sessions WHERE expires_at <= ?", now)
}

func createSession(ctx context.Context, tx *Tx, s *quarry.Session) error {
	if s.ExpiresAt.IsZero() {
		return quarry.FieldError("expires_at", "Sessions must expire.")
	}
	s.CreatedAt, s.ExpiresAt = tx.now, storedTime(s.ExpiresAt)
	if s.LastSeenAt.IsZero() {
		s.LastSeenAt = tx.now
	}
	s.LastSeenAt = storedTime(s.LastSeenAt)
	err := tx.queryRow(ctx, `INSERT INTO sessions (token_hash, csrf_token, user_id, ip, user_agent, created_at, expires_at, last_seen_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		s.TokenHash, s.CSRFToken, s.UserID, s.IP, s.UserAgent, s.CreatedAt, s.ExpiresAt, s.LastSeenAt).Scan(&s.ID)
	return translate(err, "create session", "", "The session already exists.")
}

// change runs one UPDATE or DELETE in its own transaction and returns ENOTFOUND with notFound
// when it touched no row.
func (db *DB) change(ctx context.Context, op, notFound, query string, args ...any) error {
	tx, err := db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	n, err := execCount(ctx, tx, query, args...)
	if err != nil {
		return translate(err, op, "", "")
	} else if n == 0 {
		return quarry.Errorf(quarry.ENOTFOUND, "%s", notFound)
	}
	return tx.Commit()
}

// deleteMany runs one DELETE in its own transaction and returns how many rows it removed.
func (db *DB) deleteMany(ctx context.Context, op, query string, args ...any) (int, error) {
	tx, err := db.begin(ctx, false)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	n, err := execCount(ctx, tx, query, args...)
	if err != nil {
		return 0, translate(err, op, "", "")
	}
	return n, tx.Commit()
}
