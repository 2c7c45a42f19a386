package sqldb_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestSessionService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		setClock(db)
		s := sqldb.NewSessionService(db)
		alice := mustCreateUser(t, db, "alice", quarry.RoleAdmin)
		bob := mustCreateUser(t, db, "bob", quarry.RoleViewer)

		newSession := func(hash string, user *quarry.User, expires time.Time) *quarry.Session {
			t.Helper()
			sess := &quarry.Session{TokenHash: hash, CSRFToken: "csrf-" + hash, UserID: user.ID, IP: "10.0.0.1", UserAgent: "test", ExpiresAt: expires}
			if err := s.CreateSession(ctx, sess); err != nil {
				t.Fatalf("CreateSession(%s): %v", hash, err)
			}
			return sess
		}

		live := newSession("live", alice, base.Add(time.Hour))
		t.Run("CreateSession/OK", func(t *testing.T) {
			if live.ID == 0 || !live.CreatedAt.Equal(stored(base)) || live.LastSeenAt != live.CreatedAt {
				t.Fatalf("created session = %+v", live)
			}
		})
		t.Run("CreateSession/ErrConflict", func(t *testing.T) {
			err := s.CreateSession(ctx, &quarry.Session{TokenHash: "live", UserID: alice.ID, ExpiresAt: base.Add(time.Hour)})
			wantCode(t, err, quarry.ECONFLICT)
		})
		t.Run("CreateSession/ErrInvalid", func(t *testing.T) {
			wantCode(t, s.CreateSession(ctx, &quarry.Session{TokenHash: "x", UserID: alice.ID}), quarry.EINVALID)
			wantCode(t, s.CreateSession(ctx, &quarry.Session{TokenHash: "y", UserID: bob.ID + 100, ExpiresAt: base}), quarry.EINVALID)
		})
		t.Run("FindSessionByTokenHash/OK", func(t *testing.T) {
			got, err := s.FindSessionByTokenHash(ctx, "live", base)
			if err != nil || !reflect.DeepEqual(got, live) {
				t.Fatalf("FindSessionByTokenHash = %+v, %v; want %+v", got, err, live)
			}
		})
		t.Run("FindSessionByTokenHash/ErrNotFound", func(t *testing.T) {
			for _, tt := range []struct {
				hash string
				now  time.Time
			}{{"nope", base}, {"live", base.Add(time.Hour)}, {"live", base.Add(2 * time.Hour)}} {
				_, err := s.FindSessionByTokenHash(ctx, tt.hash, tt.now)
				wantCode(t, err, quarry.ENOTFOUND)
			}
		})
		t.Run("TouchSession/OK", func(t *testing.T) {
			seen, expires := base.Add(30*time.Minute), base.Add(3*time.Hour)
			if err := s.TouchSession(ctx, live.ID, seen, expires); err != nil {
				t.Fatal(err)
			}
			got, err := s.FindSessionByTokenHash(ctx, "live", base.Add(2*time.Hour))
			if err != nil || !got.LastSeenAt.Equal(stored(seen)) || !got.ExpiresAt.Equal(stored(expires)) {
				t.Fatalf("after touch = %+v, %v", got, err)
			}
		})
		t.Run("TouchSession/ErrNotFound", func(t *testing.T) {
			wantCode(t, s.TouchSession(ctx, live.ID+100, base, base), quarry.ENOTFOUND)
		})
		t.Run("DeleteSession", func(t *testing.T) {
			sess := newSession("to-delete", bob, base.Add(time.Hour))
			if err := s.DeleteSession(ctx, sess.ID); err != nil {
				t.Fatal(err)
			}
			_, err := s.FindSessionByTokenHash(ctx, "to-delete", base)
			wantCode(t, err, quarry.ENOTFOUND)
			wantCode(t, s.DeleteSession(ctx, sess.ID), quarry.ENOTFOUND)
		})
		t.Run("DeleteUserSessions", func(t *testing.T) {
			newSession("bob-1", bob, base.Add(time.Hour))
			newSession("bob-2", bob, base.Add(time.Hour))
			if err := s.DeleteUserSessions(ctx, bob.ID); err != nil {
				t.Fatal(err)
			}
			for _, hash := range []string{"bob-1", "bob-2"} {
				_, err := s.FindSessionByTokenHash(ctx, hash, base)
				wantCode(t, err, quarry.ENOTFOUND)
			}
			if _, err := s.FindSessionByTokenHash(ctx, "live", base); err != nil {
				t.Fatalf("alice's session went with bob's: %v", err)
			}
		})
		t.Run("DeleteExpiredSessions", func(t *testing.T) {
			newSession("old-1", bob, base.Add(-time.Hour))
			newSession("old-2", bob, base)
			newSession("young", bob, base.Add(time.Second))
			n, err := s.DeleteExpiredSessions(ctx, base)
			if err != nil || n != 2 {
				t.Fatalf("DeleteExpiredSessions = %d, %v; want 2", n, err)
			}
			for hash, want := range map[string]string{"young": "", "live": "", "old-1": quarry.ENOTFOUND} {
				_, err := s.FindSessionByTokenHash(ctx, hash, base.Add(-2*time.Hour))
				wantCode(t, err, want)
			}
		})
	})
}
