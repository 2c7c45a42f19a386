package sqldb_test

import (
	"context"
	"testing"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestExperimentService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		setClock(db)
		s := sqldb.NewExperimentService(db)
		name := quarry.ExperimentDefenderXDR
		def, _ := quarry.FindExperimentDef(name)

		t.Run("FindExperiments/Defaults", func(t *testing.T) {
			got, err := s.FindExperiments(ctx)
			if err != nil || len(got) != len(quarry.Experiments) {
				t.Fatalf("FindExperiments = %v, %v; want %d experiments", got, err, len(quarry.Experiments))
			}
			for i, e := range got {
				if *e != quarry.Experiments[i] {
					t.Errorf("experiment %d = %+v, want the default %+v", i, e, quarry.Experiments[i])
				}
			}
		})
		t.Run("SetExperiment/OK", func(t *testing.T) {
			alice := mustCreateUser(t, db, "alice", quarry.RoleAdmin)
			actx := quarry.NewContextWithActor(ctx, &quarry.Actor{User: alice, Role: alice.Role})
			for _, enabled := range []bool{!def.Enabled, def.Enabled, !def.Enabled} {
				got, err := s.SetExperiment(actx, name, enabled)
				if err != nil || got.Enabled != enabled || got.UpdatedBy != "alice" || got.UpdatedAt == nil || !got.UpdatedAt.Equal(stored(base)) || got.Title != def.Title {
					t.Fatalf("SetExperiment(%v) = %+v, %v", enabled, got, err)
				}
			}
			got, err := s.FindExperiment(ctx, name)
			if err != nil || got.Enabled == def.Enabled || got.UpdatedBy != "alice" {
				t.Fatalf("FindExperiment = %+v, %v; want the stored state", got, err)
			}
			all, err := s.FindExperiments(ctx)
			if err != nil || all[0].Enabled == def.Enabled {
				t.Fatalf("FindExperiments = %+v, %v; want the stored state", all[0], err)
			}
		})
		t.Run("SetExperiment/BySystem", func(t *testing.T) {
			got, err := s.SetExperiment(ctx, name, true)
			if err != nil || got.UpdatedBy != "system" {
				t.Fatalf("SetExperiment = %+v, %v; want updated by system", got, err)
			}
		})
		t.Run("SetExperiment/ErrNotFound", func(t *testing.T) {
			_, err := s.SetExperiment(ctx, "no_such_thing", true)
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("FindExperiment/ErrNotFound", func(t *testing.T) {
			_, err := s.FindExperiment(ctx, "no_such_thing")
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("StoredUnknownIsIgnored", func(t *testing.T) {
			// A row left behind by an experiment since removed from the code.
			if _, err := db.SQL().ExecContext(ctx, "INSERT INTO experiments (name, enabled, updated_at, updated_by) VALUES ('gone', TRUE, '2026-01-01T00:00:00.000000Z', 'x')"); err != nil {
				t.Fatal(err)
			}
			all, err := s.FindExperiments(ctx)
			if err != nil || len(all) != len(quarry.Experiments) {
				t.Fatalf("FindExperiments = %d experiments, %v; want %d", len(all), err, len(quarry.Experiments))
			}
		})
	})
}
