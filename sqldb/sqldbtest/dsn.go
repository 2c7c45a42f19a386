package sqldbtest

import (
	"testing"

	"github.com/quarry-dfir/quarry/sqldb"
)

// DSN returns a database name for a fresh, empty database of dialect, for tests that start the
// whole program from its configuration: a file in t.TempDir() for SQLite, a new schema
// (dropped when the test ends) for PostgreSQL.
func DSN(t testing.TB, dialect string) string {
	t.Helper()
	if dialect == sqldb.DialectPostgres {
		return postgresSchema(t)
	}
	return t.TempDir() + "/quarry.db"
}
