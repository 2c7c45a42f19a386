package quarry

import (
	"context"
	"time"
)

// EnrolTokenPurpose is the only purpose of an enrolment token: it lets the bootstrap script of
// one XDR connection download collector builds and exchange an acquisition id for that
// acquisition's upload token, nothing else.
const EnrolTokenPurpose = "enrol"

// CustodyEnrolled is the custody action recorded when a collector enrolled for an acquisition
// and received its upload token.
const CustodyEnrolled = "enrolled"

// EnrolToken is a per-connection bearer secret ("qe_…") carried by the bootstrap script in the
// Live Response library. It is short-lived (the script is re-uploaded before it expires) and
// only its SHA-256 is stored; Prefix tells tokens apart in logs and custody entries.
type EnrolToken struct {
	ID           int64      `json:"id"`
	ConnectionID int64      `json:"connection_id"`
	Purpose      string     `json:"purpose"`
	Prefix       string     `json:"prefix"`
	Hash         string     `json:"-"`
	CreatedAt    time.Time  `json:"created_at"`
	ExpiresAt    time.Time  `json:"expires_at"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
}

// Validate checks the fields a caller sets.
func (t *EnrolToken) Validate() error {
	if t.ConnectionID <= 0 {
		return FieldError("connection_id", "An enrolment token belongs to a connection.")
	}
	if t.Purpose == "" {
		t.Purpose = EnrolTokenPurpose
	}
	if t.Purpose != EnrolTokenPurpose {
		return FieldError("purpose", "Unknown enrolment token purpose %q.", t.Purpose)
	}
	if t.Hash == "" || t.Prefix == "" {
		return FieldError("hash", "An enrolment token needs its hash and prefix.")
	}
	if t.ExpiresAt.IsZero() {
		return FieldError("expires_at", "Tokens must expire.")
	}
	return nil
}

// Active reports whether the token may be used at now.
func (t *EnrolToken) Active(now time.Time) bool {
	return t.RevokedAt == nil && now.Before(t.ExpiresAt)
}

// EnrolTokenService stores enrolment tokens and the enrolments they made.
//
// FindEnrolTokenByHash returns ENOTFOUND for an unknown hash (expiry and revocation are the
// caller's to check, so it can say which). RevokeEnrolToken returns ENOTFOUND for an unknown
// id and keeps the first revocation time; RevokeEnrolTokens revokes every live token of a
// connection. DeleteExpiredEnrolTokens removes tokens that expired or were revoked before the
// cutoff and returns how many.
//
// EnrolAcquisition stores the upload token that an enrolment issued (its EnrolTokenID set)
// together with the custody entries, in one transaction. An acquisition enrols once: when it
// has an enrolled upload token already, it returns ECONFLICT and stores nothing.
type EnrolTokenService interface {
	CreateEnrolToken(ctx context.Context, t *EnrolToken) error
	FindEnrolTokenByHash(ctx context.Context, hash string) (*EnrolToken, error)
	RevokeEnrolToken(ctx context.Context, id int64, at time.Time) error
	RevokeEnrolTokens(ctx context.Context, connectionID int64, at time.Time) error
	DeleteExpiredEnrolTokens(ctx context.Context, before time.Time) (int, error)
	EnrolAcquisition(ctx context.Context, upload *UploadToken, custody []*CustodyEntry) error
}
