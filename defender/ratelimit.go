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

type limiterSet struct {
	limits Limits
	mu     sync.Mutex
	by     map[family][]*rate.Limiter
}

func newLimiterSet(l Limits) *limiterSet {
	return &limiterSet{limits: l, by: map[family][]*rate.Limiter{}}
}

func (s *limiterSet) get(f family) []*rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls, ok := s.by[f]; ok {
		return ls
	}
	l := s.limits
	var ls []*rate.Limiter
	switch f {
	case famDownload:
	case famRunLR:
		ls = []*rate.Limiter{window(l.LiveResponsePerMinute, time.Minute, l.TimeScale)}
	case famPackageURI:
		ls = []*rate.Limiter{window(l.PackageURIPerMinute, time.Minute, l.TimeScale), window(l.PackageURIPerHour, time.Hour, l.TimeScale)}
	default:
		ls = []*rate.Limiter{window(l.PerMinute, time.Minute, l.TimeScale), window(l.PerHour, time.Hour, l.TimeScale)}
	}
	s.by[f] = ls
	return ls
}

// wait blocks until every limit of the family allows one more call. Reservations are taken on all
// limiters at once and given back if ctx ends first, so an abandoned call costs no quota.
func (s *limiterSet) wait(ctx context.Context, f family, now time.Time, sleep func(context.Context, time.Duration) error) error {
	ls := s.get(f)
	var delay time.Duration
	rs := make([]*rate.Reservation, 0, len(ls))
	for _, l := range ls {
		r := l.ReserveN(now, 1)
		rs = append(rs, r)
		if d := r.DelayFrom(now); d > delay {
			delay = d
		}
	}
	if delay <= 0 {
		return nil
	}
	if err := sleep(ctx, delay); err != nil {
		for _, r := range rs {
			r.CancelAt(now)
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
