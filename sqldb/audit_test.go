package sqldb_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestAuditService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		advance := setClock(db)
		s := sqldb.NewAuditService(db)
		alice := mustCreateUser(t, db, "alice", quarry.RoleAdmin)
		actx := quarry.NewContextWithActor(ctx, &quarry.Actor{User: alice, Role: alice.Role, IP: "10.0.0.7"})

		record := func(e *quarry.AuditEntry) *quarry.AuditEntry {
			t.Helper()
			if err := s.RecordAudit(ctx, e); err != nil {
				t.Fatalf("RecordAudit(%s): %v", e.Action, err)
			}
			advance(time.Minute)
			return e
		}

		created := record(quarry.NewAuditEntry(actx, "project.create", "project", "1"))
		created.Details = nil
		t.Run("RecordAudit/OK", func(t *testing.T) {
			e := record(&quarry.AuditEntry{Action: "user.login", Details: map[string]any{"method": "password", "n": 2.0, "nested": map[string]any{"ok": true}}})
			if e.ID == 0 || e.Actor != "system" || e.Outcome != quarry.OutcomeSuccess || !e.At.Equal(stored(base.Add(time.Minute))) {
				t.Fatalf("recorded entry = %+v", e)
			}
			got, _, err := s.FindAuditEntries(ctx, quarry.AuditFilter{Action: "user.login"})
			if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], e) {
				t.Fatalf("FindAuditEntries = %+v, %v; want [%+v]", got, err, e)
			}
		})
		t.Run("RecordAudit/FromActor", func(t *testing.T) {
			got, _, err := s.FindAuditEntries(ctx, quarry.AuditFilter{Action: "project.create"})
			if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], created) || *got[0].ActorID != alice.ID || got[0].IP != "10.0.0.7" {
				t.Fatalf("FindAuditEntries = %+v, %v; want [%+v]", got, err, created)
			}
		})
		t.Run("RecordAudit/ErrInvalid", func(t *testing.T) {
			wantCode(t, s.RecordAudit(ctx, &quarry.AuditEntry{}), quarry.EINVALID)
		})
		t.Run("FindAuditEntries", func(t *testing.T) {
			record(&quarry.AuditEntry{Action: "user.create", Actor: "alice", TargetType: "user", TargetID: "2", Outcome: quarry.OutcomeFailure})
			record(&quarry.AuditEntry{Action: "username.weird", Actor: "bob"})
			record(&quarry.AuditEntry{Action: "user_x.thing", Actor: "bob"}) // "_" must not match "." as a LIKE wildcard would
			from, to := base.Add(time.Minute), base.Add(3*time.Minute)
			tests := []struct {
				name   string
				filter quarry.AuditFilter
				want   []string
				total  int
			}{
				{"All", quarry.AuditFilter{}, []string{"user_x.thing", "username.weird", "user.create", "user.login", "project.create"}, 5},
				{"Page", quarry.AuditFilter{Offset: 1, Limit: 2}, []string{"username.weird", "user.create"}, 5},
				{"ActionPrefix", quarry.AuditFilter{Action: "user."}, []string{"user.create", "user.login"}, 2},
				{"ActionExact", quarry.AuditFilter{Action: "user"}, nil, 0},
				{"Actor", quarry.AuditFilter{Actor: "bob"}, []string{"user_x.thing", "username.weird"}, 2},
				{"Target", quarry.AuditFilter{TargetType: "user", TargetID: "2"}, []string{"user.create"}, 1},
				{"TimeRange", quarry.AuditFilter{From: &from, To: &to}, []string{"user.create", "user.login"}, 2},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					entries, total, err := s.FindAuditEntries(ctx, tt.filter)
					actions := pluck(entries, func(e *quarry.AuditEntry) string { return e.Action })
					if err != nil || total != tt.total || !reflect.DeepEqual(actions, tt.want) {
						t.Fatalf("FindAuditEntries(%+v) = %v, %d, %v; want %v, %d", tt.filter, actions, total, err, tt.want, tt.total)
					}
				})
			}
		})
		t.Run("AppendOnly", func(t *testing.T) {
			stmts := []string{"UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"}
			if db.Dialect() == sqldb.DialectPostgres {
				stmts = append(stmts, "TRUNCATE audit_log")
			}
			for _, stmt := range stmts {
				_, err := db.SQL().ExecContext(ctx, stmt)
				if err == nil || !strings.Contains(err.Error(), "append-only") {
					t.Errorf("%s: err = %v, want the append-only trigger to refuse it", stmt, err)
				}
			}
			entries, total, err := s.FindAuditEntries(ctx, quarry.AuditFilter{})
			if err != nil || total != 5 || entries[len(entries)-1].Actor != "alice" {
				t.Fatalf("after refused changes: %d entries, %v", total, err)
			}
		})
	})
}
