package auth

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/quarry-dfir/quarry"
)

// Secret prefixes make leaked secrets recognisable (and greppable by secret scanners).
const (
	TokenPrefix   = "qk_"
	SessionPrefix = "qs_"
)

// Service authenticates users. Its zero durations take the defaults below.
type Service struct {
	Users    quarry.UserService
	Sessions quarry.SessionService
	Tokens   quarry.TokenService
	Audit    quarry.AuditService
	Now      func() time.Time

	SessionIdle     time.Duration // a session unused this long expires (default 12h)
	SessionMax      time.Duration // no session lives longer (default 7 days)
	FailureWindow   time.Duration // failed logins counted over this window (default 15m)
	MaxUserFailures int           // per username in the window (default 5)
	MaxIPFailures   int           // per source address in the window (default 50)
	MaxTokenTTL     time.Duration // longest API token lifetime (default 365 days)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// dummyHash makes a login for an unknown user cost as much as one for a known user, so response
// time does not tell which usernames exist. It is made on first use, not at start: an argon2id
// hash costs 64 MB and a sixth of a second, which every command (quarry parse, quarry version)
// would otherwise pay.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("quarry-timing-equaliser")
	return h
})

var errBadLogin = quarry.Errorf(quarry.EUNAUTHORIZED, "Wrong username or password.")

// Login checks a username and password and opens a session. It returns the session and the
// secret for the cookie. Failures are throttled per username and per source address.
func (s *Service) Login(ctx context.Context, username, password, ip, userAgent string) (*quarry.Session, string, *quarry.User, error) {
	now := s.now()
	window := or(s.FailureWindow, 15*time.Minute)
	byUser, byIP, err := s.Users.CountLoginFailures(ctx, username, ip, now.Add(-window))
	if err != nil {
		return nil, "", nil, fmt.Errorf("auth: count failures: %w", err)
	}
	if byUser >= or(s.MaxUserFailures, 5) || byIP >= or(s.MaxIPFailures, 50) {
		s.audit(ctx, nil, "auth.login", username, ip, quarry.OutcomeFailure, map[string]any{"reason": "throttled"})
		return nil, "", nil, quarry.Errorf(quarry.ETHROTTLED, "Too many failed sign-in attempts. Try again in %d minutes.", int(window.Minutes()))
	}

	u, err := s.Users.FindUserByUsername(ctx, username)
	if err != nil && quarry.ErrorCode(err) != quarry.ENOTFOUND {
		return nil, "", nil, fmt.Errorf("auth: find user: %w", err)
	}
	hash := dummyHash()
	if u != nil {
		hash = u.PasswordHash
	}
	ok, verr := VerifyPassword(hash, password)
	if u == nil || u.Disabled || !ok || verr != nil {
		if err := s.Users.RecordLoginFailure(ctx, username, ip, now); err != nil {
			return nil, "", nil, fmt.Errorf("auth: record failure: %w", err)
		}
		s.audit(ctx, u, "auth.login", username, ip, quarry.OutcomeFailure, nil)
		return nil, "", nil, errBadLogin
	}

	secret, hashed := NewSecret(SessionPrefix)
	csrf, _ := NewSecret("")
	sess := &quarry.Session{
		TokenHash: hashed, CSRFToken: csrf, UserID: u.ID, IP: ip, UserAgent: truncate(userAgent, 300),
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(or(s.SessionIdle, 12*time.Hour)),
	}
	if err := s.Sessions.CreateSession(ctx, sess); err != nil {
		return nil, "", nil, fmt.Errorf("auth: create session: %w", err)
	}
	if _, err := s.Users.UpdateUser(ctx, u.ID, quarry.UserUpdate{LastLoginAt: &now}); err != nil {
		return nil, "", nil, fmt.Errorf("auth: update last login: %w", err)
	}
	s.audit(ctx, u, "auth.login", username, ip, quarry.OutcomeSuccess, nil)
	return sess, secret, u, nil
}

// Logout ends a session.
func (s *Service) Logout(ctx context.Context, sess *quarry.Session) error {
	return s.Sessions.DeleteSession(ctx, sess.ID)
}

// AuthenticateSession resolves a session cookie to its actor, sliding the idle expiry forward.
func (s *Service) AuthenticateSession(ctx context.Context, secret, ip string) (*quarry.Actor, *quarry.Session, error) {
	if !strings.HasPrefix(secret, SessionPrefix) {
		return nil, nil, quarry.Errorf(quarry.EUNAUTHORIZED, "Your session has ended. Please sign in again.")
	}
	now := s.now()
	sess, err := s.Sessions.FindSessionByTokenHash(ctx, HashSecret(secret), now)
	if quarry.ErrorCode(err) == quarry.ENOTFOUND || (sess != nil && now.Sub(sess.CreatedAt) > or(s.SessionMax, 7*24*time.Hour)) {
		return nil, nil, quarry.Errorf(quarry.EUNAUTHORIZED, "Your session has ended. Please sign in again.")
	} else if err != nil {
		return nil, nil, fmt.Errorf("auth: find session: %w", err)
	}
	u, err := s.activeUser(ctx, sess.UserID)
	if err != nil {
		return nil, nil, err
	}
	// Touch at most once a minute: a page load fires several requests.
	if now.Sub(sess.LastSeenAt) > time.Minute {
		sess.LastSeenAt, sess.ExpiresAt = now, now.Add(or(s.SessionIdle, 12*time.Hour))
		if err := s.Sessions.TouchSession(ctx, sess.ID, sess.LastSeenAt, sess.ExpiresAt); err != nil {
			return nil, nil, fmt.Errorf("auth: touch session: %w", err)
		}
	}
	return &quarry.Actor{User: u, Role: u.Role, IP: ip}, sess, nil
}

