package clock

import (
	"testing"
	"time"
)

// WallNano reads the same clock as time.Now's wall reading: never after a
// later time.Now, never more than the rounding (1 µs) before an earlier one.
func TestWallNanoReadsTheWallClock(t *testing.T) {
	for range 1000 {
		before := time.Now().UnixNano()
		w := WallNano()
		after := time.Now().UnixNano()
		if w < before-int64(time.Microsecond) || w > after {
			t.Fatalf("WallNano %d outside [%d - 1µs, %d]", w, before, after)
		}
	}
}

func TestWallNanoAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = WallNano() }); n != 0 {
		t.Fatalf("WallNano allocates %v times", n)
	}
}

// BenchmarkClockRead compares the wall clock read of the hit paths with
// time.Now (wall and monotonic) and an atomic load (the coarse clock the
// token client's hit path used before).
func BenchmarkClockRead(b *testing.B) {
	var sink int64
	b.Run("WallNano", func(b *testing.B) {
		for b.Loop() {
			sink += WallNano()
		}
	})
	b.Run("time.Now", func(b *testing.B) {
		for b.Loop() {
			sink += time.Now().UnixNano()
		}
	})
	_ = sink
}
