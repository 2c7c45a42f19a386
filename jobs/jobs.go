// Package jobs runs Quarry's background work on River, on the same database as the store.
//
// A Runner owns one River client. On SQLite it uses River's SQLite driver on the store's
// database/sql pool; on PostgreSQL River's pgx driver on the store's pgx pool, in the same
// schema as the store. Later features add their workers through Config.Workers and their
// schedules through Config.PeriodicJobs.
package jobs

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// Defaults for Config.
const (
	DefaultExpireEvery = 10 * time.Minute
	DefaultTokenGrace  = 30 * 24 * time.Hour
	DefaultMaxWorkers  = 10
	// DefaultRescueAfter: River's own default is an hour, during which an acquisition whose
	// launch was running in a killed server would sit still.
	DefaultRescueAfter = 5 * time.Minute
)

// LoginFailureRetention is how long login failures are kept; throttling looks back less far.
const LoginFailureRetention = 24 * time.Hour

// Config configures a Runner. Zero fields get defaults.
type Config struct {
	Logger *slog.Logger // default slog.Default()

	// The services the expire job cleans; by default the sqldb services on the Runner's database.
	Sessions quarry.SessionService
	Tokens   quarry.TokenService
	Users    quarry.UserService

	ExpireEvery time.Duration // how often the expire job runs; default DefaultExpireEvery
	// TokenGrace is how long expired or revoked API tokens stay listed (so their owners see
	// why they stopped working) before the expire job deletes them; default DefaultTokenGrace.
	TokenGrace time.Duration
	Now        func() time.Time // default time.Now

	// Workers holds the workers of other features; New adds Quarry's own to it. Workers must be
	// added before New: River reads the bundle when it creates its client.
	Workers *river.Workers
	// EnrolTokens, when set, loses its tokens that expired more than TokenGrace ago.
	EnrolTokens interface {
		DeleteExpiredEnrolTokens(ctx context.Context, before time.Time) (int, error)
	}

	// Connections, when set, is re-checked every CheckConnectionsEvery (default a day).
	Connections           ConnectionChecker
	CheckConnectionsEvery time.Duration

	// PeriodicJobs are other features' schedules, started with the Runner.
	PeriodicJobs []*river.PeriodicJob
	// RescueAfter is how long a job may stay running before another process takes it up
	// again, its own having died (killed, crashed, lost its host); default DefaultRescueAfter.
	// Jobs are cancelled after at most half of it (and a minute), so that a slow job is never
	// run twice at once.
	RescueAfter time.Duration
	// MaxWorkers bounds how many jobs of the default queue run at once in this process;
	// default DefaultMaxWorkers.
	MaxWorkers int
	// Queues are further queues and how many of their jobs run at once in this process: work
	// that takes long (processing a package) gets its own, so that it never holds every worker
	// while short jobs (launches, watches) wait.
	Queues map[string]int
	// PollInterval is how often River looks for new jobs when it is not told of them (always
	// on SQLite, which has no LISTEN/NOTIFY); zero means River's default of one second.
	PollInterval time.Duration
	// TestOnly is for tests only: River skips the staggered, jittered start-up that spreads
	// the load of many processes, so that periodic jobs run at once.
	TestOnly bool
}

// Client is the part of River's client that does not depend on the driver's transaction type,
// so that callers can insert and inspect jobs on either dialect.
type Client interface {
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	JobCancel(ctx context.Context, jobID int64) (*rivertype.JobRow, error)
	JobGet(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	PeriodicJobs() *river.PeriodicJobBundle
	Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func())
}

