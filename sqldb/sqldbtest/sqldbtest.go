// Package sqldbtest opens fresh, migrated Quarry databases for tests, on SQLite and on
// PostgreSQL, so that every store-backed test runs on both dialects.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/quarry-dfir/quarry/sqldb"
)

// DefaultPostgres is the PostgreSQL database used when QUARRY_TEST_POSTGRES is not set.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Dialects runs fn as the subtests "sqlite" and "postgres", each on a fresh migrated database.
func Dialects(t *testing.T, fn func(t *testing.T, db *sqldb.DB)) {
	t.Helper()
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		t.Run(dialect, func(t *testing.T) {
			fn(t, Open(t, dialect))
		})
	}
}

// Open returns a fresh migrated database of dialect, closed (and on PostgreSQL dropped) when
// the test ends. SQLite lives in t.TempDir(); PostgreSQL gets a new schema in the database
// named by QUARRY_TEST_POSTGRES. When PostgreSQL is unreachable the test is skipped, or fails
// if CI=true.
func Open(t testing.TB, dialect string) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	var dsn string
	switch dialect {
	case sqldb.DialectSQLite:
		dsn = t.TempDir() + "/quarry.db"
	case sqldb.DialectPostgres:
		dsn = postgresSchema(t)
	default:
		t.Fatalf("sqldbtest.Open: unknown dialect %q", dialect)
	}
	db, err := sqldb.OpenAndMigrate(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresURL returns the PostgreSQL URL tests use.
func PostgresURL() string {
	if u := os.Getenv("QUARRY_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultPostgres
}

var admin struct {
	once sync.Once
	pool *pgxpool.Pool
	err  error
}

// adminPool connects once per test binary; the pool creates and drops the test schemas.
func adminPool() (*pgxpool.Pool, error) {
	admin.once.Do(func() {
		cfg, err := pgxpool.ParseConfig(PostgresURL())
		if err != nil {
			admin.err = err
			return
		}
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
		cfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err == nil {
			err = pool.Ping(context.Background())
		}
		admin.pool, admin.err = pool, err
	})
	return admin.pool, admin.err
}

// postgresSchema creates an empty schema with a random name, drops it when the test ends, and
// returns a URL whose connections use it through search_path. Like Open, it skips the test
// (or fails it if CI=true) when PostgreSQL is unreachable.
func postgresSchema(t testing.TB) string {
	t.Helper()
	pool, err := adminPool()
	if err != nil {
		msg := "PostgreSQL at " + redacted(PostgresURL()) + " (QUARRY_TEST_POSTGRES) is unreachable: " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; skipping the postgres case (set CI=true to fail instead)")
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "quarry_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	// Registered before Open's Close, so it runs after it: cleanups run last-in first-out.
	t.Cleanup(func() {
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(PostgresURL())
	if err != nil {
		t.Fatalf("QUARRY_TEST_POSTGRES: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func redacted(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
