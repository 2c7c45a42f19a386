// Package sqldb implements Quarry's domain services on a SQL database; SQLite (default) and
// PostgreSQL are its two dialects.
//
// Both dialects share one implementation of every service. The differences between them (bind
// parameters, time encoding, error codes, connection setup) live in dialect.go and here.
package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// sqliteDriver opens SQLite connections: the driver registered as "sqlite", on which the
// package-level functions (quarry_match) are registered. sql.Open connects to nothing.
var sqliteDriver = func() driver.Driver {
	db, _ := sql.Open("sqlite", "")
	defer db.Close()
	return db.Driver()
}()

// Dialect names, as returned by (*DB).Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

//go:embed migrations/*/*.sql
var migrations embed.FS

// sqliteBusyTimeout is how long a SQLite connection waits for another writer before it fails
// with SQLITE_BUSY. Writes are short, so waiting this long means something is stuck.
const sqliteBusyTimeout = 10 * time.Second

// DB is a connection pool to Quarry's database, in one of the two dialects.
type DB struct {
	// Now returns the current time; it stamps created and updated times. Tests replace it.
	Now func() time.Time

	sql     *sql.DB
	pool    *pgxpool.Pool // PostgreSQL only
	dialect string
	schema  string // PostgreSQL only: the schema the connection's search_path resolves to
	display string // the DSN without secrets, for error messages
	// writers queues this process's SQLite write transactions (a semaphore of one, served in
	// order). SQLite's own busy handler polls with growing sleeps, so under a steady writer
	// (processing inserting events) other writers could wait past the busy timeout and fail;
	// a queue makes each wait its turn. nil on PostgreSQL.
	writers chan struct{}

	// SQLite only: the search file (search.go).
	search     *sql.DB       // its own pool, which the indexer writes through
	searchMu   sync.Mutex    // one writer of the search file at a time
	searchKick chan struct{} // InsertEvents tells the indexer there is more to do
	searchTemp string        // a temporary search file to remove on Close (in-memory databases)
}

// Open opens the database named by dsn without migrating it. A postgres:// or postgresql://
// URL opens PostgreSQL; anything else is a SQLite file path, optionally prefixed by sqlite://
// or file:.
func Open(ctx context.Context, dsn string) (*DB, error) {
	db := &DB{Now: time.Now, display: redactDSN(dsn)}
	var err error
	if isPostgresDSN(dsn) {
		err = db.openPostgres(ctx, dsn)
	} else {
		err = db.openSQLite(ctx, dsn)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", db.display, err)
	}
	return db, nil
}

// OpenAndMigrate opens the database named by dsn and brings its schema up to date.
func OpenAndMigrate(ctx context.Context, dsn string) (*DB, error) {
	db, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func isPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func (db *DB) openPostgres(ctx context.Context, dsn string) error {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return err
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgx's default (the CPU count, at least 4) is tight once River holds a listening
		// connection and several of its services poll next to the HTTP handlers.
		cfg.MaxConns = max(cfg.MaxConns, 16)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	db.dialect, db.pool, db.sql = DialectPostgres, pool, stdlib.OpenDBFromPool(pool)
	var schema sql.NullString
	if err := db.sql.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		db.Close()
		return err
	} else if !schema.Valid {
		db.Close()
		return errors.New("no schema of the search_path exists")
	}
	db.schema = schema.String
	return nil
}

func (db *DB) openSQLite(ctx context.Context, dsn string) error {
	path, query, _ := strings.Cut(dsn, "?")
	path = strings.TrimPrefix(path, "sqlite://")
	path = strings.TrimPrefix(path, "file:")
	if path == "" {
		return errors.New("empty SQLite path")
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return err
	}
	// Immediate write transactions take the write lock at BEGIN, so a busy writer makes others
	// wait (busy_timeout) instead of failing when a read lock cannot be upgraded. Read-only
	// transactions stay deferred.
	params.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	params.Add("_pragma", "foreign_keys(1)")
	params.Add("_pragma", "journal_mode(WAL)")
	params.Add("_pragma", "synchronous(NORMAL)")
	params.Set("_txlock", "immediate")
	// The full-text index lives in a file of its own (search.go). It is opened first: every
	// connection of the main pool attaches it.
	searchPath := path + "-search"
	if path == ":memory:" {
		f, err := os.CreateTemp("", "quarry-search-*.db")
		if err != nil {
			return err
		}
		f.Close()
		searchPath, db.searchTemp = f.Name(), f.Name()
	}
	if err := db.openSearch(ctx, searchPath, params); err != nil {
		db.Close()
		return err
	}
	mainURI, err := sqliteURI(path)
	if err != nil {
		db.Close()
		return err
	}
	searchURI, err := sqliteURI(searchPath)
	if err != nil {
		db.Close()
		return err
	}
	// Read-only, so that BEGIN IMMEDIATE, which locks every writable database a connection has
	// attached, leaves the search file's lock to the indexer.
	sqlDB := sql.OpenDB(&attachConnector{dsn: mainURI + "?" + params.Encode(), attach: searchURI + "?mode=ro", as: "search"})
	// Writers queue on SQLite's single write lock anyway; the cap bounds open files and
	// page caches under load. An in-memory database exists once per connection, so it gets one.
	sqlDB.SetMaxOpenConns(16)
	sqlDB.SetMaxIdleConns(4)
	if path == ":memory:" {
		sqlDB.SetMaxOpenConns(1)
	}
	db.dialect, db.sql, db.writers = DialectSQLite, sqlDB, make(chan struct{}, 1)
	if err := sqlDB.PingContext(ctx); err != nil {
		db.Close()
		return err
	}
	return nil
}

