package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestPasswordHash(t *testing.T) {
	h, err := auth.HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash format = %q", h)
	}
	for _, tc := range []struct {
		name, hash, pw string
		ok, err        bool
	}{
		{"Right", h, "correct horse battery", true, false},
		{"Wrong", h, "correct horse battery!", false, false},
		{"Empty", h, "", false, false},
		{"NotArgon", "$2y$10$abc", "x", false, true},
		{"HugeMemory", "$argon2id$v=19$m=99999999,t=3,p=2$AAAA$AAAA", "x", false, true},
		{"BadBase64", "$argon2id$v=19$m=65536,t=3,p=2$!!!$AAAA", "x", false, true},
		{"Garbage", "garbage", "x", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := auth.VerifyPassword(tc.hash, tc.pw)
			if ok != tc.ok || (err != nil) != tc.err {
				t.Fatalf("VerifyPassword = %v, %v; want %v, err %v", ok, err, tc.ok, tc.err)
			}
		})
	}
	h2, _ := auth.HashPassword("correct horse battery")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

func TestSecrets(t *testing.T) {
	s1, h1 := auth.NewSecret(auth.TokenPrefix)
	s2, _ := auth.NewSecret(auth.TokenPrefix)
	if s1 == s2 || !strings.HasPrefix(s1, "qk_") || len(s1) < 40 {
		t.Fatalf("secrets %q %q", s1, s2)
	}
	if h1 != auth.HashSecret(s1) || strings.Contains(h1, s1) || len(h1) != 64 {
		t.Fatalf("hash %q of %q", h1, s1)
	}
}

func newService(t *testing.T, db *sqldb.DB, now *time.Time) *auth.Service {
	return &auth.Service{
		Users: sqldb.NewUserService(db), Sessions: sqldb.NewSessionService(db), Tokens: sqldb.NewTokenService(db), Audit: sqldb.NewAuditService(db),
		Now: func() time.Time { return *now },
	}
}

func TestLoginAndSession(t *testing.T) {
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		s := newService(t, db, &now)
		if _, err := s.CreateUser(ctx, "erin", "short", quarry.RoleAnalyst); quarry.ErrorField(err) != "password" {
			t.Fatalf("short password accepted: %v", err)
		}
		u, err := s.CreateUser(ctx, "erin", "a long enough password", quarry.RoleAnalyst)
		if err != nil {
			t.Fatal(err)
		}

		t.Run("UnknownUser", func(t *testing.T) {
			if _, _, _, err := s.Login(ctx, "nobody", "a long enough password", "192.0.2.1", ""); quarry.ErrorCode(err) != quarry.EUNAUTHORIZED {
				t.Fatalf("Login = %v", err)
			}
		})
		sess, secret, got, err := s.Login(ctx, "erin", "a long enough password", "192.0.2.1", "firefox")
		if err != nil || got.ID != u.ID {
			t.Fatalf("Login = %v, %v", got, err)
		}
		if sess.TokenHash == secret || !strings.HasPrefix(secret, auth.SessionPrefix) || sess.CSRFToken == "" {
			t.Fatalf("session stores its secret or lacks a CSRF token: %+v", sess)
		}
		a, _, err := s.AuthenticateSession(ctx, secret, "192.0.2.1")
		if err != nil || a.User.ID != u.ID || a.Role != quarry.RoleAnalyst {
			t.Fatalf("AuthenticateSession = %+v, %v", a, err)
		}

		t.Run("SlidingExpiry", func(t *testing.T) {
			now = now.Add(11 * time.Hour) // used: pushes expiry to now+12h
			if _, _, err := s.AuthenticateSession(ctx, secret, ""); err != nil {
				t.Fatalf("active session refused: %v", err)
			}
			now = now.Add(11 * time.Hour)
			if _, _, err := s.AuthenticateSession(ctx, secret, ""); err != nil {
				t.Fatalf("session used within the idle limit refused: %v", err)
			}
			now = now.Add(13 * time.Hour)
			if _, _, err := s.AuthenticateSession(ctx, secret, ""); quarry.ErrorCode(err) != quarry.EUNAUTHORIZED {
				t.Fatalf("idle session accepted: %v", err)
			}
		})

		t.Run("DisabledUser", func(t *testing.T) {
			_, secret, _, err := s.Login(ctx, "erin", "a long enough password", "192.0.2.1", "")
			if err != nil {
				t.Fatal(err)
			}
			yes := true
			if _, err := s.Users.UpdateUser(ctx, u.ID, quarry.UserUpdate{Disabled: &yes}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.AuthenticateSession(ctx, secret, ""); quarry.ErrorCode(err) != quarry.EUNAUTHORIZED {
				t.Fatalf("disabled user's session accepted: %v", err)
			}
			if _, _, _, err := s.Login(ctx, "erin", "a long enough password", "192.0.2.9", ""); quarry.ErrorCode(err) != quarry.EUNAUTHORIZED {
				t.Fatalf("disabled user signed in: %v", err)
			}
		})
	})
}

