// Package fakeclock is the manual clock.Clock for tests: time stands
// still until the test moves it, and channels from After fire when it does.
package fakeclock

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/internal/clock"
)

// Clock is a fake clock. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	mono    time.Duration // advances with Advance and Set, not with Jump
	waiters []waiter
	sync    bool // AfterFunc callbacks run in the goroutine that moves the clock
}

type waiter struct {
	at time.Time
	c  chan time.Time
	f  *timer // an AfterFunc when not nil
}

type timer struct {
	f    func()
	done atomic.Bool
}

func (t *timer) Stop() bool { return !t.done.Swap(true) }

var _ clock.Clock = (*Clock)(nil)

// New returns a clock that reads t until moved.
func New(t time.Time) *Clock { return &Clock{now: t} }

// NewSynchronous is New whose AfterFunc callbacks, when the clock is
// moved (Advance, Set), run in the goroutine that moves it, earliest
// first, before the call returns, so that a test sees their effect at
// once; a callback due when it is scheduled (d <= 0) still runs in its
// own goroutine.
func NewSynchronous(t time.Time) *Clock { return &Clock{now: t, sync: true} }

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

// AfterFunc calls f in its own goroutine when the clock reaches now+d.
func (c *Clock) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{f: f}
	w := waiter{at: c.now.Add(d), f: t}
	if d <= 0 {
		c.fire(w)
		return t
	}
	c.waiters = append(c.waiters, w)
	return t
}

func (c *Clock) fire(w waiter) {
	if w.f == nil {
		w.c <- c.now
		return
	}
	if !w.f.done.Swap(true) {
		go w.f.f()
	}
}

// After returns a channel that receives when the clock reaches now+d.
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.At(c.Now().Add(d)) }

// Advance moves the clock forward by d and fires every waiter due.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards) and fires every waiter due.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.now) {
		c.mono += t.Sub(c.now)
		c.now = t
	}
	if !c.sync {
		c.fireLocked()
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.runDue()
}

// runDue fires the due waiters one at a time, earliest first, running
// AfterFunc callbacks outside the lock (a callback may read or move the
// clock, or schedule another that is due at once).
func (c *Clock) runDue() {
	for {
		c.mu.Lock()
		idx := -1
		for i, w := range c.waiters {
			if !w.at.After(c.now) && (idx < 0 || w.at.Before(c.waiters[idx].at)) {
				idx = i
			}
		}
		if idx < 0 {
			c.mu.Unlock()
			return
		}
		w := c.waiters[idx]
		c.waiters = append(c.waiters[:idx], c.waiters[idx+1:]...)
		if w.f == nil {
			w.c <- c.now
			c.mu.Unlock()
			continue
		}
		c.mu.Unlock()
		if !w.f.done.Swap(true) {
			w.f.f()
		}
	}
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
			c.fire(w)
			continue
		}
		kept = append(kept, w)
	}
	c.waiters = kept
}

// Waiters returns how many At channels and AfterFunc calls have not fired
// yet (a stopped AfterFunc counts until its time).
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}
