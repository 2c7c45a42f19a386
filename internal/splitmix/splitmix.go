// Package splitmix is the random generator of everything Quarry simulates (hosts, their logs):
// splitmix64, owned here rather than taken from math/rand so that the output for a seed never
// changes under the simulations with a Go release. Determinism is their contract.
package splitmix

import "hash/fnv"

// RNG is one stream of numbers.
type RNG struct{ s uint64 }

// New derives an independent stream for one part of a simulation, so that adding numbers drawn
// in one part does not shift the choices of every other.
func New(seed int64, stream string) RNG {
	f := fnv.New64a()
	f.Write([]byte(stream))
	return RNG{s: uint64(seed)*0x9e3779b97f4a7c15 ^ f.Sum64()}
}

// Next returns the next 64 random bits.
func (r *RNG) Next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Intn returns a number in [0, n); n <= 0 gives 0.
func (r *RNG) Intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.Next() % uint64(n))
}

// Between returns a number in [lo, hi].
func (r *RNG) Between(lo, hi int) int { return lo + r.Intn(hi-lo+1) }

// Chance returns true percent times in a hundred.
func (r *RNG) Chance(percent int) bool { return r.Intn(100) < percent }
