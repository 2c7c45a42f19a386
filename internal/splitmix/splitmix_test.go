package splitmix

import "testing"

// TestStreams: a seed and stream give the same numbers every time (the simulations' contract),
// different streams give different numbers, and the range helpers stay in range.
func TestStreams(t *testing.T) {
	a, b, c := New(7, "auth.log"), New(7, "auth.log"), New(7, "syslog")
	same, differ := 0, 0
	for i := 0; i < 1000; i++ {
		x, y, z := a.Next(), b.Next(), c.Next()
		if x == y {
			same++
		}
		if x != z {
			differ++
		}
	}
	if same != 1000 || differ < 999 {
		t.Fatalf("same stream agreed %d/1000, different streams differed %d/1000", same, differ)
	}
	r := New(1, "x")
	for i := 0; i < 10000; i++ {
		if v := r.Between(3, 5); v < 3 || v > 5 {
			t.Fatalf("Between(3, 5) = %d", v)
		}
		if r.Intn(0) != 0 || r.Intn(-3) != 0 {
			t.Fatal("Intn of a non-positive n is not 0")
		}
	}
}
