package certwatch

import "github.com/credbroker/credbroker/internal/clock"

// Clock is the time source of a Watcher. Now is used for every validity and
// renewal decision; At(t) returns a channel that receives once the clock
// reads t or later, for every wait (renewal, backstop re-read, debounce).
// The default is the system clock; tests drive a fake one. Implementations
// must be safe for concurrent use.
type Clock = clock.Clock
