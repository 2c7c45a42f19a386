// Package limittest is the test suite every limit.Limiter must pass: the in-memory one and the
// SQL store on each dialect run the same cases.
package limittest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/scheduler/limit"
)

// Open returns a fresh, empty limiter whose connections' limits come from limits.
type Open func(t *testing.T, limits limit.LimitsFunc) limit.Limiter

// T0 is the suite's epoch: the fake clocks start here.
var T0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Run runs the whole suite against the limiters open returns.
func Run(t *testing.T, open Open) {
	t.Run("Slots", func(t *testing.T) { testSlots(t, open) })
	t.Run("HostBusy", func(t *testing.T) { testHostBusy(t, open) })
	t.Run("RetryAt", func(t *testing.T) { testRetryAt(t, open) })
	t.Run("Release", func(t *testing.T) { testRelease(t, open) })
	t.Run("Expire", func(t *testing.T) { testExpire(t, open) })
	t.Run("Prune", func(t *testing.T) { testPrune(t, open) })
	t.Run("ReentrantRate", func(t *testing.T) { testReentrantRate(t, open) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, open) })
	t.Run("Model", func(t *testing.T) { testModel(t, open) })
}

// Attempt is the outcome of one TryAcquire.
type Attempt struct {
	Lease   *limit.Lease
	RetryAt time.Time
	Reason  string
}

// MustTry calls TryAcquire and fails the test on an error.
func MustTry(t testing.TB, l limit.Limiter, conn int64, host string, acq int64, now time.Time) Attempt {
	t.Helper()
	lease, retryAt, reason, err := l.TryAcquire(context.Background(), conn, host, acq, now)
	if err != nil {
		t.Fatalf("TryAcquire(%d, %q, %d, %v): %v", conn, host, acq, now, err)
	}
	if (lease == nil) == (reason == "") {
		t.Fatalf("TryAcquire(%d, %q, %d, %v) = lease %v, reason %q: want exactly one", conn, host, acq, now, lease, reason)
	}
	return Attempt{lease, retryAt, reason}
}

func mustAcquire(t *testing.T, l limit.Limiter, conn int64, host string, acq int64, now time.Time) *limit.Lease {
	t.Helper()
	a := MustTry(t, l, conn, host, acq, now)
	if a.Lease == nil {
		t.Fatalf("TryAcquire(%d, %q) at %v refused: %s (retry at %v), want a lease", conn, host, now.Sub(T0), a.Reason, a.RetryAt)
	}
	want := limit.Lease{ID: a.Lease.ID, ConnectionID: conn, HostID: host, AcquisitionID: acq, AcquiredAt: limit.Stored(now)}
	if *a.Lease != want || a.Lease.ID == 0 {
		t.Fatalf("TryAcquire lease = %+v, want %+v with an ID", *a.Lease, want)
	}
	return a.Lease
}

func wantRefused(t *testing.T, l limit.Limiter, conn int64, host string, now time.Time, reason string, retryAt time.Time) {
	t.Helper()
	a := MustTry(t, l, conn, host, 999, now)
	if a.Lease != nil || a.Reason != reason || !a.RetryAt.Equal(retryAt) {
		t.Fatalf("TryAcquire(%d, %q) at %v = lease %v, %q, retry at %v; want refused for %q, retry at %v",
			conn, host, now.Sub(T0), a.Lease, a.Reason, a.RetryAt, reason, retryAt)
	}
}

func wantRunning(t *testing.T, l limit.Limiter, conn int64, want int) {
	t.Helper()
	if n, err := l.Running(context.Background(), conn); err != nil || n != want {
		t.Fatalf("Running(%d) = %d, %v; want %d", conn, n, err, want)
	}
}

func host(i int) string { return fmt.Sprintf("host-%02d", i) }

// testSlots: every slot is usable (tightness) and none beyond (exactness), and a release frees
// one at once, at the same instant.
func testSlots(t *testing.T, open Open) {
	l := open(t, limit.Fixed(limit.Limits{MaxRunning: 3, LaunchesPerWindow: 100, Window: time.Minute}))
	var leases []*limit.Lease
	for i := range 3 {
		leases = append(leases, mustAcquire(t, l, 1, host(i), int64(i+1), T0))
	}
	wantRunning(t, l, 1, 3)
	wantRefused(t, l, 1, host(3), T0, limit.ReasonSlots, time.Time{})
	wantRunning(t, l, 2, 0)
	mustAcquire(t, l, 2, host(3), 10, T0) // another connection has its own slots
	if err := l.Release(context.Background(), leases[1].ID, T0); err != nil {
		t.Fatal(err)
	}
	wantRunning(t, l, 1, 2)
	mustAcquire(t, l, 1, host(3), 4, T0)
	wantRefused(t, l, 1, host(4), T0, limit.ReasonSlots, time.Time{})
}

