package sqldb_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestProjectService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		advance := setClock(db)
		s := sqldb.NewProjectService(db)
		alice := mustCreateUser(t, db, "alice", quarry.RoleAnalyst)
		actx := quarry.NewContextWithActor(ctx, &quarry.Actor{User: alice, Role: alice.Role})

		create := func(ctx context.Context, name string) *quarry.Project {
			t.Helper()
			p := &quarry.Project{Name: name, Description: "about " + name}
			if err := s.CreateProject(ctx, p); err != nil {
				t.Fatalf("CreateProject(%q): %v", name, err)
			}
			advance(time.Second)
			return p
		}

		first := create(actx, "  Été 2026 ")
		t.Run("CreateProject/OK", func(t *testing.T) {
			if first.ID == 0 || first.Name != "Été 2026" || first.CreatedBy != alice.ID || !first.CreatedAt.Equal(stored(base)) || first.UpdatedAt != first.CreatedAt {
				t.Fatalf("created project = %+v", first)
			}
		})
		t.Run("CreateProject/BySystem", func(t *testing.T) {
			p := create(ctx, "system project")
			got, err := s.FindProjectByID(ctx, p.ID)
			if err != nil || got.CreatedBy != 0 {
				t.Fatalf("FindProjectByID = %+v, %v; want CreatedBy 0", got, err)
			}
		})
		t.Run("CreateProject/ErrConflict", func(t *testing.T) {
			err := s.CreateProject(actx, &quarry.Project{Name: "ÉTÉ 2026"})
			wantCode(t, err, quarry.ECONFLICT)
			if msg := quarry.ErrorMessage(err); msg != "A project named ÉTÉ 2026 already exists." {
				t.Errorf("message = %q", msg)
			}
		})
		t.Run("CreateProject/ErrInvalid", func(t *testing.T) {
			for _, p := range []*quarry.Project{
				{Name: "   "},
				{Name: strings.Repeat("x", 201)},
				{Name: "bad creator", CreatedBy: alice.ID + 100},
			} {
				wantCode(t, s.CreateProject(ctx, p), quarry.EINVALID)
			}
		})
		t.Run("FindProjectByID/OK", func(t *testing.T) {
			got, err := s.FindProjectByID(ctx, first.ID)
			if err != nil || !reflect.DeepEqual(got, first) {
				t.Fatalf("FindProjectByID = %+v, %v; want %+v", got, err, first)
			}
		})
		t.Run("FindProjectByID/ErrNotFound", func(t *testing.T) {
			_, err := s.FindProjectByID(ctx, first.ID+100)
			wantCode(t, err, quarry.ENOTFOUND)
		})
		t.Run("FindProjects", func(t *testing.T) {
			create(actx, "100% done")
			create(actx, "1000 hosts")
			name := func(s string) *string { return &s }
			tests := []struct {
				name   string
				filter quarry.ProjectFilter
				want   []string
				total  int
			}{
				{"All", quarry.ProjectFilter{}, []string{"1000 hosts", "100% done", "system project", "Été 2026"}, 4},
				{"Page", quarry.ProjectFilter{Offset: 3, Limit: 10}, []string{"Été 2026"}, 4},
				{"ID", quarry.ProjectFilter{ID: &first.ID}, []string{"Été 2026"}, 1},
				{"NameFoldsCase", quarry.ProjectFilter{Name: name("éTÉ")}, []string{"Été 2026"}, 1},
				{"NamePercentIsLiteral", quarry.ProjectFilter{Name: name("0%")}, []string{"100% done"}, 1},
				{"NameNoMatch", quarry.ProjectFilter{Name: name("zzz")}, nil, 0},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					projects, total, err := s.FindProjects(ctx, tt.filter)
					names := pluck(projects, func(p *quarry.Project) string { return p.Name })
					if err != nil || total != tt.total || !reflect.DeepEqual(names, tt.want) {
						t.Fatalf("FindProjects(%+v) = %q, %d, %v; want %q, %d", tt.filter, names, total, err, tt.want, tt.total)
					}
				})
			}
		})
		t.Run("FindProjects/LimitCapped", func(t *testing.T) {
			// One statement that both dialects understand, to keep the test fast.
			_, err := db.SQL().ExecContext(ctx, fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
				INSERT INTO projects (name, name_key, description, created_at, updated_at)
				SELECT 'bulk ' || i, 'bulk ' || i, '', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z' FROM n`, sqldb.MaxLimit+1-4))
			if err != nil {
				t.Fatal(err)
			}
			projects, total, err := s.FindProjects(ctx, quarry.ProjectFilter{Limit: 1 << 30})
			if err != nil || total != sqldb.MaxLimit+1 || len(projects) != sqldb.MaxLimit {
				t.Fatalf("FindProjects(huge limit) = %d projects, total %d, %v; want %d of %d", len(projects), total, err, sqldb.MaxLimit, sqldb.MaxLimit+1)
			}
		})
	})
}
