package simhost

import (
	"hash/fnv"
	"time"
)

// rng is a splitmix64 generator. simhost owns its generator rather than using math/rand so that the output
// for a seed can never change under it with a Go release: determinism is the package's contract.
type rng struct{ s uint64 }

// newRNG derives an independent stream for one part of the tree, so that adding lines to one artifact
// does not shift the random choices of every other.
func newRNG(seed int64, stream string) *rng {
	f := fnv.New64a()
	f.Write([]byte(stream))
	return &rng{s: uint64(seed)*0x9e3779b97f4a7c15 ^ f.Sum64()}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// intn returns a number in [0, n); n <= 0 gives 0.
func (r *rng) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.next() % uint64(n))
}

// between returns a number in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

func (r *rng) chance(percent int) bool { return r.intn(100) < percent }

// dur returns a duration in [lo, hi] with second resolution.
func (r *rng) dur(lo, hi time.Duration) time.Duration {
	return time.Duration(r.between(int(lo/time.Second), int(hi/time.Second))) * time.Second
}

func (r *rng) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		if i%8 == 0 {
			v := r.next()
			for j := 0; j < 8 && i+j < n; j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
	}
	return b
}

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }

// shuffle returns a shuffled copy of xs.
func shuffle[T any](r *rng, xs []T) []T {
	out := append([]T(nil), xs...)
	for i := len(out) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		out[i], out[j] = out[j], out[i]
	}
	return out
}
