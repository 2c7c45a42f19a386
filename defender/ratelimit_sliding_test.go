package defender

import (
	"testing"
	"time"
)

// TestSlidingWindow: the runliveresponse gate lets exactly n calls through in any span, each as
// soon as the call n places before it leaves the span, and a cancelled booking frees its place.
func TestSlidingWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &sliding{n: 3, span: time.Minute}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		now  time.Duration
		want time.Duration // delay
	}{
		{0, 0}, {time.Second, 0}, {2 * time.Second, 0}, // three at once
		{3 * time.Second, 57 * time.Second}, // the fourth waits for the first to leave
		{4 * time.Second, 57 * time.Second}, // the fifth for the second: at 61 s
	} {
		d, _ := w.reserve(at(tc.now))
		if d != tc.want {
			t.Fatalf("reserve at %s = %s, want %s", tc.now, d, tc.want)
		}
	}
	// A booking given back frees its place for the next caller.
	w2 := &sliding{n: 1, span: time.Minute}
	w2.reserve(at(0))
	d, cancel := w2.reserve(at(time.Second))
	if d != 59*time.Second {
		t.Fatalf("second booking waits %s", d)
	}
	cancel()
	if d, _ := w2.reserve(at(2 * time.Second)); d != 58*time.Second {
		t.Fatalf("after a cancel, the next waits %s, want 58s (behind the first call only)", d)
	}
	// Never more than n in any span, however calls arrive.
	w3 := &sliding{n: 10, span: time.Minute}
	var sent []time.Time
	for i := 0; i < 200; i++ {
		now := at(time.Duration(i) * 700 * time.Millisecond)
		d, _ := w3.reserve(now)
		sent = append(sent, now.Add(d))
	}
	for i := 10; i < len(sent); i++ {
		if sent[i].Sub(sent[i-10]) < time.Minute {
			t.Fatalf("calls %d and %d are %s apart: 11 in a minute", i-10, i, sent[i].Sub(sent[i-10]))
		}
	}
}