func testHostBusy(t *testing.T, open Open) {
	l := open(t, limit.Fixed(limit.Limits{MaxRunning: 5, LaunchesPerWindow: 100, Window: time.Minute}))
	first := mustAcquire(t, l, 1, "dev", 1, T0)
	wantRefused(t, l, 1, "dev", T0.Add(time.Second), limit.ReasonHostBusy, time.Time{})
	mustAcquire(t, l, 1, "other", 2, T0.Add(time.Second))
	mustAcquire(t, l, 2, "dev", 3, T0.Add(time.Second)) // the same id on another connection is another device
	if err := l.Release(context.Background(), first.ID, T0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, l, 1, "dev", 4, T0.Add(2*time.Second))
	// The holder asking again gets its own lease back, as it is.
	again, _, reason, err := l.TryAcquire(context.Background(), 1, "dev", 4, T0.Add(3*time.Second))
	if err != nil || again == nil || again.AcquisitionID != 4 || !again.AcquiredAt.Equal(limit.Stored(T0.Add(2*time.Second))) {
		t.Fatalf("TryAcquire by the holder = %+v, %q, %v; want its lease from 2s", again, reason, err)
	}
	wantRunning(t, l, 1, 2)
}

// testReentrantRate: a holder asking again is launching again, so the rate window counts it and
// can refuse it, while its lease stays.
func testReentrantRate(t *testing.T, open Open) {
	l := open(t, limit.Fixed(limit.Limits{MaxRunning: 5, LaunchesPerWindow: 2, Window: time.Minute}))
	mine := mustAcquire(t, l, 1, "a", 1, T0)
	mustAcquire(t, l, 1, "b", 2, T0.Add(time.Second))
	// The window is full: the holder's second launch waits for the first to leave it.
	wantRefused(t, l, 1, "a", T0.Add(2*time.Second), limit.ReasonRate, T0.Add(time.Minute))
	wantRunning(t, l, 1, 2)
	again, _, reason, err := l.TryAcquire(context.Background(), 1, "a", 1, T0.Add(time.Minute))
	if err != nil || again == nil || again.ID != mine.ID {
		t.Fatalf("TryAcquire by the holder at 60s = %+v, %q, %v", again, reason, err)
	}
	// Its launch at 60s counts: a third host waits until 61s, when the one at 1s leaves.
	wantRefused(t, l, 1, "c", T0.Add(time.Minute+500*time.Millisecond), limit.ReasonRate, T0.Add(61*time.Second))
}

