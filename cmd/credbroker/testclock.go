//go:build credbroker_testclock

package main

import (
	"fmt"
	"os"

	"github.com/credbroker/credbroker/internal/clock"
	"github.com/credbroker/credbroker/internal/clock/testclock"
)

// A test build reads its clock from the state file named by
// CREDBROKER_TESTCLOCK (docs/testing.md); without the variable it runs on
// the system clock.
func init() {
	processClock = func() (clock.Clock, error) {
		path := os.Getenv(testclock.Env)
		if path == "" {
			return clock.System, nil
		}
		c, err := testclock.Open(path)
		if err != nil {
			return nil, badInput(fmt.Errorf("%s: %w", testclock.Env, err))
		}
		return c, nil
	}
}
