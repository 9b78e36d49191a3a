package dirwatch_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/clock/fakeclock"
	"github.com/credbroker/credbroker/internal/dirwatch"
)

// start runs a watcher for paths (real fsnotify, no backstop unless opts
// add one) and returns how often onChange ran.
func start(t *testing.T, paths []string, opts ...dirwatch.Option) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	opts = append([]dirwatch.Option{dirwatch.WithPollInterval(0), dirwatch.WithDebounce(10 * time.Millisecond)}, opts...)
	w := dirwatch.New(paths, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, func() { n.Add(1) }) }()
	t.Cleanup(func() { cancel(); <-done })
	return &n
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The watches are in place once a write of a watched file is noticed; the
// marker makes that write distinct every time.
func settle(t *testing.T, g *WithT, n *atomic.Int32, file string) int32 {
	t.Helper()
	before := n.Load()
	g.Eventually(func() int32 {
		if v := n.Load(); v > before {
			return v
		}
		write(t, file, time.Now().String())
		return n.Load()
	}).WithTimeout(10 * time.Second).WithPolling(50 * time.Millisecond).Should(BeNumerically(">", before))
	return n.Load()
}

func TestAFileChangeIsReported(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "config.yaml")
	write(t, f, "a")
	n := start(t, []string{f})
	base := settle(t, g, n, f)
	write(t, f, "changed")
	g.Eventually(n.Load).WithTimeout(10 * time.Second).Should(BeNumerically(">", base))
}

func TestTheDataSymlinkSwapIsReported(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	gen := func(name, content string) {
		g.Expect(os.Mkdir(filepath.Join(dir, name), 0o700)).To(Succeed())
		write(t, filepath.Join(dir, name, "tls.crt"), content)
	}
	gen("..2026_01", "one")
	g.Expect(os.Symlink("..2026_01", filepath.Join(dir, "..data"))).To(Succeed())
	g.Expect(os.Symlink(filepath.Join("..data", "tls.crt"), filepath.Join(dir, "tls.crt"))).To(Succeed())
	write(t, filepath.Join(dir, "marker"), "")
	n := start(t, []string{filepath.Join(dir, "tls.crt"), filepath.Join(dir, "marker")})
	base := settle(t, g, n, filepath.Join(dir, "marker"))

	// What the kubelet does: a new generation, a temporary link, a rename.
	gen("..2026_02", "two")
	g.Expect(os.Symlink("..2026_02", filepath.Join(dir, "..data_tmp"))).To(Succeed())
	g.Expect(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))).To(Succeed())
	g.Expect(os.RemoveAll(filepath.Join(dir, "..2026_01"))).To(Succeed())
	g.Eventually(n.Load).WithTimeout(10 * time.Second).Should(BeNumerically(">", base))
}

func TestAMissingDirectoryIsWatchedOnceCreated(t *testing.T) {
	g := NewWithT(t)
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	n := start(t, []string{dir})
	// No backstop: only events can report this. Create the directories one
	// at a time until the watcher has seen them.
	g.Expect(os.MkdirAll(dir, 0o700)).To(Succeed())
	g.Eventually(func() int32 {
		write(t, filepath.Join(dir, "tls.crt"), time.Now().String())
		return n.Load()
	}).WithTimeout(10 * time.Second).WithPolling(50 * time.Millisecond).Should(BeNumerically(">", 0))
	base := n.Load()
	write(t, filepath.Join(dir, "tls.key"), "key")
	g.Eventually(n.Load).WithTimeout(10 * time.Second).Should(BeNumerically(">", base))
}

func TestADirectoryRemovedAndCreatedAgainIsWatchedAgain(t *testing.T) {
	g := NewWithT(t)
	dir := filepath.Join(t.TempDir(), "certs")
	g.Expect(os.Mkdir(dir, 0o700)).To(Succeed())
	write(t, filepath.Join(dir, "tls.crt"), "one")
	n := start(t, []string{dir})
	base := settle(t, g, n, filepath.Join(dir, "tls.crt"))

	// Gone and back before the watcher sees the removal: its old watch
	// died with the directory.
	g.Expect(os.RemoveAll(dir)).To(Succeed())
	g.Expect(os.Mkdir(dir, 0o700)).To(Succeed())
	g.Eventually(n.Load).WithTimeout(10 * time.Second).Should(BeNumerically(">", base))
	// Only events can report this (no backstop).
	settle(t, g, n, filepath.Join(dir, "tls.crt"))
	base = n.Load()
	write(t, filepath.Join(dir, "tls.key"), "key")
	g.Eventually(n.Load).WithTimeout(10 * time.Second).Should(BeNumerically(">", base))
}