// riverClient is Client plus the lifecycle the Runner keeps to itself.
type riverClient interface {
	Client
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

var (
	_ riverClient = (*river.Client[pgx.Tx])(nil)
	_ riverClient = (*river.Client[*sql.Tx])(nil)
)

// Runner runs background jobs.
type Runner struct {
	client  riverClient
	migrate func(ctx context.Context) error
}

// New returns a Runner on db. It does not touch the database until Start or Migrate.
func New(db *sqldb.DB, cfg Config) (*Runner, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Sessions == nil {
		cfg.Sessions = sqldb.NewSessionService(db)
	}
	if cfg.Tokens == nil {
		cfg.Tokens = sqldb.NewTokenService(db)
	}
	if cfg.Users == nil {
		cfg.Users = sqldb.NewUserService(db)
	}
	cfg.ExpireEvery = cmp.Or(cfg.ExpireEvery, DefaultExpireEvery)
	cfg.TokenGrace = cmp.Or(cfg.TokenGrace, DefaultTokenGrace)
	cfg.MaxWorkers = cmp.Or(cfg.MaxWorkers, DefaultMaxWorkers)
	cfg.RescueAfter = cmp.Or(cfg.RescueAfter, DefaultRescueAfter)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers == nil {
		cfg.Workers = river.NewWorkers()
	}
	if cfg.ExpireEvery < 0 || cfg.TokenGrace < 0 || cfg.MaxWorkers < 0 || cfg.PollInterval < 0 || cfg.RescueAfter < 2*time.Second {
		return nil, errors.New("jobs: negative duration or worker count, or a rescue delay under 2s, in config")
	}

	if err := river.AddWorkerSafely(cfg.Workers, &expireWorker{cfg: cfg}); err != nil {
		return nil, fmt.Errorf("jobs: register expire worker: %w", err)
	}
	periodic := append([]*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(cfg.ExpireEvery),
			func() (river.JobArgs, *river.InsertOpts) { return ExpireArgs{}, nil },
			&river.PeriodicJobOpts{ID: ExpireArgs{}.Kind(), RunOnStart: true}),
	}, cfg.PeriodicJobs...)
	if cfg.Connections != nil {
		if err := river.AddWorkerSafely(cfg.Workers, &checkConnectionsWorker{checker: cfg.Connections}); err != nil {
			return nil, fmt.Errorf("jobs: register connection check worker: %w", err)
		}
		periodic = append(periodic, river.NewPeriodicJob(river.PeriodicInterval(cmp.Or(cfg.CheckConnectionsEvery, 24*time.Hour)),
			func() (river.JobArgs, *river.InsertOpts) { return CheckConnectionsArgs{}, nil },
			&river.PeriodicJobOpts{ID: CheckConnectionsArgs{}.Kind()}))
	}
	queues := map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.MaxWorkers}}
	for name, n := range cfg.Queues {
		if name == river.QueueDefault || n <= 0 {
			return nil, fmt.Errorf("jobs: queue %q needs its own name and at least one worker", name)
		}
		queues[name] = river.QueueConfig{MaxWorkers: n}
	}
	rc := &river.Config{
		FetchPollInterval: cfg.PollInterval,
		Logger:            cfg.Logger,
		PeriodicJobs:      periodic,
		Queues:            queues,
		Schema:            db.Schema(),
		Workers:           cfg.Workers,
		TestOnly:          cfg.TestOnly,
		JobTimeout:        min(time.Minute, cfg.RescueAfter/2),
		// River's rescuer looks every 30 s, so a dead process's jobs move on within
		// RescueAfter plus that.
		RescueStuckJobsAfter: cfg.RescueAfter,
	}
	if cfg.PollInterval > 0 {
		rc.FetchCooldown = min(cfg.PollInterval, river.FetchCooldownDefault) // River refuses a cooldown above the interval
	}
	var r *Runner
	var err error
	switch db.Dialect() {
	case sqldb.DialectPostgres:
		r, err = newRunner(riverpgxv5.New(db.PgxPool()), rc, db)
	case sqldb.DialectSQLite:
		r, err = newRunner(riversqlite.New(db.SQL()), rc, db)
	default:
		err = fmt.Errorf("unknown dialect %q", db.Dialect())
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return r, nil
}

// newRunner creates the River client and migrator for a driver. It is generic because River's
// types carry the driver's transaction type; the Runner hides it.
func newRunner[TTx any](driver riverdriver.Driver[TTx], rc *river.Config, db *sqldb.DB) (*Runner, error) {
	client, err := river.NewClient(driver, rc)
	if err != nil {
		return nil, err
	}
	migrate := func(ctx context.Context) error {
		m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: rc.Logger, Schema: rc.Schema})
		if err != nil {
			return err
		}
		// River's migrations cannot share one transaction, so servers starting together
		// take turns under a lock instead.
		return db.WithLock(ctx, "river.migrate", func() error {
			_, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
			return err
		})
	}
	return &Runner{client: client, migrate: migrate}, nil
}

// Client returns River's client, to insert and inspect jobs.
func (r *Runner) Client() Client { return r.client }

// Migrate brings River's own tables up to date. Start does it too; call it alone to insert
// jobs without working them.
func (r *Runner) Migrate(ctx context.Context) error {
	if err := r.migrate(ctx); err != nil {
		return fmt.Errorf("jobs: migrate river: %w", err)
	}
	return nil
}

// Start migrates River's tables and starts working jobs. It returns once the workers run;
// they stop with Stop or when ctx ends.
func (r *Runner) Start(ctx context.Context) error {
	if err := r.Migrate(ctx); err != nil {
		return err
	}
	if err := r.client.Start(ctx); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	return nil
}

// Stop stops fetching jobs and waits for running ones until ctx ends.
func (r *Runner) Stop(ctx context.Context) error {
	if err := r.client.Stop(ctx); err != nil {
		return fmt.Errorf("jobs: stop: %w", err)
	}
	return nil
}

// EnqueueExpire asks for an expire run now, in addition to the periodic ones.
func (r *Runner) EnqueueExpire(ctx context.Context) error {
	if _, err := r.client.Insert(ctx, ExpireArgs{}, nil); err != nil {
		return fmt.Errorf("jobs: enqueue expire: %w", err)
	}
	return nil
}
