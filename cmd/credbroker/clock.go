package main

import "github.com/credbroker/credbroker/internal/clock"

// processClock is the clock of `run` and `mock`: the system clock. A test
// build (build tag credbroker_testclock, testclock.go) replaces it with the
// clock the end-to-end suites move; a release build has no other.
var processClock = func() (clock.Clock, error) { return clock.System, nil }
