package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// base is the tests' clock reading: not UTC and with nanoseconds, so that the tests see the
// store normalise times to UTC microseconds.
var base = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))

// stored is t as the store returns it.
func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// setClock makes db's clock read base plus whatever the returned function adds.
func setClock(db *sqldb.DB) (advance func(time.Duration)) {
	var mu sync.Mutex
	now := base
	db.Now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	return func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
	}
}

// wantCode fails the test unless err carries code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := quarry.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (err %v), want %q", got, err, code)
	}
}

// pluck returns one field of each item, for comparing lists in a readable way.
func pluck[T any](items []T, field func(T) string) []string {
	var out []string
	for _, it := range items {
		out = append(out, field(it))
	}
	return out
}

func mustCreateUser(t *testing.T, db *sqldb.DB, username string, role quarry.Role) *quarry.User {
	t.Helper()
	u := &quarry.User{Username: username, Role: role, PasswordHash: "hash-" + username}
	if err := sqldb.NewUserService(db).CreateUser(context.Background(), u); err != nil {
		t.Fatalf("CreateUser(%s): %v", username, err)
	}
	return u
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("SQLitePrefixes", func(t *testing.T) {
		dir := t.TempDir()
		for _, dsn := range []string{
			filepath.Join(dir, "plain.db"),
			"sqlite://" + filepath.Join(dir, "prefixed.db"),
			"file:" + filepath.Join(dir, "file.db") + "?cache=private",
		} {
			db, err := sqldb.OpenAndMigrate(ctx, dsn)
			if err != nil {
				t.Fatalf("OpenAndMigrate(%q): %v", dsn, err)
			}
			if db.Dialect() != sqldb.DialectSQLite || db.PgxPool() != nil || db.Schema() != "" {
				t.Errorf("OpenAndMigrate(%q): dialect %q, pool %v, schema %q; want sqlite, nil, empty", dsn, db.Dialect(), db.PgxPool(), db.Schema())
			}
			var mode string
			var fk int
			if err := db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("%q: journal_mode = %q, %v; want wal", dsn, mode, err)
			}
			if err := db.SQL().QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
				t.Errorf("%q: foreign_keys = %d, %v; want 1", dsn, fk, err)
			}
			if err := db.Ping(ctx); err != nil {
				t.Errorf("Ping: %v", err)
			}
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})

	t.Run("ErrSQLiteMissingDir", func(t *testing.T) {
		dsn := filepath.Join(t.TempDir(), "missing", "quarry.db")
		_, err := sqldb.Open(ctx, dsn)
		if err == nil || !strings.HasPrefix(err.Error(), "open database "+dsn+": ") {
			t.Fatalf("Open(%q) = %v, want an error naming the path", dsn, err)
		}
	})

	t.Run("ErrPostgresUnreachableRedacted", func(t *testing.T) {
		// Port 1 on loopback: nothing listens, so the connection is refused at once.
		_, err := sqldb.Open(ctx, "postgres://quarry:s3cret@127.0.0.1:1/db?sslmode=disable&password=s3cret")
		if err == nil {
			t.Fatal("Open succeeded on a closed port")
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "open database postgres://quarry@127.0.0.1:1/db: ") || strings.Contains(msg, "s3cret") {
			t.Fatalf("Open error = %q, want it to name the database without the password", msg)
		}
	})

	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		t.Run("MigrateTwice", func(t *testing.T) {
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("second Migrate: %v", err)
			}
		})
		t.Run("Schema", func(t *testing.T) {
			if db.Dialect() == sqldb.DialectPostgres {
				if db.PgxPool() == nil || !strings.HasPrefix(db.Schema(), "quarry_test_") {
					t.Fatalf("pool %v, schema %q; want a pool and the test schema", db.PgxPool(), db.Schema())
				}
			}
			for _, table := range []string{"users", "sessions", "api_tokens", "login_failures", "audit_log", "projects", "experiments"} {
				var n int
				if err := db.SQL().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
					t.Errorf("table %s: %v", table, err)
				}
			}
		})
	})
}

