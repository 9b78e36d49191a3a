package certwatch

import "time"

// Clock is the time source of a Watcher. Now is used for every validity and
// renewal decision; At for every wait (renewal, backstop re-read, debounce).
// The default is the system clock; tests drive a fake one. Implementations
// must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	// At returns a channel that receives once, when the clock reads t or
	// later (at once when it already does). The Watcher may abandon the
	// channel. An absolute time, not a duration, so that a fake clock
	// moved between Now and At cannot postpone the wake-up.
	At(t time.Time) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                  { return time.Now() }
func (systemClock) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }
