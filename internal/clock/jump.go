package clock

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the clock-jump check: how often the wall clock is compared
// with the monotonic one, and how far they may drift apart before every
// schedule is evaluated again.
const (
	DefaultJumpCheck     = time.Second
	DefaultJumpThreshold = 2 * time.Second
)

// Monotonic is implemented by clocks that also read a clock which never
// jumps: time elapsed since a fixed, arbitrary point. On Linux the
// monotonic clock stops while the host is suspended (and Go timers run on
// it), while the wall clock keeps going: comparing the two tells a suspend,
// a VM pause or a step of the wall clock.
type Monotonic interface {
	Monotonic() time.Duration
}

var monoStart = time.Now()

func (system) Monotonic() time.Duration { return time.Since(monoStart) }

// Sample is one reading of the wall clock and the monotonic clock.
type Sample struct {
	Wall time.Time
	Mono time.Duration
}

// Sampler is implemented by clocks that read both clocks at once (a test
// clock moved between two separate reads would look like a jump).
type Sampler interface {
	Sample() Sample
}

// Read samples c; ok is false when c does not implement Monotonic.
func Read(c interface{ Now() time.Time }) (s Sample, ok bool) {
	if sm, ok := c.(Sampler); ok {
		return sm.Sample(), true
	}
	m, ok := c.(Monotonic)
	if !ok {
		return Sample{Wall: c.Now()}, false
	}
	return Sample{Wall: c.Now(), Mono: m.Monotonic()}, true
}

// Jump returns how much farther the wall clock moved than the monotonic
// clock from prev to now: positive after a suspend, a VM pause or a step
// forward, negative after a step back. It is a pure function of its inputs.
func Jump(prev, now Sample) time.Duration {
	return now.Wall.Round(0).Sub(prev.Wall.Round(0)) - (now.Mono - prev.Mono)
}

// Jumped reports whether a jump exceeds threshold either way.
func Jumped(jump, threshold time.Duration) bool { return jump > threshold || jump < -threshold }

// JumpWatcher samples a clock every check interval and signals when the
// wall clock moved more than a threshold beside the monotonic clock, so
// that components waiting on the monotonic clock (timers, At) evaluate
// their schedules again. Safe for concurrent use.
type JumpWatcher struct {
	c         Clock
	every     time.Duration
	threshold time.Duration
	onJump    func(time.Duration)

	mu    sync.Mutex
	ch    chan struct{}
	jumps atomic.Int64
}

// NewJumpWatcher returns a watcher of c (which should implement
// Monotonic; without it no jump is ever seen). onJump, when not nil, is
// called with each jump (for a metric and a log line) before Changed's
// channel closes. every and threshold <= 0 mean the defaults.
func NewJumpWatcher(c Clock, every, threshold time.Duration, onJump func(time.Duration)) *JumpWatcher {
	if every <= 0 {
		every = DefaultJumpCheck
	}
	if threshold <= 0 {
		threshold = DefaultJumpThreshold
	}
	return &JumpWatcher{c: c, every: every, threshold: threshold, onJump: onJump, ch: make(chan struct{})}
}

// Changed returns a channel that is closed at the next jump. Take a new one
// after it closed.
func (w *JumpWatcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

// Jumps returns how many jumps were seen.
func (w *JumpWatcher) Jumps() int64 { return w.jumps.Load() }

// Run samples the clock until ctx ends; it returns nil then.
func (w *JumpWatcher) Run(ctx context.Context) error {
	prev, ok := Read(w.c)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.c.At(prev.Wall.Add(w.every)):
		}
		now, _ := Read(w.c)
		if d := Jump(prev, now); ok && Jumped(d, w.threshold) {
			w.signal(d)
		}
		prev = now
	}
}

func (w *JumpWatcher) signal(d time.Duration) {
	w.jumps.Add(1)
	if w.onJump != nil {
		w.onJump(d)
	}
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}
