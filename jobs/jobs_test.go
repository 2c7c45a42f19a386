package jobs_test

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/jobs"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/riverqueue/river"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const grace = 7 * 24 * time.Hour

// syncBuffer collects log output written from River's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls cond until it holds. The deadline is generous: it guards against a hang, it
// does not measure speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start starts a Runner on db and stops it when the test ends.
func start(t *testing.T, db *sqldb.DB, cfg jobs.Config) *jobs.Runner {
	t.Helper()
	cfg.PollInterval = 50 * time.Millisecond
	cfg.TestOnly = true
	r, err := jobs.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return r
}

// fixture is a user with sessions, tokens and login failures, some stale at now.
type fixture struct {
	sessions *sqldb.SessionService
	tokens   *sqldb.TokenService
}

func newFixture(t *testing.T, db *sqldb.DB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{sessions: sqldb.NewSessionService(db), tokens: sqldb.NewTokenService(db)}
	users := sqldb.NewUserService(db)
	u := &quarry.User{Username: "alice", Role: quarry.RoleAdmin, PasswordHash: "h"}
	if err := users.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for hash, expires := range map[string]time.Time{"session-expired": now.Add(-time.Minute), "session-live": now.Add(time.Hour)} {
		if err := f.sessions.CreateSession(ctx, &quarry.Session{TokenHash: hash, UserID: u.ID, ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range []struct {
		hash    string
		expires time.Time
		revoked *time.Time
	}{
		{"token-expired-long-ago", now.Add(-grace - time.Hour), nil},
		{"token-revoked-long-ago", now.Add(time.Hour), new(now.Add(-grace - time.Hour))},
		{"token-expired-recently", now.Add(-time.Hour), nil}, // within the grace period: kept
		{"token-live", now.Add(time.Hour), nil},
	} {
		at := &quarry.APIToken{UserID: u.ID, Name: tok.hash, Hash: tok.hash, Role: quarry.RoleViewer, ExpiresAt: tok.expires}
		if err := f.tokens.CreateToken(ctx, at); err != nil {
			t.Fatal(err)
		}
		if tok.revoked != nil {
			if err := f.tokens.RevokeToken(ctx, at.ID, *tok.revoked); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, at := range []time.Time{now.Add(-jobs.LoginFailureRetention - time.Minute), now.Add(-time.Minute)} {
		if err := users.RecordLoginFailure(ctx, "alice", "10.0.0.1", at); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// expired reports whether the stale credentials are gone, failing the test if a live one went.
func (f *fixture) expired(t *testing.T, db *sqldb.DB) bool {
	t.Helper()
	ctx := context.Background()
	rows, err := db.SQL().QueryContext(ctx, "SELECT token_hash FROM sessions ORDER BY token_hash")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sessions []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, h)
	}
	tokens, _, err := f.tokens.FindTokens(ctx, quarry.TokenFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for _, tok := range tokens {
		hashes = append(hashes, tok.Hash)
	}
	var failures int
	if err := db.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM login_failures").Scan(&failures); err != nil {
		t.Fatal(err)
	}
	for _, live := range []string{"session-live"} {
		if !contains(sessions, live) {
			t.Fatalf("live session %s was deleted; sessions left: %v", live, sessions)
		}
	}
	for _, live := range []string{"token-live", "token-expired-recently"} {
		if !contains(hashes, live) {
			t.Fatalf("token %s was deleted too early; tokens left: %v", live, hashes)
		}
	}
	if failures == 0 {
		t.Fatal("the recent login failure was deleted")
	}
	return reflect.DeepEqual(sessions, []string{"session-live"}) && len(hashes) == 2 && failures == 1
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestExpire(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		f := newFixture(t, db)
		var logs syncBuffer
		r := start(t, db, jobs.Config{
			Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
			Now:         func() time.Time { return now },
			TokenGrace:  grace,
			ExpireEvery: time.Hour, // the run on start and the enqueued one are all this test sees
		})
		if err := r.EnqueueExpire(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the expire job", func() bool { return f.expired(t, db) })
		// The run on start and the enqueued run may overlap and share the work, but each row
		// is deleted once, so the logged counts add up to what was stale.
		want := map[string]int{"sessions": 1, "api_tokens": 2, "login_failures": 1}
		waitFor(t, "the expire runs' log lines", func() bool {
			got := loggedCounts(logs.String())
			for k, n := range got {
				if n > want[k] {
					t.Fatalf("expire runs logged %v, want %v in all", got, want)
				}
			}
			return reflect.DeepEqual(got, want)
		})
	})
}

// loggedCounts adds up the counts of the expire runs logged so far.
func loggedCounts(logs string) map[string]int {
	sum := make(map[string]int)
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, `msg="expired stale credentials"`) {
			continue
		}
		for field := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(field, "=")
			if n, err := strconv.Atoi(v); err == nil && k != "job_id" {
				sum[k] += n
			}
		}
	}
	return sum
}

// TestExpireRunsOnStart checks the periodic schedule: nothing is enqueued by hand.
func TestExpireRunsOnStart(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		f := newFixture(t, db)
		start(t, db, jobs.Config{
			Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
			Now:        func() time.Time { return now },
			TokenGrace: grace,
		})
		waitFor(t, "the expire job run on start", func() bool { return f.expired(t, db) })
	})
}

