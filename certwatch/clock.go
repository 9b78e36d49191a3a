package certwatch

import "time"

// Clock is the time source of a Watcher. Now is used for every validity and
// renewal decision; After for every wait (renewal, backstop re-read,
// debounce). The default is the system clock; tests drive a fake one.
// Implementations must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once, d from now (at once
	// when d <= 0). The Watcher may abandon the channel.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