func TestThrottle(t *testing.T) {
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		s := newService(t, db, &now)
		if _, err := s.CreateUser(ctx, "frank", "a long enough password", quarry.RoleViewer); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			s.Login(ctx, "frank", "guess", "198.51.100.7", "")
		}
		if _, _, _, err := s.Login(ctx, "frank", "a long enough password", "198.51.100.8", ""); quarry.ErrorCode(err) != quarry.ETHROTTLED {
			t.Fatalf("login after 5 failures = %v, want throttled", err)
		}
		now = now.Add(16 * time.Minute)
		if _, _, _, err := s.Login(ctx, "frank", "a long enough password", "198.51.100.8", ""); err != nil {
			t.Fatalf("login after the window = %v", err)
		}
		audit, _, err := s.Audit.FindAuditEntries(ctx, quarry.AuditFilter{Action: "auth.login"})
		if err != nil {
			t.Fatal(err)
		}
		var fails, oks int
		for _, e := range audit {
			if e.Outcome == quarry.OutcomeFailure {
				fails++
			} else {
				oks++
			}
		}
		if fails != 6 || oks != 1 {
			t.Fatalf("audit has %d failed and %d good logins, want 6 and 1", fails, oks)
		}
	})
}

func TestTokens(t *testing.T) {
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		s := newService(t, db, &now)
		u, err := s.CreateUser(ctx, "gina", "a long enough password", quarry.RoleAnalyst)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CreateToken(ctx, u.ID, "x", quarry.RoleAdmin, time.Hour); quarry.ErrorField(err) != "role" {
			t.Fatalf("escalating token = %v", err)
		}
		if _, _, err := s.CreateToken(ctx, u.ID, "x", quarry.RoleViewer, 0); quarry.ErrorField(err) != "ttl" {
			t.Fatalf("token without expiry = %v", err)
		}
		tok, secret, err := s.CreateToken(ctx, u.ID, "ci", quarry.RoleAnalyst, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Hash == secret || !strings.HasPrefix(secret, tok.Prefix) {
			t.Fatalf("token %+v / %q", tok, secret)
		}
		a, err := s.AuthenticateToken(ctx, secret, "")
		if err != nil || a.Role != quarry.RoleAnalyst || a.TokenID != tok.ID {
			t.Fatalf("AuthenticateToken = %+v, %v", a, err)
		}
		// Demoting the user demotes the token.
		viewer := quarry.RoleViewer
		if _, err := s.Users.UpdateUser(ctx, u.ID, quarry.UserUpdate{Role: &viewer}); err != nil {
			t.Fatal(err)
		}
		if a, err := s.AuthenticateToken(ctx, secret, ""); err != nil || a.Role != quarry.RoleViewer {
			t.Fatalf("after demotion: %+v, %v", a, err)
		}
		now = now.Add(61 * time.Minute)
		if _, err := s.AuthenticateToken(ctx, secret, ""); quarry.ErrorCode(err) != quarry.EUNAUTHORIZED {
			t.Fatalf("expired token accepted: %v", err)
		}
	})
}