func TestOtherFilesOfAWatchedDirectoryDoNotCount(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	f, other := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "app.log")
	write(t, f, "a")
	for _, tc := range []struct {
		name string
		want bool
	}{
		{f, true},
		{other, false},
		{filepath.Join(dir, "..data"), true},
		{filepath.Join(dir, "..2026_01"), true},
		{dir, true}, // the directory itself went away or came back
		{filepath.Join(dir, "config.yaml.swp"), false},
	} {
		g.Expect(dirwatch.Concerns([]string{f}, tc.name)).To(Equal(tc.want), tc.name)
	}
	// A watched directory: anything below it, and its ancestors' creation.
	g.Expect(dirwatch.Concerns([]string{filepath.Join(dir, "a", "b")}, filepath.Join(dir, "a"))).To(BeTrue())
	g.Expect(dirwatch.Concerns([]string{filepath.Join(dir, "a", "b")}, filepath.Join(dir, "a", "b", "c", "d"))).To(BeTrue())
	g.Expect(dirwatch.Concerns([]string{filepath.Join(dir, "a", "b")}, filepath.Join(dir, "c"))).To(BeFalse())

	// Through real events: the other file's events are not even counted
	// (they would start a debounce and a re-read each), the watched one's are.
	events := &eventLog{}
	n := start(t, []string{f}, dirwatch.WithLogger(slog.New(events)))
	settle(t, g, n, f)
	for i := 0; i < 20; i++ {
		write(t, other, time.Now().String())
	}
	write(t, f, "last")
	g.Eventually(func() bool { return events.saw(f, "last") }).WithTimeout(10 * time.Second).Should(BeTrue())
	g.Expect(events.count(other)).To(BeZero())
}

// eventLog records the paths of the watcher's "watched file changed" debug lines
// and, for each, the content of the path when it was logged.
type eventLog struct {
	mu    sync.Mutex
	paths []string
	data  []string
}

func (l *eventLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *eventLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *eventLog) WithGroup(string) slog.Handler            { return l }
func (l *eventLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "watched file changed" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "path" {
			b, _ := os.ReadFile(a.Value.String())
			l.mu.Lock()
			l.paths, l.data = append(l.paths, a.Value.String()), append(l.data, string(b))
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *eventLog) count(path string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.paths {
		if p == path {
			n++
		}
	}
	return n
}

func (l *eventLog) saw(path, data string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, p := range l.paths {
		if p == path && l.data[i] == data {
			return true
		}
	}
	return false
}

func TestTheBackstopReportsWithoutEvents(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "ca.crt")
	write(t, f, "a")
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	n := start(t, []string{dir}, dirwatch.WithoutFSNotify(), dirwatch.WithClock(clock), dirwatch.WithPollInterval(time.Minute))
	g.Eventually(clock.Waiters).Should(Equal(1)) // Run is waiting for the backstop
	write(t, f, "b")
	g.Expect(n.Load()).To(BeZero())
	clock.Advance(time.Minute)
	g.Eventually(n.Load).Should(Equal(int32(1)))
	g.Eventually(clock.Waiters).Should(Equal(1))
	clock.Advance(time.Minute) // nothing changed: no report
	g.Eventually(clock.Waiters).Should(Equal(1))
	g.Expect(os.Remove(f)).To(Succeed())
	clock.Advance(time.Minute)
	g.Eventually(n.Load).Should(Equal(int32(2)))
}

// Start reports a change made since New before it returns, and after that
// nothing is read without an event or the backstop: the order certwatch's
// Run relies on (its catch-up read, then Start) to have one moment after
// which a write is the backstop's alone.
func TestStartReportsWhatChangedSinceNewBeforeItReturns(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "ca.crt")
	write(t, f, "a")
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	w := dirwatch.New([]string{dir}, dirwatch.WithoutFSNotify(), dirwatch.WithClock(clock), dirwatch.WithPollInterval(time.Minute))
	write(t, f, "b")
	var n atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	stopped := w.Start(ctx, func() { n.Add(1) })
	defer func() { cancel(); <-stopped }()
	g.Expect(n.Load()).To(Equal(int32(1)), "the change since New, reported before Start returned")

	write(t, f, "c")
	g.Consistently(n.Load, 200*time.Millisecond).Should(Equal(int32(1)), "no event, no backstop yet")
	g.Eventually(func() int32 {
		clock.Advance(time.Minute) // again and again: the backstop may be armed after the first move
		return n.Load()
	}).Should(Equal(int32(2)))

	cancel()
	g.Eventually(stopped).Should(BeClosed())
}

func TestFingerprint(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	missing := dirwatch.Fingerprint([]string{f})
	write(t, f, "a")
	a := dirwatch.Fingerprint([]string{f})
	g.Expect(a).NotTo(Equal(missing))
	now := time.Now().Add(time.Hour)
	g.Expect(os.Chtimes(f, now, now)).To(Succeed())
	g.Expect(dirwatch.Fingerprint([]string{f})).To(Equal(a), "a touch is not a change")
	write(t, f, "b")
	g.Expect(dirwatch.Fingerprint([]string{f})).NotTo(Equal(a))
	g.Expect(dirwatch.Fingerprint([]string{dir})).NotTo(Equal(dirwatch.Fingerprint([]string{f})))
}
