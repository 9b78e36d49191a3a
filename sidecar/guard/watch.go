package guard

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// fingerprint hashes the files of a source so unchanged material is not
// reloaded (or logged) on every event.
func fingerprint(files []string) [32]byte {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			h.Write([]byte("\x00missing\x00" + f))
			continue
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Reload re-reads every watched file now and swaps in what changed and is
// valid. Run calls it on file events and periodically; it is exported for
// callers that reload on a signal. Safe for concurrent use.
func (g *Guard) Reload() {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	for _, s := range g.sources {
		// Fingerprint first: a change between the two reads makes the next
		// reload see a new fingerprint and load again.
		fp := fingerprint(s.files())
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
	fp := fingerprint(s.files())
	if err := s.load(g.now()); err != nil {
		return err
	}
	g.sources = append(g.sources, s)
	g.prints[s] = fp
	return nil
}

func (g *Guard) watch(ctx context.Context) error {
	if len(g.sources) == 0 {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		g.log.Warn("inbound: file watching unavailable; re-reading periodically only", "error", err)
	} else {
		defer w.Close()
		dirs := map[string]bool{}
		for _, s := range g.sources {
			for _, f := range s.files() {
				dirs[filepath.Dir(f)] = true
			}
		}
		for d := range dirs {
			if err := w.Add(d); err != nil {
				g.log.Warn("inbound: cannot watch directory; re-reading periodically", "dir", d, "error", err)
			}
		}
	}
	// Whatever changed between New and the watches being in place.
	g.Reload()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	tick := time.NewTicker(g.resync)
	defer tick.Stop()
	// Events come in bursts (Kubernetes swaps a ..data symlink with several
	// renames); settle briefly before re-reading.
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if settle == nil {
				settle = time.After(50 * time.Millisecond)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			g.log.Warn("inbound: file watch error", "error", err)
		case <-settle:
			settle = nil
			g.Reload()
		case <-tick.C:
			g.Reload()
		}
	}
}
