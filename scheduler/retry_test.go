package scheduler

import (
	"testing"
	"time"
)

// TestRetryAfterIsBounded: a launch that met passing errors must not wait River's default
// fourth-power backoff (256 s before its fifth attempt), and its ten attempts must together
// stay within a few minutes, so the acquisition fails with a reason rather than sits queued.
func TestRetryAfterIsBounded(t *testing.T) {
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{{1, time.Second}, {2, 4 * time.Second}, {5, 25 * time.Second}, {6, 30 * time.Second}, {1000, 30 * time.Second}} {
		if got := retryAfter(c.attempt); got != c.want {
			t.Errorf("retryAfter(%d) = %s, want %s", c.attempt, got, c.want)
		}
	}
	var total time.Duration
	for a := 1; a < (LaunchArgs{}).InsertOpts().MaxAttempts; a++ {
		total += retryAfter(a)
	}
	if total > 5*time.Minute {
		t.Errorf("a launch's attempts span %s before it fails", total)
	}
}
