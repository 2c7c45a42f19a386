package xdr

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

type testProvider struct{ id string }

func (p testProvider) ID() string                      { return p.id }
func (p testProvider) Name() string                    { return "Test " + p.id }
func (p testProvider) Capabilities() Capabilities      { return Capabilities{} }
func (p testProvider) Permissions() []Permission       { return nil }
func (p testProvider) Clouds() []Cloud                 { return nil }
func (p testProvider) Open(cfg Config) (Client, error) { return nil, errors.New("not for use") }

func TestRegister(t *testing.T) {
	Register(testProvider{"zz_test_b"})
	Register(testProvider{"zz_test_a"})
	if p, ok := Lookup("zz_test_a"); !ok || p.Name() != "Test zz_test_a" {
		t.Fatalf("Lookup = %v, %v", p, ok)
	}
	var order []string
	for _, p := range Providers() {
		order = append(order, p.ID())
	}
	if fmt.Sprint(order) != "[zz_test_a zz_test_b]" {
		t.Fatalf("Providers() order = %v", order)
	}
	for _, id := range []string{"", "UPPER", "zz_test_a", "has space", "x"} {
		t.Run("Refuses"+id, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("Register(%q) did not panic", id)
				}
			}()
			Register(testProvider{id})
		})
	}
}

func TestError(t *testing.T) {
	base := errors.New("429 from the platform")
	var err error = &Error{Kind: ErrThrottled, RetryAfter: 7 * time.Second, Err: base}
	err = fmt.Errorf("launch: %w", err)
	if !errors.Is(err, ErrThrottled) || errors.Is(err, ErrBusy) || !errors.Is(err, base) {
		t.Fatalf("errors.Is on %v broken", err)
	}
	if RetryAfter(err) != 7*time.Second || RetryAfter(base) != 0 {
		t.Fatalf("RetryAfter = %v", RetryAfter(err))
	}
	a := &Action{Status: ActionInProgress}
	if a.Done() {
		t.Fatal("in-progress action reported done")
	}
	for _, s := range []string{ActionSucceeded, ActionFailed, ActionTimedOut, ActionCancelled} {
		if !(&Action{Status: s}).Done() {
			t.Fatalf("%s not done", s)
		}
	}
}
