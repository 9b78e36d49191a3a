// Package testclock is the clock the end-to-end suites move inside the
// running binaries. It is linked only into test builds: cmd/credbroker
// imports it from a file with the build tag credbroker_testclock, so a
// release build (no tag) contains none of it (TestReleaseBuildHasNoTestClock
// in cmd/credbroker checks the symbols).
//
// The state is a small file shared by the test and every process it
// starts (credbroker run, credbroker mock), mapped into memory: two
// offsets read atomically on every Now, so all processes always agree.
//
//   - advance: simulated time that has passed. It moves the wall clock and
//     the monotonic clock: timers and At channels fall due, as if the
//     process had been running that long.
//   - jump: a step of the wall clock alone (a host suspend, a VM pause, an
//     NTP step). Timers do not move (Go timers run on the monotonic clock),
//     so only the clock-jump check notices it.
//
// Now reads the real clock plus both offsets; Monotonic the real monotonic
// clock plus advance. Waits (At, AfterFunc, Sleep) are kept on the
// monotonic reading, checked every few milliseconds of real time, so an
// advance fires them at once and a jump neither fires nor delays them.
package testclock

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/credbroker/credbroker/internal/clock"
)

// Env is the environment variable that names the state file in a test
// build; cmd/credbroker reads it. Without it a test build runs on the
// system clock.
const Env = "CREDBROKER_TESTCLOCK"

// size of the state file: a magic word, advance and jump (int64 ns each).
const size = 4096

const magic = 0x74636c6b_63726264 // "tclkcrbd"

// state is the mapped file.
type state struct {
	mem []byte
}

func (s *state) word(i int) *int64 { return (*int64)(unsafe.Pointer(&s.mem[8*i])) }
func (s *state) advance() time.Duration {
	return time.Duration(atomic.LoadInt64(s.word(1)))
}
func (s *state) jump() time.Duration { return time.Duration(atomic.LoadInt64(s.word(2))) }

func mapFile(path string, create bool) (*state, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testclock: %w", err)
	}
	defer f.Close()
	if create {
		if err := f.Truncate(size); err != nil {
			return nil, fmt.Errorf("testclock: %w", err)
		}
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		return nil, fmt.Errorf("testclock: %s is not a test clock file", path)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("testclock: mmap %s: %w", path, err)
	}
	s := &state{mem: mem}
	if create {
		atomic.StoreInt64(s.word(0), magic)
	} else if atomic.LoadInt64(s.word(0)) != magic {
		_ = syscall.Munmap(mem)
		return nil, fmt.Errorf("testclock: %s is not a test clock file", path)
	}
	return s, nil
}

// Control is the test's handle: it creates the state file and moves the
// clock of every process that opens it. Safe for concurrent use.
type Control struct {
	path string
	s    *state
}

// Create makes a new state file at path (which must not exist) with both
// offsets zero.
func Create(path string) (*Control, error) {
	s, err := mapFile(path, true)
	if err != nil {
		return nil, err
	}
	return &Control{path: path, s: s}, nil
}

// Path is the state file; give it to the processes in Env.
func (c *Control) Path() string { return c.path }

// Advance lets d of simulated time pass (d > 0): wall and monotonic
// clocks move, due timers fire.
func (c *Control) Advance(d time.Duration) {
	if d > 0 {
		atomic.AddInt64(c.s.word(1), int64(d))
	}
}

// Jump steps the wall clock alone by d (either way).
func (c *Control) Jump(d time.Duration) { atomic.AddInt64(c.s.word(2), int64(d)) }

// Now is the time every process of the test reads.
func (c *Control) Now() time.Time {
	return time.Now().Add(c.s.advance() + c.s.jump()).Round(0)
}

// Offsets returns the advance and the jump so far.
func (c *Control) Offsets() (advance, jump time.Duration) { return c.s.advance(), c.s.jump() }

// Clock is the process side: a clock.Clock (and clock.Monotonic) that
// reads the shared state. Safe for concurrent use.
type Clock struct {
	s     *state
	start time.Time
	every time.Duration

	mu      sync.Mutex
	waiters []*waiter
	kick    chan struct{}
}

type waiter struct {
	mono time.Duration // due when Monotonic reaches it
	c    chan time.Time
	f    func()
	done atomic.Bool
}

func (w *waiter) Stop() bool { return !w.done.Swap(true) }

var (
	_ clock.Clock     = (*Clock)(nil)
	_ clock.Monotonic = (*Clock)(nil)
	_ clock.Sampler   = (*Clock)(nil)
)

// DefaultCheck is how often (real time) a Clock looks for due waits.
const DefaultCheck = 2 * time.Millisecond

// Open maps the state file at path and starts the goroutine that fires
// waits; the clock lives as long as the process.
func Open(path string) (*Clock, error) {
	if path == "" {
		return nil, errors.New("testclock: no state file")
	}
	s, err := mapFile(path, false)
	if err != nil {
		return nil, err
	}
	c := &Clock{s: s, start: time.Now(), every: DefaultCheck, kick: make(chan struct{}, 1)}
	go c.loop()
	return c, nil
}

// Now reads the real wall clock moved by advance and jump.
func (c *Clock) Now() time.Time {
	return time.Now().Add(c.s.advance() + c.s.jump()).Round(0)
}

// Monotonic reads the real monotonic clock moved by advance only.
func (c *Clock) Monotonic() time.Duration { return time.Since(c.start) + c.s.advance() }

// Sample reads the wall and the monotonic clock with one reading of the
// offsets (clock.Sampler): an Advance between two separate reads would
// look like a jump.
func (c *Clock) Sample() clock.Sample {
	adv := c.s.advance()
	now := time.Now()
	return clock.Sample{Wall: now.Add(adv + c.s.jump()).Round(0), Mono: now.Sub(c.start) + adv}
}

// At returns a channel that receives when the clock reads t; the wait runs
// on the monotonic reading (as the system clock's does).
func (c *Clock) At(t time.Time) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.add(&waiter{mono: c.Monotonic() + t.Sub(c.Now()), c: ch})
	return ch
}

// AfterFunc calls f in its own goroutine once d has passed.
func (c *Clock) AfterFunc(d time.Duration, f func()) clock.Timer {
	w := &waiter{mono: c.Monotonic() + d, f: f}
	c.add(w)
	return w
}

func (c *Clock) add(w *waiter) {
	c.mu.Lock()
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Clock) loop() {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.kick:
		}
		c.fire()
	}
}

func (c *Clock) fire() {
	mono := c.Monotonic()
	c.mu.Lock()
	var due []*waiter
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		switch {
		case w.done.Load():
		case w.mono <= mono:
			due = append(due, w)
		default:
			kept = append(kept, w)
		}
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
	c.mu.Unlock()
	now := c.Now()
	for _, w := range due {
		if w.done.Swap(true) {
			continue
		}
		if w.f != nil {
			go w.f()
		} else {
			w.c <- now
		}
	}
}

// Pending returns how many waits have not fired (for tests of the clock).
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}
