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

func TestTokenService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		advance := setClock(db)
		s := sqldb.NewTokenService(db)
		alice := mustCreateUser(t, db, "alice", quarry.RoleAdmin)
		bob := mustCreateUser(t, db, "bob", quarry.RoleViewer)

		newToken := func(hash string, user *quarry.User, expires time.Time) *quarry.APIToken {
			t.Helper()
			tok := &quarry.APIToken{UserID: user.ID, Name: "token " + hash, Prefix: hash[:2], Hash: hash, Role: quarry.RoleViewer, ExpiresAt: expires}
			if err := s.CreateToken(ctx, tok); err != nil {
				t.Fatalf("CreateToken(%s): %v", hash, err)
			}
			advance(time.Second) // distinct creation times, for the newest-first order
			return tok
		}

		first := newToken("h-first", alice, base.Add(24*time.Hour))
		t.Run("CreateToken/OK", func(t *testing.T) {
			if first.ID == 0 || !first.CreatedAt.Equal(stored(base)) || first.LastUsedAt != nil || first.RevokedAt != nil {
				t.Fatalf("created token = %+v", first)
			}
		})
		t.Run("CreateToken/ErrConflict", func(t *testing.T) {
			err := s.CreateToken(ctx, &quarry.APIToken{UserID: alice.ID, Name: "dup", Hash: "h-first", Role: quarry.RoleViewer, ExpiresAt: base})
			wantCode(t, err, quarry.ECONFLICT)
		})
		t.Run("CreateToken/ErrInvalid", func(t *testing.T) {
			for _, tok := range []*quarry.APIToken{
				{UserID: alice.ID, Name: "", Hash: "a", Role: quarry.RoleViewer, ExpiresAt: base},
				{UserID: alice.ID, Name: "n", Hash: "b", Role: "root", ExpiresAt: base},
				{UserID: alice.ID, Name: "n", Hash: "c", Role: quarry.RoleViewer},
				{UserID: bob.ID + 100, Name: "n", Hash: "d", Role: quarry.RoleViewer, ExpiresAt: base},
			} {
				wantCode(t, s.CreateToken(ctx, tok), quarry.EINVALID)
			}
		})
		t.Run("FindTokenByID/OK", func(t *testing.T) {
			got, err := s.FindTokenByID(ctx, first.ID)
			if err != nil || !reflect.DeepEqual(got, first) {
				t.Fatalf("FindTokenByID = %+v, %v; want %+v", got, err, first)
			}
		})
		t.Run("FindTokenByID/ErrNotFound", func(t *testing.T) {
			_, err := s.FindTokenByID(ctx, first.ID+100)
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("FindTokenByHash/OK", func(t *testing.T) {
			got, err := s.FindTokenByHash(ctx, "h-first")
			if err != nil || !reflect.DeepEqual(got, first) {
				t.Fatalf("FindTokenByHash = %+v, %v; want %+v", got, err, first)
			}
		})
		t.Run("FindTokenByHash/ErrNotFound", func(t *testing.T) {
			_, err := s.FindTokenByHash(ctx, "h-none")
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("TouchToken", func(t *testing.T) {
			at := base.Add(time.Minute + time.Nanosecond)
			if err := s.TouchToken(ctx, first.ID, at); err != nil {
				t.Fatal(err)
			}
			got, _ := s.FindTokenByID(ctx, first.ID)
			if got.LastUsedAt == nil || !got.LastUsedAt.Equal(stored(at)) {
				t.Fatalf("LastUsedAt = %v, want %v", got.LastUsedAt, stored(at))
			}
			wantCode(t, s.TouchToken(ctx, first.ID+100, at), quarry.ENOTFOUND)
		})
		t.Run("RevokeToken", func(t *testing.T) {
			tok := newToken("h-revoke", bob, base.Add(time.Hour))
			if err := s.RevokeToken(ctx, tok.ID, base.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeToken(ctx, tok.ID, base.Add(2*time.Minute)); err != nil {
				t.Fatalf("second revoke: %v", err)
			}
			got, _ := s.FindTokenByID(ctx, tok.ID)
			if got.RevokedAt == nil || !got.RevokedAt.Equal(stored(base.Add(time.Minute))) || got.Active(base) {
				t.Fatalf("RevokedAt = %v, want the first revocation %v", got.RevokedAt, base.Add(time.Minute))
			}
			wantCode(t, s.RevokeToken(ctx, tok.ID+100, base), quarry.ENOTFOUND)
		})
		t.Run("FindTokens", func(t *testing.T) {
			newToken("h-bob-2", bob, base.Add(time.Hour))
			tests := []struct {
				name   string
				filter quarry.TokenFilter
				want   []string
				total  int
			}{
				{"All", quarry.TokenFilter{}, []string{"h-bob-2", "h-revoke", "h-first"}, 3},
				{"User", quarry.TokenFilter{UserID: &bob.ID}, []string{"h-bob-2", "h-revoke"}, 2},
				{"Page", quarry.TokenFilter{Offset: 1, Limit: 1}, []string{"h-revoke"}, 3},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tokens, total, err := s.FindTokens(ctx, tt.filter)
					hashes := pluck(tokens, tokenHash)
					if err != nil || total != tt.total || !reflect.DeepEqual(hashes, tt.want) {
						t.Fatalf("FindTokens(%+v) = %v, %d, %v; want %v, %d", tt.filter, hashes, total, err, tt.want, tt.total)
					}
				})
			}
		})
		t.Run("DeleteExpiredTokens", func(t *testing.T) {
			cutoff := base.Add(10 * 24 * time.Hour)
			newToken("h-expired", bob, cutoff.Add(-time.Second))
			newToken("h-at-cutoff", bob, cutoff)
			newToken("h-live", bob, cutoff.Add(time.Hour))
			revokedLate := newToken("h-revoked-late", bob, cutoff.Add(time.Hour))
			if err := s.RevokeToken(ctx, revokedLate.ID, cutoff); err != nil {
				t.Fatal(err)
			}
			// Expired before the cutoff: h-first, h-revoke, h-bob-2, h-expired.
			n, err := s.DeleteExpiredTokens(ctx, cutoff)
			if err != nil || n != 4 {
				t.Fatalf("DeleteExpiredTokens = %d, %v; want 4", n, err)
			}
			tokens, _, _ := s.FindTokens(ctx, quarry.TokenFilter{})
			hashes := pluck(tokens, tokenHash)
			if want := []string{"h-revoked-late", "h-live", "h-at-cutoff"}; !reflect.DeepEqual(hashes, want) {
				t.Fatalf("tokens left = %v, want %v", hashes, want)
			}
		})
	})
}

func tokenHash(t *quarry.APIToken) string { return t.Hash }