type pingArgs struct{ N int }

func (pingArgs) Kind() string { return "test_ping" }

type pingWorker struct {
	river.WorkerDefaults[pingArgs]
	got chan int
}

func (w *pingWorker) Work(ctx context.Context, job *river.Job[pingArgs]) error {
	w.got <- job.Args.N
	return nil
}

// TestExtraWorkers checks that other features can bring their own workers.
func TestExtraWorkers(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		workers := river.NewWorkers()
		ping := &pingWorker{got: make(chan int, 1)}
		river.AddWorker(workers, ping)
		r := start(t, db, jobs.Config{
			Logger:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
			Workers: workers,
		})
		if _, err := r.Client().Insert(context.Background(), pingArgs{N: 42}, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-ping.got:
			if n != 42 {
				t.Fatalf("worker got %d, want 42", n)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("gave up waiting for the ping job")
		}
		if db.Dialect() == sqldb.DialectPostgres {
			var schema string
			err := db.SQL().QueryRow("SELECT table_schema FROM information_schema.tables WHERE table_name = 'river_job' AND table_schema = current_schema()").Scan(&schema)
			if err != nil || schema != db.Schema() {
				t.Fatalf("river_job is in schema %q (%v), want the store's %q", schema, err, db.Schema())
			}
		}
	})
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	workers := river.NewWorkers()
	if _, err := jobs.New(db, jobs.Config{Workers: workers}); err != nil {
		t.Fatal(err)
	}
	// The bundle now holds the expire worker; a second Runner on it must not register it twice.
	if _, err := jobs.New(db, jobs.Config{Workers: workers}); err == nil {
		t.Error("New with a bundle that already has the expire worker succeeded")
	}
	if _, err := jobs.New(db, jobs.Config{ExpireEvery: -time.Second}); err == nil {
		t.Error("New with a negative ExpireEvery succeeded")
	}
	for _, q := range []map[string]int{{river.QueueDefault: 2}, {"processing": 0}} {
		if _, err := jobs.New(db, jobs.Config{Queues: q}); err == nil {
			t.Errorf("New with queues %v succeeded", q)
		}
	}
}

type auditArgs struct{ N int }

func (auditArgs) Kind() string { return "test_audit" }

type auditWorker struct {
	river.WorkerDefaults[auditArgs]
	audit *sqldb.AuditService
}

func (w *auditWorker) Work(ctx context.Context, job *river.Job[auditArgs]) error {
	return w.audit.RecordAudit(ctx, &quarry.AuditEntry{Action: "test.job", TargetID: strconv.Itoa(job.Args.N)})
}

// TestBusyStore runs jobs that write to the store while requests write to it too: on SQLite
// River and the services share one write lock, and neither may fail for it.
func TestBusyStore(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		audit := sqldb.NewAuditService(db)
		workers := river.NewWorkers()
		river.AddWorker(workers, &auditWorker{audit: audit})
		var logs syncBuffer
		r := start(t, db, jobs.Config{
			Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Workers: workers,
		})
		const jobCount, writers = 40, 4
		var wg sync.WaitGroup
		errs := make(chan error, jobCount+writers*jobCount)
		wg.Go(func() {
			for i := range jobCount {
				if _, err := r.Client().Insert(ctx, auditArgs{N: i}, nil); err != nil {
					errs <- err
				}
			}
		})
		projects := sqldb.NewProjectService(db)
		for w := range writers {
			wg.Go(func() {
				for i := range jobCount / writers * 2 {
					if err := projects.CreateProject(ctx, &quarry.Project{Name: strconv.Itoa(w) + "-" + strconv.Itoa(i)}); err != nil {
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
		waitFor(t, "the jobs' audit entries", func() bool {
			_, n, err := audit.FindAuditEntries(ctx, quarry.AuditFilter{Action: "test.job"})
			if err != nil {
				t.Fatal(err)
			}
			return n == jobCount
		})
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("River logged errors:\n%s", logs.String())
		}
	})
}

// TestConcurrentMigrate starts several servers' migrations at once on one PostgreSQL schema.
func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	db := sqldbtest.Open(t, sqldb.DialectPostgres)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		r, err := jobs.New(db, jobs.Config{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { errs <- r.Migrate(context.Background()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
