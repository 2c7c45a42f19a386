package defender

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// family groups the calls that share one documented rate limit (mde-api.md §10: limits are per API).
type family string

const (
	famListMachines   family = "list-machines"
	famGetMachine     family = "get-machine"
	famListActions    family = "list-machine-actions"
	famGetAction      family = "get-machine-action"
	famCancelAction   family = "cancel-machine-action"
	famRunLR          family = "runliveresponse"
	famResultLink     family = "live-response-result-link"
	famLibrary        family = "library"
	famListAlerts     family = "list-alerts"
	famGetAlert       family = "get-alert"
	famUpdateAlert    family = "update-alert"
	famCollectPackage family = "collect-investigation-package"
	famPackageURI     family = "package-uri"
	// famDownload is the pre-signed result blob, which is not the MDE API and has no documented limit.
	famDownload family = "download"
)

// liveResponse reports whether a 403 DisabledFeature on this family means Live Response is switched off.
func (f family) liveResponse() bool {
	switch f {
	case famRunLR, famResultLink, famLibrary:
		return true
	}
	return false
}

// window is one documented "n calls per period" limit as a token bucket. A bucket of burst b refilled
// at r lets b + r·period calls through in any period, so both are chosen to add up to n: a tenth of n
// may go at once, the rest is spread evenly. The service never sees more than n in any window.
func window(n int, period time.Duration, scale float64) *rate.Limiter {
	burst := n / 10
	if burst < 1 {
		burst = 1
	}
	perSecond := float64(n-burst) / (period.Seconds() / scale)
	if n-burst <= 0 {
		// n == 1: one call per period.
		perSecond = scale / period.Seconds()
	}
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// arrivalMargin is added to the runliveresponse span against jitter in the time calls take to
// reach the service.
const arrivalMargin = 20 * time.Millisecond

// gate is one limit: reserve books a call at now and says how long it must wait, and the
// returned cancel gives the booking back.
type gate interface {
	reserve(now time.Time) (delay time.Duration, cancel func())
}

// bucket is a gate over a token bucket (window).
type bucket struct{ l *rate.Limiter }

func (b bucket) reserve(now time.Time) (time.Duration, func()) {
	r := b.l.ReserveN(now, 1)
	return r.DelayFrom(now), func() { r.CancelAt(now) }
}

// sliding is an exact "n calls in any span" gate: a call may go when fewer than n calls went in
// the span before it. It is for runliveresponse, whose ten a minute are the pace of a whole
// acquisition run: a token bucket that never exceeds n in a span sustains only n minus its burst
// (a tenth fewer launches), and it delays calls that the scheduler's own window, which counts
// the same way, already allowed.
type sliding struct {
	mu   sync.Mutex
	n    int
	span time.Duration
	at   []time.Time // booked call times still inside a span of now or later, oldest first
}

func (w *sliding) reserve(now time.Time) (time.Duration, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := 0
	for keep < len(w.at) && !w.at[keep].Add(w.span).After(now) {
		keep++
	}
	w.at = w.at[keep:]
	t := now
	if k := len(w.at); k >= w.n {
		if free := w.at[k-w.n].Add(w.span); free.After(t) {
			t = free
		}
	}
	// Bookings stay in time order: a call booked later never goes before one booked earlier.
	if k := len(w.at); k > 0 && w.at[k-1].After(t) {
		t = w.at[k-1]
	}
	w.at = append(w.at, t)
	return t.Sub(now), func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for i := len(w.at) - 1; i >= 0; i-- {
			if w.at[i].Equal(t) {
				w.at = append(w.at[:i], w.at[i+1:]...)
				return
			}
		}
	}
}

type limiterSet struct {
	limits Limits
	mu     sync.Mutex
	by     map[family][]gate
}

func newLimiterSet(l Limits) *limiterSet {
	return &limiterSet{limits: l, by: map[family][]gate{}}
}

func (s *limiterSet) get(f family) []gate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls, ok := s.by[f]; ok {
		return ls
	}
	l := s.limits
	var ls []gate
	switch f {
	case famDownload:
	case famRunLR:
		// The span has a margin of real time: the service counts calls when they arrive, and
		// one that travels faster than the call ten before it must not land inside its minute.
		ls = []gate{&sliding{n: l.LiveResponsePerMinute, span: time.Duration(float64(time.Minute)/max(l.TimeScale, 1)) + arrivalMargin}}
	case famPackageURI:
		ls = []gate{bucket{window(l.PackageURIPerMinute, time.Minute, l.TimeScale)}, bucket{window(l.PackageURIPerHour, time.Hour, l.TimeScale)}}
	default:
		ls = []gate{bucket{window(l.PerMinute, time.Minute, l.TimeScale)}, bucket{window(l.PerHour, time.Hour, l.TimeScale)}}
	}
	s.by[f] = ls
	return ls
}

// wait blocks until every limit of the family allows one more call. Reservations are taken on all
// limiters at once and given back if ctx ends first, so an abandoned call costs no quota.
func (s *limiterSet) wait(ctx context.Context, f family, now time.Time, sleep func(context.Context, time.Duration) error) error {
	ls := s.get(f)
	var delay time.Duration
	cancels := make([]func(), 0, len(ls))
	for _, l := range ls {
		d, cancel := l.reserve(now)
		cancels = append(cancels, cancel)
		delay = max(delay, d)
	}
	if delay <= 0 {
		return nil
	}
	if err := sleep(ctx, delay); err != nil {
		for _, c := range cancels {
			c()
		}
		return err
	}
	return nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
