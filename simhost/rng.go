package simhost

import (
	"time"

	"github.com/quarry-dfir/quarry/internal/splitmix"
)

// rng is simhost's generator (internal/splitmix) with the helpers the tree needs.
type rng struct{ splitmix.RNG }

// newRNG derives an independent stream for one part of the tree, so that adding lines to one artifact
// does not shift the random choices of every other.
func newRNG(seed int64, stream string) *rng { return &rng{splitmix.New(seed, stream)} }

// dur returns a duration in [lo, hi] with second resolution.
func (r *rng) dur(lo, hi time.Duration) time.Duration {
	return time.Duration(r.Between(int(lo/time.Second), int(hi/time.Second))) * time.Second
}

func (r *rng) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		if i%8 == 0 {
			v := r.Next()
			for j := 0; j < 8 && i+j < n; j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
	}
	return b
}

func pick[T any](r *rng, xs []T) T { return xs[r.Intn(len(xs))] }

// shuffle returns a shuffled copy of xs.
func shuffle[T any](r *rng, xs []T) []T {
	out := append([]T(nil), xs...)
	for i := len(out) - 1; i > 0; i-- {
		j := r.Intn(i + 1)
		out[i], out[j] = out[j], out[i]
	}
	return out
}