// sqliteURI makes a file path a SQLite URI ("file:" and the escaped absolute path), so that
// SQLite's own parameters (mode=ro) apply and a path with '?' or '#' stays a path.
func sqliteURI(path string) (string, error) {
	if path == ":memory:" {
		return "file::memory:", nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String(), nil
}

// attachConnector opens SQLite connections that attach a second database file.
type attachConnector struct{ dsn, attach, as string }

func (c *attachConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Driver().Open(c.dsn)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("the SQLite driver cannot run statements")
	}
	if _, err := ex.ExecContext(ctx, "ATTACH DATABASE ? AS "+c.as, []driver.NamedValue{{Ordinal: 1, Value: c.attach}}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("attach %s: %w", c.as, err)
	}
	return conn, nil
}

func (c *attachConnector) Driver() driver.Driver { return sqliteDriver }

// redactDSN returns dsn fit for error messages and logs: a URL keeps scheme, user, host and
// path; its password and query (which may also carry one) are dropped.
func redactDSN(dsn string) string {
	if !isPostgresDSN(dsn) {
		path, _, _ := strings.Cut(dsn, "?")
		return path
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// Close closes the database. It is safe to call more than once.
func (db *DB) Close() error {
	var err error
	if db.sql != nil {
		err = db.sql.Close()
	}
	if db.pool != nil {
		db.pool.Close()
	}
	if db.search != nil {
		err = errors.Join(err, db.search.Close())
	}
	if db.searchTemp != "" {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(db.searchTemp + suffix)
		}
	}
	return err
}

// Dialect returns DialectSQLite or DialectPostgres.
func (db *DB) Dialect() string { return db.dialect }

// SQL returns the underlying pool, for River and for tests.
func (db *DB) SQL() *sql.DB { return db.sql }

// PgxPool returns the pgx pool on PostgreSQL (River's pgx driver needs it), nil on SQLite.
func (db *DB) PgxPool() *pgxpool.Pool { return db.pool }

// Schema returns the PostgreSQL schema that unqualified names resolve to (the first of the
// connection's search_path), or "" on SQLite.
func (db *DB) Schema() string { return db.schema }

// String names the database without secrets.
func (db *DB) String() string { return db.display }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.sql.PingContext(ctx); err != nil {
		return fmt.Errorf("ping database %s: %w", db.display, err)
	}
	return nil
}

// Migrate applies the embedded migrations that the database has not seen yet.
func (db *DB) Migrate(ctx context.Context) error {
	if err := db.migrate(ctx); err != nil {
		return fmt.Errorf("migrate database %s: %w", db.display, err)
	}
	if err := db.checkSearch(ctx); err != nil {
		return fmt.Errorf("database %s: %w", db.display, err)
	}
	return nil
}

func (db *DB) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations/"+db.dialect)
	if err != nil {
		return err
	}
	dialect := goose.DialectSQLite3
	if db.dialect == DialectPostgres {
		dialect = goose.DialectPostgres
	}
	p, err := goose.NewProvider(dialect, db.sql, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	// The whole run is under the lock, not only goose's session-locked part: goose creates its
	// version table before it locks, and a server losing that race waits a second and retries.
	return db.WithLock(ctx, "quarry.migrate", func() error {
		_, err := p.Up(ctx)
		return err
	})
}

// WithLock runs fn while holding a lock on the database named purpose, so that processes
// sharing the database (several servers starting at once) do it one at a time. On PostgreSQL it
// is a session advisory lock, per schema; on SQLite, whose database one server owns, fn just runs.
func (db *DB) WithLock(ctx context.Context, purpose string, fn func() error) error {
	if db.dialect != DialectPostgres {
		return fn()
	}
	h := fnv.New64a()
	h.Write([]byte(purpose + "\x00" + db.schema))
	id := int64(h.Sum64() >> 1)
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("lock %s: %w", purpose, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", id); err != nil {
		return fmt.Errorf("lock %s: %w", purpose, err)
	}
	// Unlock even when ctx has ended, or the pooled connection would keep the lock.
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", id)
	return fn()
}

// now returns the current time as stored: UTC, at the microsecond precision both dialects keep.
func (db *DB) now() time.Time { return storedTime(db.Now()) }
