// Package fakeclock is the manual clock.Clock for tests: time stands
// still until the test moves it, and channels from After fire when it does.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a fake clock. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	mono    time.Duration // advances with Advance and Set, not with Jump
	waiters []waiter
}

type waiter struct {
	at time.Time
	c  chan time.Time
}

// New returns a clock that reads t until moved.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// At returns a channel that receives when the clock reaches t (at once
// when it already has).
func (c *Clock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: t, c: ch})
	return ch
}

// After returns a channel that receives when the clock reaches now+d.
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.At(c.Now().Add(d)) }

// Advance moves the clock forward by d and fires every waiter due.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards) and fires every waiter due.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.mono += t.Sub(c.now)
		c.now = t
	}
	c.fireLocked()
}

// Monotonic reads the clock's monotonic time (clock.Monotonic): it moves
// with Advance and Set but not with Jump.
func (c *Clock) Monotonic() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// Jump moves the wall clock by d (either way) without moving the monotonic
// clock, as a host suspend or a step of the system clock does. Waiters move
// with it: the system clock's waits run on the monotonic clock, so a jump
// neither fires nor delays them.
func (c *Clock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for i := range c.waiters {
		c.waiters[i].at = c.waiters[i].at.Add(d)
	}
}

func (c *Clock) fireLocked() {
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.c <- c.now
			continue
		}
		kept = append(kept, w)
	}
	c.waiters = kept
}

// Waiters returns how many At channels have not fired yet.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}
