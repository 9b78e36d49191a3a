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

// A synchronous clock runs due callbacks before Advance returns, earliest
// first and at the time the clock was moved to; a callback may read the
// clock and schedule another, which runs when the clock reaches it.
func TestSynchronousRunsCallbacksBeforeAdvanceReturns(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := fakeclock.NewSynchronous(t0)
	var order []string
	c.AfterFunc(2*time.Second, func() { order = append(order, "2s at "+c.Now().Sub(t0).String()) })
	c.AfterFunc(time.Second, func() {
		order = append(order, "1s")
		c.AfterFunc(time.Second, func() { order = append(order, "chained") }) // now is 3s: due at 4s
	})
	stopped := c.AfterFunc(time.Second, func() { order = append(order, "stopped") })
	stopped.Stop()
	expect := func(want ...string) {
		t.Helper()
		if len(order) != len(want) {
			t.Fatalf("ran %q, want %q", order, want)
		}
		for i := range want {
			if order[i] != want[i] {
				t.Fatalf("ran %q, want %q", order, want)
			}
		}
	}
	c.Advance(3 * time.Second)
	expect("1s", "2s at 3s")
	if c.Waiters() != 1 {
		t.Fatalf("%d waiters left, want the chained one", c.Waiters())
	}
	c.Advance(time.Second)
	expect("1s", "2s at 3s", "chained")
}
