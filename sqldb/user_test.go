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

func TestUserService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		advance := setClock(db)
		s := sqldb.NewUserService(db)

		alice := &quarry.User{Username: "Alice", Role: quarry.RoleAdmin, PasswordHash: "h1"}
		t.Run("CreateUser/OK", func(t *testing.T) {
			if err := s.CreateUser(ctx, alice); err != nil {
				t.Fatal(err)
			}
			if alice.ID == 0 || !alice.CreatedAt.Equal(stored(base)) || alice.CreatedAt.Location() != time.UTC || alice.CreatedAt != alice.UpdatedAt {
				t.Fatalf("created user = %+v, want an id and times of %v in UTC", alice, base)
			}
		})
		t.Run("CreateUser/ErrConflict", func(t *testing.T) {
			err := s.CreateUser(ctx, &quarry.User{Username: "aLICE", Role: quarry.RoleViewer, PasswordHash: "h"})
			wantCode(t, err, quarry.ECONFLICT)
			if msg := quarry.ErrorMessage(err); msg != "The username aLICE is already taken." {
				t.Errorf("message = %q", msg)
			}
		})
		t.Run("CreateUser/ErrInvalid", func(t *testing.T) {
			for _, u := range []*quarry.User{
				{Username: "", Role: quarry.RoleViewer, PasswordHash: "h"},
				{Username: "bob", Role: "root", PasswordHash: "h"},
				{Username: "bob", Role: quarry.RoleViewer},
			} {
				wantCode(t, s.CreateUser(ctx, u), quarry.EINVALID)
			}
		})
		t.Run("FindUserByID/OK", func(t *testing.T) {
			got, err := s.FindUserByID(ctx, alice.ID)
			if err != nil || !reflect.DeepEqual(got, alice) {
				t.Fatalf("FindUserByID = %+v, %v; want %+v", got, err, alice)
			}
		})
		t.Run("FindUserByID/ErrNotFound", func(t *testing.T) {
			_, err := s.FindUserByID(ctx, alice.ID+100)
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("FindUserByUsername/OK", func(t *testing.T) {
			got, err := s.FindUserByUsername(ctx, "ALICE")
			if err != nil || got.ID != alice.ID {
				t.Fatalf("FindUserByUsername(ALICE) = %+v, %v; want alice", got, err)
			}
		})
		t.Run("FindUserByUsername/ErrNotFound", func(t *testing.T) {
			_, err := s.FindUserByUsername(ctx, "alic")
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("UpdateUser/OK", func(t *testing.T) {
			advance(time.Minute)
			role, hash, disabled := quarry.RoleViewer, "h2", true
			got, err := s.UpdateUser(ctx, alice.ID, quarry.UserUpdate{Role: &role, PasswordHash: &hash, Disabled: &disabled})
			if err != nil {
				t.Fatal(err)
			}
			if got.Role != role || got.PasswordHash != hash || !got.Disabled || !got.UpdatedAt.Equal(stored(base.Add(time.Minute))) || !got.CreatedAt.Equal(stored(base)) {
				t.Fatalf("UpdateUser = %+v", got)
			}
			again, err := s.FindUserByID(ctx, alice.ID)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("after update FindUserByID = %+v, %v; want %+v", again, err, got)
			}
		})
		t.Run("UpdateUser/LoginKeepsUpdatedAt", func(t *testing.T) {
			before, _ := s.FindUserByID(ctx, alice.ID)
			advance(time.Minute)
			login := base.Add(time.Hour + time.Nanosecond)
			got, err := s.UpdateUser(ctx, alice.ID, quarry.UserUpdate{LastLoginAt: &login})
			if err != nil || got.LastLoginAt == nil || !got.LastLoginAt.Equal(stored(login)) || got.UpdatedAt != before.UpdatedAt {
				t.Fatalf("UpdateUser(login) = %+v, %v", got, err)
			}
			again, _ := s.FindUserByID(ctx, alice.ID)
			if !reflect.DeepEqual(again, got) {
				t.Fatalf("after login FindUserByID = %+v, want %+v", again, got)
			}
		})
		t.Run("UpdateUser/ErrNotFound", func(t *testing.T) {
			_, err := s.UpdateUser(ctx, alice.ID+100, quarry.UserUpdate{})
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("UpdateUser/ErrInvalid", func(t *testing.T) {
			role := quarry.Role("root")
			_, err := s.UpdateUser(ctx, alice.ID, quarry.UserUpdate{Role: &role})
			wantCode(t, err, quarry.EINVALID)
			if got, _ := s.FindUserByID(ctx, alice.ID); got.Role != quarry.RoleViewer {
				t.Errorf("role after refused update = %q, want viewer", got.Role)
			}
		})
		t.Run("FindUsers", func(t *testing.T) {
			for _, name := range []string{"carol", "Bob", "dave"} {
				mustCreateUser(t, db, name, quarry.RoleAnalyst)
			}
			bob := "BOB"
			tests := []struct {
				name   string
				filter quarry.UserFilter
				want   []string
				total  int
			}{
				{"All", quarry.UserFilter{}, []string{"Alice", "Bob", "carol", "dave"}, 4},
				{"Page", quarry.UserFilter{Offset: 1, Limit: 2}, []string{"Bob", "carol"}, 4},
				{"PastEnd", quarry.UserFilter{Offset: 10}, nil, 4},
				{"NegativeIsDefault", quarry.UserFilter{Offset: -1, Limit: -1}, []string{"Alice", "Bob", "carol", "dave"}, 4},
				{"Username", quarry.UserFilter{Username: &bob}, []string{"Bob"}, 1},
				{"ID", quarry.UserFilter{ID: &alice.ID}, []string{"Alice"}, 1},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					users, total, err := s.FindUsers(ctx, tt.filter)
					names := pluck(users, func(u *quarry.User) string { return u.Username })
					if err != nil || total != tt.total || !reflect.DeepEqual(names, tt.want) {
						t.Fatalf("FindUsers(%+v) = %v, %d, %v; want %v, %d", tt.filter, names, total, err, tt.want, tt.total)
					}
				})
			}
		})
		t.Run("LoginFailures", func(t *testing.T) {
			for i, f := range []struct {
				user, ip string
			}{{"Eve", "10.0.0.1"}, {"eve", "10.0.0.2"}, {"EVE", "10.0.0.1"}, {"mallory", "10.0.0.1"}} {
				if err := s.RecordLoginFailure(ctx, f.user, f.ip, base.Add(time.Duration(i)*time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			tests := []struct {
				user, ip     string
				since        time.Time
				byUser, byIP int
			}{
				{"eve", "10.0.0.1", base, 3, 3},
				{"Eve", "10.0.0.2", base.Add(time.Minute), 2, 1},
				{"nobody", "10.9.9.9", base, 0, 0},
				{"eve", "10.0.0.1", base.Add(3 * time.Minute), 0, 1},
			}
			for _, tt := range tests {
				byUser, byIP, err := s.CountLoginFailures(ctx, tt.user, tt.ip, tt.since)
				if err != nil || byUser != tt.byUser || byIP != tt.byIP {
					t.Errorf("CountLoginFailures(%s, %s, %v) = %d, %d, %v; want %d, %d", tt.user, tt.ip, tt.since, byUser, byIP, err, tt.byUser, tt.byIP)
				}
			}
			n, err := s.DeleteLoginFailuresBefore(ctx, base.Add(2*time.Minute))
			if err != nil || n != 2 {
				t.Fatalf("DeleteLoginFailuresBefore = %d, %v; want 2", n, err)
			}
			if byUser, byIP, _ := s.CountLoginFailures(ctx, "eve", "10.0.0.1", base); byUser != 1 || byIP != 2 {
				t.Fatalf("after delete counts = %d, %d; want 1, 2", byUser, byIP)
			}
		})
	})
}