// TestConcurrentWriters checks that writers racing each other wait for one another rather
// than fail (SQLITE_BUSY on SQLite, which a transaction that reads before it writes gets
// unless it takes the write lock at BEGIN).
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		projects, audit, users := sqldb.NewProjectService(db), sqldb.NewAuditService(db), sqldb.NewUserService(db)
		user := mustCreateUser(t, db, "alice", quarry.RoleAdmin)
		const writers, each = 8, 15
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					if err := projects.CreateProject(ctx, &quarry.Project{Name: fmt.Sprintf("p-%d-%d", w, i)}); err != nil {
						errs <- err
					}
					if err := audit.RecordAudit(ctx, &quarry.AuditEntry{Action: "project.create"}); err != nil {
						errs <- err
					}
					if _, _, err := projects.FindProjects(ctx, quarry.ProjectFilter{Limit: 5}); err != nil {
						errs <- err
					}
					now := time.Now()
					if _, err := users.UpdateUser(ctx, user.ID, quarry.UserUpdate{LastLoginAt: &now}); err != nil { // reads, then writes
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if _, n, err := projects.FindProjects(ctx, quarry.ProjectFilter{}); err != nil || n != writers*each {
			t.Fatalf("FindProjects total = %d, %v; want %d", n, err, writers*each)
		}
	})
}

func TestErrorTranslation(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		t.Run("ForeignKey", func(t *testing.T) {
			err := sqldb.NewSessionService(db).CreateSession(ctx, &quarry.Session{TokenHash: "h", UserID: 999, ExpiresAt: base})
			wantCode(t, err, quarry.EINVALID)
		})
		t.Run("OtherErrorsAreInternal", func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := sqldb.NewUserService(db).FindUserByID(cctx, 1)
			wantCode(t, err, quarry.EINTERNAL)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want it to wrap context.Canceled", err)
			}
		})
	})
}

// TestHostileText checks that text PostgreSQL cannot store is refused as invalid on both
// dialects, not failed as an internal error on one and stored on the other.
func TestHostileText(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		for _, text := range []string{"nul\x00byte", "bad \xff utf-8"} {
			wantCode(t, sqldb.NewProjectService(db).CreateProject(ctx, &quarry.Project{Name: text}), quarry.EINVALID)
			_, err := sqldb.NewTokenService(db).FindTokenByHash(ctx, text)
			wantCode(t, err, quarry.EINVALID)
		}
		// Details are JSON, which escapes what the column could not hold.
		audit := sqldb.NewAuditService(db)
		e := &quarry.AuditEntry{Action: "x.y", Details: map[string]any{"v": "nul\x00byte"}}
		if err := audit.RecordAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, _, err := audit.FindAuditEntries(ctx, quarry.AuditFilter{})
		if err != nil || len(got) != 1 || got[0].Details["v"] != "nul\x00byte" {
			t.Fatalf("FindAuditEntries = %+v, %v; want the details back", got, err)
		}
	})
}

// TestConcurrentMigrate starts several servers at once on one empty PostgreSQL schema: one
// migrates, the others wait and find nothing left to do.
func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	dsn := sqldbtest.DSN(t, sqldb.DialectPostgres)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			db, err := sqldb.OpenAndMigrate(context.Background(), dsn)
			if err == nil {
				db.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestWithLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := sqldbtest.DSN(t, sqldb.DialectPostgres)
	var dbs [2]*sqldb.DB
	for i := range dbs {
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	holding, release, aDone := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		aDone <- dbs[0].WithLock(ctx, "test", func() error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding

	if err := dbs[1].WithLock(ctx, "other purpose", func() error { return nil }); err != nil {
		t.Fatalf("WithLock on another purpose: %v", err)
	}
	var entered atomic.Bool
	bDone := make(chan error, 1)
	go func() { bDone <- dbs[1].WithLock(ctx, "test", func() error { entered.Store(true); return nil }) }()
	// Wait until some session waits for an advisory lock (ours, unless another test's is too).
	for {
		var waiting int
		err := dbs[0].SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'").Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 || entered.Load() {
			break
		}
		select {
		case err := <-bDone:
			t.Fatalf("second WithLock returned %v while the lock was held", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if entered.Load() {
		t.Fatal("a second holder entered while the lock was held")
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil || !entered.Load() {
		t.Fatalf("second WithLock = %v, entered %v; want it to run once the lock was free", err, entered.Load())
	}
}
