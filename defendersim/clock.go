package defendersim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"time"
)

// clock converts simulated durations to real ones. Timestamps in the API are real wall-clock time;
// only the lengths of limit windows, timeouts and expiries shrink with the scale.
type clock struct {
	start time.Time
	scale float64
}

// real converts a simulated duration to wall-clock time.
func (c clock) real(d time.Duration) time.Duration {
	r := time.Duration(float64(d) / c.scale)
	if d > 0 && r <= 0 {
		r = 1
	}
	return r
}

// elapsed is the simulated time since the emulator started.
func (c clock) elapsed(now time.Time) time.Duration {
	return time.Duration(float64(now.Sub(c.start)) * c.scale)
}

// at is the wall-clock instant at which simulated offset d (from start) is reached.
func (c clock) at(d time.Duration) time.Time { return c.start.Add(c.real(d)) }

// gen is a seeded generator for stable identifiers and choices.
type gen struct{ r *mrand.Rand }

func newGen(seed int64, stream ...uint64) *gen {
	s2 := uint64(0x9e3779b97f4a7c15)
	for _, x := range stream {
		s2 = s2*31 + x + 1
	}
	return &gen{r: mrand.New(mrand.NewPCG(uint64(seed), s2))}
}

func (g *gen) hex(n int) string {
	b := make([]byte, (n+1)/2)
	for i := range b {
		b[i] = byte(g.r.UintN(256))
	}
	return hex.EncodeToString(b)[:n]
}

func (g *gen) guid() string {
	h := g.hex(32)
	// Version 4, RFC 4122 variant, so the ids look like Entra's.
	return fmt.Sprintf("%s-%s-4%s-%c%s-%s", h[0:8], h[8:12], h[13:16], "89ab"[g.r.IntN(4)], h[17:20], h[20:32])
}

func (g *gen) intn(n int) int { return g.r.IntN(n) }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func pick[T any](g *gen, xs []T) T { return xs[g.r.IntN(len(xs))] }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// newGUID is a random (not seeded) GUID for request correlation and action ids.
func newGUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// rateLimiter keeps a sliding log of call times per key (app + endpoint family + window).
type rateLimiter struct {
	mu   sync.Mutex
	logs map[string][]time.Time
}

func newRateLimiter() *rateLimiter { return &rateLimiter{logs: map[string][]time.Time{}} }

type window struct {
	limit int
	span  time.Duration // real time
}

// allow records a call under key if every window has room; otherwise it returns how long to wait.
func (r *rateLimiter) allow(key string, now time.Time, windows ...window) (bool, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.logs[key]
	var longest time.Duration
	for _, w := range windows {
		longest = max(longest, w.span)
	}
	// Drop entries older than the longest window.
	cut := sort.Search(len(log), func(i int) bool { return now.Sub(log[i]) < longest })
	log = log[cut:]
	var wait time.Duration
	for _, w := range windows {
		in := sort.Search(len(log), func(i int) bool { return now.Sub(log[i]) < w.span })
		if n := len(log) - in; n >= w.limit {
			// The oldest call still inside the window leaves it at log[in+n-limit] + span.
			oldest := log[len(log)-w.limit]
			wait = max(wait, oldest.Add(w.span).Sub(now))
		}
	}
	if wait > 0 {
		r.logs[key] = log
		return false, wait
	}
	r.logs[key] = append(log, now)
	return true, 0
}