// AuthenticateToken resolves an API token to its actor. The effective role is the lower of the
// token's and its user's current role, so demoting a user also demotes their tokens.
func (s *Service) AuthenticateToken(ctx context.Context, secret, ip string) (*quarry.Actor, error) {
	invalid := quarry.Errorf(quarry.EUNAUTHORIZED, "The API token is invalid, expired or revoked.")
	if !strings.HasPrefix(secret, TokenPrefix) {
		return nil, invalid
	}
	t, err := s.Tokens.FindTokenByHash(ctx, HashSecret(secret))
	if quarry.ErrorCode(err) == quarry.ENOTFOUND {
		return nil, invalid
	} else if err != nil {
		return nil, fmt.Errorf("auth: find token: %w", err)
	}
	now := s.now()
	if !t.Active(now) {
		return nil, invalid
	}
	u, err := s.activeUser(ctx, t.UserID)
	if err != nil {
		return nil, err
	}
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > time.Minute {
		if err := s.Tokens.TouchToken(ctx, t.ID, now); err != nil {
			return nil, fmt.Errorf("auth: touch token: %w", err)
		}
	}
	return &quarry.Actor{User: u, Role: quarry.MinRole(u.Role, t.Role), TokenID: t.ID, IP: ip}, nil
}

func (s *Service) activeUser(ctx context.Context, id int64) (*quarry.User, error) {
	u, err := s.Users.FindUserByID(ctx, id)
	if quarry.ErrorCode(err) == quarry.ENOTFOUND || (u != nil && u.Disabled) {
		return nil, quarry.Errorf(quarry.EUNAUTHORIZED, "This account is disabled or no longer exists.")
	} else if err != nil {
		return nil, fmt.Errorf("auth: find user: %w", err)
	}
	return u, nil
}

// CreateUser creates a local account after checking the password policy.
func (s *Service) CreateUser(ctx context.Context, username, password string, role quarry.Role) (*quarry.User, error) {
	if len([]rune(password)) < MinPasswordLength {
		return nil, quarry.FieldError("password", "Password must be at least %d characters.", MinPasswordLength)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return nil, err
	}
	u := &quarry.User{Username: strings.TrimSpace(username), Role: role, PasswordHash: hash}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	if err := s.Users.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// CreateToken issues an API token for a user. The secret is returned once and never stored.
func (s *Service) CreateToken(ctx context.Context, userID int64, name string, role quarry.Role, ttl time.Duration) (*quarry.APIToken, string, error) {
	u, err := s.activeUser(ctx, userID)
	if err != nil {
		return nil, "", err
	}
	if role == "" {
		role = u.Role
	}
	if !role.Valid() {
		return nil, "", quarry.FieldError("role", "Role must be one of viewer, analyst, admin.")
	}
	if !u.Role.AtLeast(role) {
		return nil, "", quarry.FieldError("role", "A token cannot have more rights than its user (%s).", u.Role)
	}
	if ttl <= 0 || ttl > or(s.MaxTokenTTL, 365*24*time.Hour) {
		return nil, "", quarry.FieldError("ttl", "Token lifetime must be between 1 second and %d days.", int(or(s.MaxTokenTTL, 365*24*time.Hour).Hours()/24))
	}
	secret, hash := NewSecret(TokenPrefix)
	now := s.now()
	t := &quarry.APIToken{UserID: u.ID, Name: strings.TrimSpace(name), Prefix: secret[:len(TokenPrefix)+6], Hash: hash, Role: role, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := t.Validate(); err != nil {
		return nil, "", err
	}
	if err := s.Tokens.CreateToken(ctx, t); err != nil {
		return nil, "", err
	}
	return t, secret, nil
}

func (s *Service) audit(ctx context.Context, u *quarry.User, action, target, ip, outcome string, details map[string]any) {
	if s.Audit == nil {
		return
	}
	e := quarry.NewAuditEntry(ctx, action, "user", target)
	e.At, e.IP, e.Outcome, e.Details = s.now(), ip, outcome, details
	if u != nil {
		id := u.ID
		e.ActorID, e.Actor = &id, u.Username
	} else {
		e.Actor = "anonymous"
	}
	// The login result stands whatever happens to its audit row; the store logs its own errors.
	_ = s.Audit.RecordAudit(ctx, e)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
