package guard

import (
	"context"
	"time"

	"github.com/credbroker/credbroker/internal/dirwatch"
)

// Reload re-reads every watched file now and swaps in what changed and is
// valid. Run calls it on file events and periodically; it is exported for
// callers that reload on a signal. Safe for concurrent use.
func (g *Guard) Reload() {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	for _, s := range g.sources {
		// Fingerprint first: a change between the two reads makes the next
		// reload see a new fingerprint and load again.
		fp := dirwatch.Fingerprint(s.files())
		if old, ok := g.prints[s]; ok && old == fp {
			continue
		}
		if err := s.load(g.now()); err != nil {
			g.log.Warn("inbound: reload failed, keeping the last good material", "files", s.files(), "error", err)
			g.prints[s] = fp // logged once per bad content, not on every tick
			continue
		}
		g.prints[s] = fp
		g.log.Info("inbound: reloaded", "files", s.files())
	}
}

// loadSource loads a source for the first time and remembers what it read.
func (g *Guard) loadSource(s source) error {
	fp := dirwatch.Fingerprint(s.files())
	if err := s.load(g.now()); err != nil {
		return err
	}
	g.sources = append(g.sources, s)
	g.prints[s] = fp
	return nil
}

// watch re-reads the sources' files when they change (internal/dirwatch:
// events on their directories, debounced, and a periodic re-read every
// resync interval) until ctx is done.
func (g *Guard) watch(ctx context.Context) error {
	var files []string
	for _, s := range g.sources {
		files = append(files, s.files()...)
	}
	w := dirwatch.New(files, dirwatch.WithDebounce(50*time.Millisecond), dirwatch.WithPollInterval(g.resync), dirwatch.WithLogger(g.log))
	// Whatever changed between New and the watcher's fingerprint.
	g.Reload()
	w.Run(ctx, g.Reload)
	return nil
}
