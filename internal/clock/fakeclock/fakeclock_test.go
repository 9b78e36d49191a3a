package fakeclock_test

import (
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/clock/fakeclock"
)

func TestAtFiresWhenTheClockGetsThere(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := fakeclock.New(t0)
	past := c.At(t0)
	later := c.At(t0.Add(time.Minute))
	select {
	case got := <-past:
		if !got.Equal(t0) {
			t.Fatalf("past fired with %v", got)
		}
	default:
		t.Fatal("a time already reached must fire at once")
	}
	c.Advance(59 * time.Second)
	select {
	case <-later:
		t.Fatal("fired early")
	default:
	}
	if c.Waiters() != 1 {
		t.Fatalf("waiters = %d", c.Waiters())
	}
	c.Set(t0) // never backwards
	if !c.Now().Equal(t0.Add(59 * time.Second)) {
		t.Fatalf("clock went backwards to %v", c.Now())
	}
	c.Advance(time.Second)
	select {
	case got := <-later:
		if !got.Equal(t0.Add(time.Minute)) {
			t.Fatalf("fired with %v", got)
		}
	default:
		t.Fatal("did not fire")
	}
	if c.Waiters() != 0 {
		t.Fatalf("waiters = %d", c.Waiters())
	}
}
