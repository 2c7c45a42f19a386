package sqldb_test

import (
	"context"
	"testing"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestIOCService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := sqldb.NewIOCService(db)
		p := mustCreateProject(t, db, "case")
		other := mustCreateProject(t, db, "other")
		l := &quarry.IOCList{ProjectID: p.ID, Name: " C2 servers ", Indicators: "# from the report\nip:203.0.113.7\tbeacon\ndomain:evil.example\n\n"}
		if err := s.CreateIOCList(ctx, l); err != nil {
			t.Fatal(err)
		}
		if l.ID == 0 || l.Name != "C2 servers" || l.Level != "high" || l.Count != 2 || l.CreatedAt.IsZero() {
			t.Errorf("created = %+v", l)
		}
		dup := &quarry.IOCList{ProjectID: p.ID, Name: "c2 SERVERS"}
		if err := s.CreateIOCList(ctx, dup); quarry.ErrorCode(err) != quarry.ECONFLICT {
			t.Errorf("same name = %v, want ECONFLICT", err)
		}
		if err := s.CreateIOCList(ctx, &quarry.IOCList{ProjectID: other.ID, Name: "C2 servers"}); err != nil {
			t.Errorf("same name in another project: %v", err)
		}
		if err := s.CreateIOCList(ctx, &quarry.IOCList{ProjectID: p.ID, Name: "x", Level: "severe"}); quarry.ErrorCode(err) != quarry.EINVALID {
			t.Errorf("bad level = %v, want EINVALID", err)
		}
		if err := s.CreateIOCList(ctx, &quarry.IOCList{ProjectID: 999999, Name: "x"}); quarry.ErrorCode(err) != quarry.EINVALID {
			t.Errorf("no project = %v, want EINVALID", err)
		}
		lists, err := s.FindIOCLists(ctx, p.ID, true)
		if err != nil || len(lists) != 1 || lists[0].Indicators != "" || lists[0].Count != 2 {
			t.Fatalf("brief lists = %+v, %v", lists, err)
		}
		got, err := s.FindIOCListByID(ctx, l.ID)
		if err != nil || got.Indicators != l.Indicators || !got.CreatedAt.Equal(l.CreatedAt) {
			t.Fatalf("find = %+v, %v", got, err)
		}
		upd := &quarry.IOCList{ID: l.ID, Name: "C2", Level: "critical", Indicators: "sha256:" + sha('a')}
		if err := s.UpdateIOCList(ctx, upd); err != nil {
			t.Fatal(err)
		}
		if upd.ProjectID != p.ID || upd.Count != 1 || !upd.CreatedAt.Equal(l.CreatedAt) {
			t.Errorf("updated = %+v", upd)
		}
		if err := s.UpdateIOCList(ctx, &quarry.IOCList{ID: 999999, Name: "x"}); quarry.ErrorCode(err) != quarry.ENOTFOUND {
			t.Errorf("update missing = %v, want ENOTFOUND", err)
		}
		if err := s.DeleteIOCList(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FindIOCListByID(ctx, l.ID); quarry.ErrorCode(err) != quarry.ENOTFOUND {
			t.Errorf("find deleted = %v, want ENOTFOUND", err)
		}
		if err := s.DeleteIOCList(ctx, l.ID); quarry.ErrorCode(err) != quarry.ENOTFOUND {
			t.Errorf("delete again = %v, want ENOTFOUND", err)
		}
	})
}

func sha(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}
