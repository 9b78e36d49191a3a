package certwatch

import (
	"context"
	"fmt"
	"time"

	"github.com/credbroker/credbroker/internal/dirwatch"
)

// Run watches the source and renews the certificate until ctx is done or
// Close is called; it then returns nil. File events on the directory (not
// the files: a Kubernetes "..data" swap replaces them) trigger a re-read
// after the debounce; the backstop re-reads every poll interval in case an
// event was missed. Run may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return ErrClosed
	case w.running:
		w.mu.Unlock()
		return fmt.Errorf("%w: Run called twice", ErrBadConfig)
	}
	w.running = true
	w.wg.Add(1)
	w.mu.Unlock()
	defer w.wg.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	// A directory source is watched by internal/dirwatch (events on the
	// directory, debounced, and the backstop re-read); a loader source is
	// re-read every poll interval. Run starts in order: the watcher takes
	// the directory's fingerprint, Run reads the source (what changed
	// between New and Run), and Start puts the watches in place and reads
	// again if anything changed since the fingerprint. After that nothing
	// reads the source but a file event or the backstop (or Reload), and
	// Run logs "certwatch: watching" (debug): a test that writes a pair
	// after that line knows which of them took it.
	var dw *dirwatch.Watcher
	if w.dir != "" {
		dopts := []dirwatch.Option{dirwatch.WithDebounce(w.debounce), dirwatch.WithPollInterval(w.poll), dirwatch.WithClock(w.clock), dirwatch.WithLogger(w.log)}
		if w.noNotify {
			dopts = append(dopts, dirwatch.WithoutFSNotify())
		}
		dw = dirwatch.New([]string{w.dir}, dopts...)
	}

	_ = w.reload(ctx) // catch what changed between New and Run

	if dw != nil {
		stopped := dw.Start(ctx, func() { _ = w.Reload(ctx) })
		defer func() { cancel(); <-stopped }()
	}
	w.log.Debug("certwatch: watching", "source", w.source(), "backstop", w.poll.String(), "file_events", w.dir != "" && !w.noNotify)

	var pollC <-chan time.Time
	for {
		now := w.clock.Now()
		l := w.cur.Load()
		w.mu.Lock()
		at := w.nextLocked(now, l)
		w.mu.Unlock()
		var timerC <-chan time.Time
		if !at.IsZero() {
			timerC = w.clock.At(at)
		}
		if pollC == nil && w.poll > 0 && w.dir == "" {
			pollC = w.clock.At(now.Add(w.poll))
		}
		var jumpC <-chan struct{}
		if w.jumps != nil {
			jumpC = w.jumps.Changed()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-jumpC: // the wall clock jumped: wait again from the new now
			w.log.Info("the wall clock jumped; re-evaluating the renewal schedule", "certificate", w.name)
		case <-w.kick:
		case <-pollC:
			pollC = nil
			_ = w.reload(ctx)
		case <-timerC:
			w.onTimer(ctx)
		}
	}
}

// Close stops Run and waits for it to return. It is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.done)
	}
	w.mu.Unlock()
	w.wg.Wait()
	return nil
}