// testRetryAt checks that retryAt for the rate window is exactly the instant the oldest counted
// launch leaves it: refused a microsecond before, allowed at it.
func testRetryAt(t *testing.T, open Open) {
	const w = time.Minute
	s := func(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }
	cases := [...]struct {
		name     string
		launches []time.Duration // made in this order, each on its own host and released at once
		perWin   int             // LaunchesPerWindow from the start
		lowered  int             // if not 0, LaunchesPerWindow after the launches
		at       time.Duration
		want     time.Duration // the retry time; 0 if the attempt must succeed
	}{
		{name: "Full", launches: []time.Duration{0, s(10), s(20)}, perWin: 3, at: s(30), want: w},
		{name: "OldestLeaves", launches: []time.Duration{0, s(10), s(20)}, perWin: 3, at: w},
		{name: "MicrosecondBefore", launches: []time.Duration{0, s(10), s(20)}, perWin: 3, at: w - time.Microsecond, want: w},
		{name: "JustAfter", launches: []time.Duration{0, s(10), s(20)}, perWin: 3, at: w + time.Microsecond},
		{name: "SameInstant", launches: []time.Duration{s(5), s(5), s(5)}, perWin: 3, at: s(6), want: s(5) + w},
		{name: "PrunedThenFull", launches: []time.Duration{0, s(70), s(80)}, perWin: 2, at: s(90), want: s(70) + w},
		{name: "Lowered", launches: []time.Duration{0, s(1), s(2), s(3), s(4)}, perWin: 5, lowered: 3, at: s(5), want: s(2) + w},
		{name: "LoweredLater", launches: []time.Duration{0, s(1), s(2), s(3), s(4)}, perWin: 5, lowered: 3, at: s(2) + w},
		{name: "ClockBehind", launches: []time.Duration{s(100)}, perWin: 1, at: s(50), want: s(100) + w},
		{name: "PrunedByClockAhead", launches: []time.Duration{0, s(10), s(20), s(100)}, perWin: 3, at: s(50), want: s(10) + w},
		{name: "ClockBehindUnordered", launches: []time.Duration{s(30), s(10), s(20)}, perWin: 3, at: s(25), want: s(10) + w},
	}
	// One limiter for all the cases, each on its own connection with its own limits: the
	// cases also show that connections do not share windows.
	var perWin [len(cases)]atomic.Int64
	l := open(t, func(conn int64) limit.Limits {
		return limit.Limits{MaxRunning: 100, LaunchesPerWindow: int(perWin[conn-1].Load()), Window: w}
	})
	for i, tt := range cases {
		conn := int64(i + 1)
		t.Run(tt.name, func(t *testing.T) {
			perWin[i].Store(int64(tt.perWin))
			for j, d := range tt.launches {
				ls := mustAcquire(t, l, conn, host(j), int64(j+1), T0.Add(d))
				if err := l.Release(context.Background(), ls.ID, T0.Add(d)); err != nil {
					t.Fatal(err)
				}
			}
			if tt.lowered != 0 {
				perWin[i].Store(int64(tt.lowered))
			}
			if tt.want == 0 {
				mustAcquire(t, l, conn, "last", 100, T0.Add(tt.at))
				return
			}
			wantRefused(t, l, conn, "last", T0.Add(tt.at), limit.ReasonRate, T0.Add(tt.want))
			// Tight: the retry time works, a microsecond before it does not.
			wantRefused(t, l, conn, "last", T0.Add(tt.want-time.Microsecond), limit.ReasonRate, T0.Add(tt.want))
			mustAcquire(t, l, conn, "last", 100, T0.Add(tt.want))
		})
	}
}

func testRelease(t *testing.T, open Open) {
	ctx := context.Background()
	l := open(t, limit.Fixed(limit.Limits{MaxRunning: 5, LaunchesPerWindow: 100, Window: time.Minute}))
	a := mustAcquire(t, l, 1, "a", 10, T0)
	b := mustAcquire(t, l, 1, "b", 20, T0)
	mustAcquire(t, l, 1, "c", 20, T0) // one acquisition may hold two leases (a retry elsewhere)
	for range 2 {
		if err := l.Release(ctx, a.ID, T0); err != nil {
			t.Fatalf("Release(%d) = %v, want nil (idempotent)", a.ID, err)
		}
		wantRunning(t, l, 1, 2)
	}
	if err := l.Release(ctx, b.ID+1000, T0); quarry.ErrorCode(err) != quarry.ENOTFOUND {
		t.Fatalf("Release(unknown) = %v, want %s", err, quarry.ENOTFOUND)
	}
	for _, want := range []int{2, 0} {
		if n, err := l.ReleaseByAcquisition(ctx, 20, T0); err != nil || n != want {
			t.Fatalf("ReleaseByAcquisition(20) = %d, %v; want %d", n, err, want)
		}
	}
	if err := l.Release(ctx, b.ID, T0); err != nil {
		t.Fatalf("Release of a lease released by acquisition = %v, want nil", err)
	}
	wantRunning(t, l, 1, 0)
	mustAcquire(t, l, 1, "b", 21, T0)
}

