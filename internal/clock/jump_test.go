package clock_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/clock"
	"github.com/credbroker/credbroker/internal/clock/fakeclock"
)

func TestJump(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		wall, mono time.Duration // elapsed on each clock
		want       time.Duration
		jumped     bool
	}{
		{"in step", time.Second, time.Second, 0, false},
		{"late tick, no jump", 1500 * time.Millisecond, 1500 * time.Millisecond, 0, false},
		{"suspend for an hour", time.Hour + time.Second, time.Second, time.Hour, true},
		{"step back", -time.Minute + time.Second, time.Second, -time.Minute, true},
		{"drift within the threshold", 2 * time.Second, time.Second, time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clock.Jump(clock.Sample{Wall: t0, Mono: 10 * time.Second}, clock.Sample{Wall: t0.Add(tc.wall), Mono: 10*time.Second + tc.mono})
			if got != tc.want || clock.Jumped(got, clock.DefaultJumpThreshold) != tc.jumped {
				t.Fatalf("Jump = %v (jumped %v), want %v (%v)", got, clock.Jumped(got, clock.DefaultJumpThreshold), tc.want, tc.jumped)
			}
		})
	}
}

func TestJumpWatcherSignalsJumpsNotTicks(t *testing.T) {
	g := NewWithT(t)
	fc := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	waiting := func() bool { return fc.Waiters() == 1 }
	var seen atomic.Int64
	w := clock.NewJumpWatcher(fc, time.Second, 2*time.Second, func(d time.Duration) { seen.Store(int64(d)) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	changed := w.Changed()
	for i := 0; i < 5; i++ { // regular ticks: no jump
		g.Eventually(waiting).Should(BeTrue())
		fc.Advance(time.Second)
	}
	g.Eventually(waiting).Should(BeTrue())
	select {
	case <-changed:
		t.Fatal("a regular tick was taken for a jump")
	default:
	}
	fc.Jump(time.Hour) // a suspend: wall moves, monotonic does not
	fc.Advance(time.Second)
	<-changed
	if w.Jumps() != 1 || time.Duration(seen.Load()) != time.Hour {
		t.Fatalf("jumps %d, last %v; want 1, 1h", w.Jumps(), time.Duration(seen.Load()))
	}
	changed = w.Changed()
	g.Eventually(waiting).Should(BeTrue())
	fc.Jump(-time.Minute) // a step back: the next tick sees it
	fc.Advance(time.Minute + time.Second)
	<-changed
	if w.Jumps() != 2 || time.Duration(seen.Load()) != -time.Minute {
		t.Fatalf("jumps %d, last %v; want 2, -1m", w.Jumps(), time.Duration(seen.Load()))
	}
}
