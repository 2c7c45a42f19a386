package sqldb_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/scheduler/limit"
	"github.com/quarry-dfir/quarry/scheduler/limit/limittest"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

func TestLimiter(t *testing.T) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		t.Run(dialect, func(t *testing.T) {
			limittest.Run(t, func(t *testing.T, limits limit.LimitsFunc) limit.Limiter {
				return sqldb.NewLimiter(sqldbtest.Open(t, dialect), limits)
			})
		})
	}
}

// TestLimiterUniqueHost checks the database's own guard: even a writer that skips the
// limiter cannot store a second live lease on one device.
func TestLimiterUniqueHost(t *testing.T) {
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		insert := "INSERT INTO lr_leases (connection_id, host_id, acquisition_id, acquired_at) VALUES (1, 'h', 1, '2026-01-01T00:00:00.000000Z')"
		if db.Dialect() == sqldb.DialectPostgres {
			insert = "INSERT INTO lr_leases (connection_id, host_id, acquisition_id, acquired_at) VALUES (1, 'h', 1, now())"
		}
		if _, err := db.SQL().Exec(insert); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SQL().Exec(insert); err == nil {
			t.Fatal("a second live lease on one device was stored")
		}
	})
}

// openTwice opens two handles on one fresh database, as two server processes would.
func openTwice(t testing.TB, dialect string) (*sqldb.DB, *sqldb.DB) {
	t.Helper()
	dsn := sqldbtest.DSN(t, dialect)
	var dbs [2]*sqldb.DB
	for i := range dbs {
		db, err := sqldb.OpenAndMigrate(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	return dbs[0], dbs[1]
}

// span is a lease as the workers saw it, in the order of a shared counter: the lease was
// certainly live from the moment TryAcquire returned (from) until Release was called (to).
type span struct {
	from, to int64
	host     string
	at       time.Time // the clock reading it was launched at
}

// TestLimiterConcurrent hammers one connection from 40 goroutines through two database handles
// with a shared fake clock. An independent check then replays what the workers observed: at
// no moment may more than MaxRunning leases, or two on one host, have been certainly live, and
// no window of the clock may hold more than LaunchesPerWindow launches.
func TestLimiterConcurrent(t *testing.T) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db1, db2 := openTwice(t, dialect)
			lim := limit.Limits{MaxRunning: 5, LaunchesPerWindow: 8, Window: 100 * time.Millisecond}
			limiters := []*sqldb.Limiter{sqldb.NewLimiter(db1, limit.Fixed(lim)), sqldb.NewLimiter(db2, limit.Fixed(lim))}
			var (
				seq, clock atomic.Int64 // the order of observations; the fake clock in milliseconds
				mu         sync.Mutex
				spans      []span
				reasons    = map[string]int{}
				wg         sync.WaitGroup
			)
			tick := func() time.Time { return limittest.T0.Add(time.Duration(clock.Add(1)) * time.Millisecond) }
			ctx := context.Background()
			for g := range 40 {
				wg.Go(func() {
					l := limiters[g%2]
					rng := rand.New(rand.NewPCG(uint64(g), 6))
					for i := range 25 {
						h := fmt.Sprintf("host-%02d", rng.IntN(12))
						acq := int64(g*1000 + i)
						lease, _, reason, err := l.TryAcquire(ctx, 1, h, acq, tick())
						if err != nil {
							t.Error(err)
							return
						}
						if lease == nil {
							mu.Lock()
							reasons[reason]++
							mu.Unlock()
							continue
						}
						from := seq.Add(1)
						// Hold the lease while other workers try, as an LR action would.
						for range 1 + rng.IntN(3) {
							if _, _, _, err := l.TryAcquire(ctx, 2, h, acq, tick()); err != nil {
								t.Error(err)
								return
							}
						}
						to := seq.Add(1)
						if rng.IntN(2) == 0 {
							err = l.Release(ctx, lease.ID, tick())
						} else {
							_, err = l.ReleaseByAcquisition(ctx, acq, tick())
						}
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						spans = append(spans, span{from, to, h, lease.AcquiredAt})
						reasons[""]++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			checkSpans(t, lim, spans)
			for _, r := range []string{"", limit.ReasonSlots, limit.ReasonRate, limit.ReasonHostBusy} {
				if reasons[r] == 0 {
					t.Errorf("no attempt ended with %q (%v): the test did not reach every limit", r, reasons)
				}
			}
			t.Logf("outcomes: %v", reasons)
			for _, l := range limiters {
				if n, err := l.Running(ctx, 1); err != nil || n != 0 {
					t.Errorf("Running after all releases = %d, %v; want 0", n, err)
				}
			}
		})
	}
}

// checkSpans fails t if the spans ever broke lim.
func checkSpans(t *testing.T, lim limit.Limits, spans []span) {
	t.Helper()
	type edge struct {
		at   int64
		span int
		open bool
	}
	var edges []edge
	for i, s := range spans {
		edges = append(edges, edge{s.from, i, true}, edge{s.to, i, false})
	}
	slices.SortFunc(edges, func(a, b edge) int { return int(a.at - b.at) })
	live, hosts, most := 0, map[string]int{}, 0
	for _, e := range edges {
		s := spans[e.span]
		if !e.open {
			live--
			hosts[s.host]--
			continue
		}
		live++
		hosts[s.host]++
		most = max(most, live)
		if live > lim.MaxRunning {
			t.Fatalf("%d leases live at once, limit %d", live, lim.MaxRunning)
		}
		if hosts[s.host] > 1 {
			t.Fatalf("two live leases on %s", s.host)
		}
	}
	var launches []time.Time
	for _, s := range spans {
		launches = append(launches, s.at)
	}
	slices.SortFunc(launches, time.Time.Compare)
	for i, end := range launches {
		// The window (end-Window, end] with the most launches ends at a launch.
		n := 0
		for _, a := range launches[:i+1] {
			if a.After(end.Add(-lim.Window)) {
				n++
			}
		}
		if n > lim.LaunchesPerWindow {
			t.Fatalf("%d launches in the window ending %v, limit %d", n, end, lim.LaunchesPerWindow)
		}
	}
	if most < lim.MaxRunning-1 {
		t.Errorf("at most %d leases were live at once: the test never came near the limit %d", most, lim.MaxRunning)
	}
}

// BenchmarkTryAcquire measures acquire and release pairs on one connection, the clock moving
// so that the rate window never refuses.
func BenchmarkTryAcquire(b *testing.B) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		b.Run(dialect, func(b *testing.B) {
			l := sqldb.NewLimiter(sqldbtest.Open(b, dialect), nil)
			ctx := context.Background()
			now := limittest.T0
			step := limit.Default.Window/time.Duration(limit.Default.LaunchesPerWindow) + time.Millisecond
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				now = now.Add(step)
				lease, _, reason, err := l.TryAcquire(ctx, 1, fmt.Sprintf("host-%d", i%100), int64(i), now)
				if err != nil || lease == nil {
					b.Fatalf("TryAcquire: %v %q", err, reason)
				}
				if err := l.Release(ctx, lease.ID, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
