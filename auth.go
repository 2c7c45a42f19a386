package quarry

import (
	"context"
	"time"
)

// Session is a browser login. The cookie carries a random secret; only its SHA-256 is stored,
// so a copy of the database cannot be replayed as a login.
type Session struct {
	ID         int64     `json:"id"`
	TokenHash  string    `json:"-"`
	CSRFToken  string    `json:"-"` // per-session; forms echo it back
	UserID     int64     `json:"user_id"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
}

// SessionService stores browser sessions. FindSessionByTokenHash returns ENOTFOUND for an
// unknown or expired session.
type SessionService interface {
	CreateSession(ctx context.Context, s *Session) error
	FindSessionByTokenHash(ctx context.Context, hash string, now time.Time) (*Session, error)
	TouchSession(ctx context.Context, id int64, lastSeen, expires time.Time) error
	DeleteSession(ctx context.Context, id int64) error
	DeleteUserSessions(ctx context.Context, userID int64) error
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error)
}

// APIToken lets automation call the API as a user, with at most the user's role and only until
// it expires. The secret is shown once at creation; only its SHA-256 is stored. Prefix (the first
// characters of the secret) lets a human tell tokens apart in lists and logs.
type APIToken struct {
	ID         int64      `json:"id"`
	UserID     int64      `json:"user_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Hash       string     `json:"-"`
	Role       Role       `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// Validate checks the fields a caller sets.
func (t *APIToken) Validate() error {
	if t.Name == "" || len(t.Name) > 100 {
		return FieldError("name", "Token name must be 1 to 100 characters.")
	}
	if !t.Role.Valid() {
		return FieldError("role", "Role must be one of viewer, analyst, admin.")
	}
	if t.ExpiresAt.IsZero() {
		return FieldError("expires_at", "Tokens must expire.")
	}
	return nil
}

// Active reports whether the token may be used at now.
func (t *APIToken) Active(now time.Time) bool {
	return t.RevokedAt == nil && now.Before(t.ExpiresAt)
}

// TokenFilter selects API tokens; zero fields match everything.
type TokenFilter struct {
	UserID *int64
	Offset int
	Limit  int
}

// TokenService stores API tokens. FindTokenByHash returns ENOTFOUND for an unknown hash
// (expiry and revocation are the caller's to check, so it can say which).
type TokenService interface {
	CreateToken(ctx context.Context, t *APIToken) error
	FindTokenByID(ctx context.Context, id int64) (*APIToken, error)
	FindTokenByHash(ctx context.Context, hash string) (*APIToken, error)
	FindTokens(ctx context.Context, filter TokenFilter) ([]*APIToken, int, error)
	RevokeToken(ctx context.Context, id int64, at time.Time) error
	TouchToken(ctx context.Context, id int64, at time.Time) error
	// DeleteExpiredTokens removes tokens that expired or were revoked before the cutoff.
	DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error)
}