func testExpire(t *testing.T, open Open) {
	ctx := context.Background()
	l := open(t, limit.Fixed(limit.Limits{MaxRunning: 5, LaunchesPerWindow: 100, Window: time.Minute}))
	old1 := mustAcquire(t, l, 1, "a", 1, T0)
	old2 := mustAcquire(t, l, 2, "b", 2, T0.Add(time.Second))
	gone := mustAcquire(t, l, 1, "c", 3, T0.Add(2*time.Second))
	if err := l.Release(ctx, gone.ID, T0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, l, 1, "d", 4, T0.Add(10*time.Minute)) // not older than the cut-off: stays
	now := T0.Add(12 * time.Minute)
	got, err := l.Expire(ctx, T0.Add(10*time.Minute), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []limit.Lease{*old1, *old2}; !slices.Equal(got, want) {
		t.Fatalf("Expire = %+v, want %+v", got, want)
	}
	wantRunning(t, l, 1, 1)
	wantRunning(t, l, 2, 0)
	if got, err := l.Expire(ctx, T0.Add(10*time.Minute), now); err != nil || len(got) != 0 {
		t.Fatalf("second Expire = %+v, %v; want none", got, err)
	}
	if err := l.Release(ctx, old1.ID, now); err != nil {
		t.Fatalf("Release of an expired lease = %v, want nil", err)
	}
	mustAcquire(t, l, 1, "a", 5, now)
	wantRefused(t, l, 1, "d", now, limit.ReasonHostBusy, time.Time{})
}

func testPrune(t *testing.T, open Open) {
	ctx := context.Background()
	l := open(t, limit.Fixed(limit.Limits{MaxRunning: 5, LaunchesPerWindow: 100, Window: time.Minute}))
	old := mustAcquire(t, l, 1, "a", 1, T0)
	recent := mustAcquire(t, l, 1, "b", 2, T0)
	live := mustAcquire(t, l, 1, "c", 3, T0)
	if err := l.Release(ctx, old.ID, T0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, recent.ID, T0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := l.Prune(ctx, T0.Add(30*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1 (the lease released before the cut-off)", n, err)
	}
	if err := l.Release(ctx, old.ID, T0.Add(2*time.Hour)); quarry.ErrorCode(err) != quarry.ENOTFOUND {
		t.Errorf("Release of a pruned lease = %v, want ENOTFOUND", err)
	}
	if err := l.Release(ctx, recent.ID, T0.Add(2*time.Hour)); err != nil {
		t.Errorf("Release of a kept released lease = %v, want nil", err)
	}
	if n, err := l.Prune(ctx, T0.Add(100*time.Hour)); err != nil || n != 1 {
		t.Fatalf("second Prune = %d, %v; want 1 (the live lease stays)", n, err)
	}
	wantRunning(t, l, 1, 1)
	if err := l.Release(ctx, live.ID, T0.Add(101*time.Hour)); err != nil {
		t.Errorf("Release of the live lease after pruning = %v", err)
	}
}

func testInvalid(t *testing.T, open Open) {
	l := open(t, func(conn int64) limit.Limits {
		if conn == 2 {
			return limit.Limits{MaxRunning: 1, LaunchesPerWindow: 0, Window: time.Minute}
		}
		return limit.Default
	})
	for _, tt := range []struct {
		name string
		conn int64
		host string
	}{{"EmptyHost", 1, ""}, {"BadLimits", 2, "h"}, {"NULInHost", 1, "a\x00b"}} {
		t.Run(tt.name, func(t *testing.T) {
			lease, _, _, err := l.TryAcquire(context.Background(), tt.conn, tt.host, 1, T0)
			if lease != nil || quarry.ErrorCode(err) != quarry.EINVALID {
				t.Fatalf("TryAcquire = %v, %v; want %s", lease, err, quarry.EINVALID)
			}
		})
	}
}

// model is the reference the Model case compares against: every lease and launch ever made,
// and each decision worked out from its definition rather than with limit.Decide.
type model struct {
	l        limit.Limits
	leases   []modelLease
	launches map[int64][]time.Time
}

type modelLease struct {
	limit.Lease
	live bool
}

func (m *model) try(conn int64, host string, acq int64, now time.Time) Attempt {
	running, busy := 0, false
	for _, ls := range m.leases {
		if ls.live && ls.ConnectionID == conn {
			running++
			busy = busy || ls.HostID == host
		}
	}
	inWindow := func(t time.Time) int { // launches a window ending at t or later holds
		n := 0
		for _, a := range m.launches[conn] {
			if a.After(t.Add(-m.l.Window)) {
				n++
			}
		}
		return n
	}
	switch {
	case running >= m.l.MaxRunning:
		return Attempt{Reason: limit.ReasonSlots}
	case inWindow(now) >= m.l.LaunchesPerWindow:
		// The first instant, among those when a launch leaves the window, with room.
		var best time.Time
		for _, a := range m.launches[conn] {
			if t := a.Add(m.l.Window); t.After(now) && inWindow(t) < m.l.LaunchesPerWindow && (best.IsZero() || t.Before(best)) {
				best = t
			}
		}
		return Attempt{RetryAt: best, Reason: limit.ReasonRate}
	case busy:
		return Attempt{Reason: limit.ReasonHostBusy}
	}
	ls := limit.Lease{ConnectionID: conn, HostID: host, AcquisitionID: acq, AcquiredAt: now}
	m.leases = append(m.leases, modelLease{ls, true})
	m.launches[conn] = append(m.launches[conn], now)
	return Attempt{Lease: &ls}
}

// testModel runs a seeded random schedule of every operation and compares each outcome with
// the model's.
func testModel(t *testing.T, open Open) {
	ctx := context.Background()
	lim := limit.Limits{MaxRunning: 4, LaunchesPerWindow: 3, Window: time.Minute}
	l := open(t, limit.Fixed(lim))
	m := &model{l: lim, launches: map[int64][]time.Time{}}
	rng := rand.New(rand.NewPCG(6, 25))
	var ids []int64 // the limiter's lease id for each model lease, in order
	now := T0
	refusals := map[string]int{}
	for step := range 600 {
		now = now.Add(time.Duration(rng.IntN(8)) * time.Second)
		switch op := rng.IntN(10); {
		case op < 6:
			conn, h, acq, at := int64(1+rng.IntN(2)), host(rng.IntN(5)), int64(step), now
			if rng.IntN(5) == 0 {
				// Another process's clock, or a caller that waited: behind the others.
				at = now.Add(-time.Duration(rng.IntN(40)) * time.Second)
			}
			want := m.try(conn, h, acq, at)
			got := MustTry(t, l, conn, h, acq, at)
			if want.Lease != nil && got.Lease != nil {
				want.Lease.ID = got.Lease.ID
				ids = append(ids, got.Lease.ID)
			}
			if (got.Lease == nil) != (want.Lease == nil) || (got.Lease != nil && *got.Lease != *want.Lease) ||
				got.Reason != want.Reason || !got.RetryAt.Equal(want.RetryAt) {
				t.Fatalf("step %d: TryAcquire(%d, %q) at %v = %+v, want %+v", step, conn, h, at.Sub(T0), got, want)
			}
			refusals[got.Reason]++
		case op < 8 && len(ids) > 0:
			i := rng.IntN(len(ids))
			m.leases[i].live = false
			if err := l.Release(ctx, ids[i], now); err != nil {
				t.Fatalf("step %d: Release(%d): %v", step, ids[i], err)
			}
		case op < 9:
			acq, want := int64(rng.IntN(step+1)), 0
			for i := range m.leases {
				if m.leases[i].live && m.leases[i].AcquisitionID == acq {
					m.leases[i].live, want = false, want+1
				}
			}
			if n, err := l.ReleaseByAcquisition(ctx, acq, now); err != nil || n != want {
				t.Fatalf("step %d: ReleaseByAcquisition(%d) = %d, %v; want %d", step, acq, n, err, want)
			}
		default:
			olderThan := now.Add(-3 * time.Minute)
			var want []limit.Lease
			for i := range m.leases {
				if ls := &m.leases[i]; ls.live && ls.AcquiredAt.Before(olderThan) {
					ls.live = false
					want = append(want, limit.Lease{ID: ids[i], ConnectionID: ls.ConnectionID, HostID: ls.HostID,
						AcquisitionID: ls.AcquisitionID, AcquiredAt: ls.AcquiredAt})
				}
			}
			limit.SortLeases(want)
			got, err := l.Expire(ctx, olderThan, now)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("step %d: Expire = %+v, %v; want %+v", step, got, err, want)
			}
		}
		for conn := int64(1); conn <= 2; conn++ {
			want := 0
			for _, ls := range m.leases {
				if ls.live && ls.ConnectionID == conn {
					want++
				}
			}
			wantRunning(t, l, conn, want)
		}
	}
	// The schedule must have met every limit, or it proved little.
	for _, r := range []string{"", limit.ReasonSlots, limit.ReasonRate, limit.ReasonHostBusy} {
		if refusals[r] < 5 {
			t.Errorf("the schedule met %q only %d times (%v); change the seed or the mix", r, refusals[r], refusals)
		}
	}
}
