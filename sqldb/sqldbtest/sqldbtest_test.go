package sqldbtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestDialects(t *testing.T) {
	t.Parallel()
	var ran []string
	var schema string
	t.Run("Run", func(t *testing.T) {
		sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
			ran = append(ran, db.Dialect())
			if db.Dialect() == sqldb.DialectPostgres {
				schema = db.Schema()
			}
			if _, err := db.SQL().Exec("INSERT INTO experiments (name, enabled, updated_at, updated_by) VALUES ('x', TRUE, '2026-01-01T00:00:00.000000Z', 'me')"); err != nil {
				t.Fatalf("the database is not migrated: %v", err)
			}
		})
	})
	if strings.Join(ran, ",") != "sqlite,postgres" {
		t.Fatalf("Dialects ran %v, want sqlite and postgres", ran)
	}
	// The schema is gone once its test is over.
	db := sqldbtest.Open(t, sqldb.DialectPostgres)
	var n int
	if err := db.SQL().QueryRowContext(context.Background(), "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil || n != 0 {
		t.Fatalf("schema %s: %d left, %v; want it dropped", schema, n, err)
	}
}

// TestUnreachablePostgres runs this test binary again against a closed port: the postgres
// case is skipped, or fails when CI=true.
func TestUnreachablePostgres(t *testing.T) {
	t.Parallel()
	if os.Getenv("SQLDBTEST_CHILD") == "1" {
		sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {})
		return
	}
	for _, tt := range []struct {
		ci       string
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP: TestUnreachablePostgres/postgres"},
		{"true", true, "--- FAIL: TestUnreachablePostgres/postgres"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUnreachablePostgres$", "-test.v")
		cmd.Env = append(os.Environ(), "SQLDBTEST_CHILD=1", "CI="+tt.ci,
			"QUARRY_TEST_POSTGRES=postgres://postgres@127.0.0.1:1/test?sslmode=disable")
		out, err := cmd.CombinedOutput()
		if (err != nil) != tt.wantFail || !strings.Contains(string(out), tt.want) ||
			!strings.Contains(string(out), "--- PASS: TestUnreachablePostgres/sqlite") || !strings.Contains(string(out), "unreachable") {
			t.Errorf("CI=%q: err %v, output:\n%s\nwant %q and a passing sqlite case", tt.ci, err, out, tt.want)
		}
	}
}
