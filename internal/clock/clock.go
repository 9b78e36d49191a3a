// Package clock is the one time source of the module's background
// components (tokenclient, certwatch, dirwatch, connector heartbeats, the
// broker's schedules): Now for every decision, At and AfterFunc for every
// wait. Tests drive clock/fakeclock (or a package's own fake) instead of
// sleeping; the end-to-end suites drive the binary through a test-only
// clock compiled in with the credbroker_testclock build tag (see
// internal/clock/testclock and docs/testing.md).
package clock

import (
	"context"
	"time"
)

// Clock is a time source. Now is used for every decision; At and AfterFunc
// for every wait. Implementations must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	// At returns a channel that receives once, when the clock reads t or
	// later (at once when it already does). The caller may abandon the
	// channel. An absolute time, not a duration, so that a fake clock
	// moved between Now and At cannot postpone the wake-up.
	At(t time.Time) <-chan time.Time
	// AfterFunc calls f in its own goroutine (or synchronously from the
	// call that advances a fake clock) once d has passed on the clock.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a scheduled call; Stop cancels it and reports whether it had
// not run yet. *time.Timer implements it.
type Timer interface{ Stop() bool }

// Sleeper is implemented by clocks with their own Sleep (a fake that
// records the waits); Sleep uses it when present.
type Sleeper interface {
	Sleep(ctx context.Context, d time.Duration) error
}

// Sleep waits d on c, or returns ctx.Err() when ctx ends first.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if s, ok := c.(Sleeper); ok {
		return s.Sleep(ctx, d)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	select {
	case <-c.At(c.Now().Add(d)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// System is the real clock.
var System Clock = system{}

type system struct{}

func (system) Now() time.Time                            { return time.Now() }
func (system) At(t time.Time) <-chan time.Time           { return time.After(time.Until(t)) }
func (system) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
func (system) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
