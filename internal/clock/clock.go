// Package clock is the time source of the module's background components
// (certwatch, dirwatch): Now for every decision, At for every wait. Tests
// drive clock/fakeclock instead of sleeping.
package clock

import "time"

// Clock is a time source. Now is used for every decision; At for every wait.
// Implementations must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	// At returns a channel that receives once, when the clock reads t or
	// later (at once when it already does). The caller may abandon the
	// channel. An absolute time, not a duration, so that a fake clock
	// moved between Now and At cannot postpone the wake-up.
	At(t time.Time) <-chan time.Time
}

// System is the real clock.
var System Clock = system{}

type system struct{}

func (system) Now() time.Time                  { return time.Now() }
func (system) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }
