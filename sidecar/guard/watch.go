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
// callers that reload on a signal.
func (g *Guard) Reload() {
	g.reload(nil)
}

func (g *Guard) reload(prints map[source][32]byte) {
	for _, s := range g.sources {
		fp := fingerprint(s.files())
		if prints != nil {
			if old, ok := prints[s]; ok && old == fp {
				continue
			}
		}
		if err := s.load(g.now()); err != nil {
			g.log.Warn("inbound: reload failed, keeping the last good material", "files", s.files(), "error", err)
			continue
		}
		if prints != nil {
			if _, seen := prints[s]; seen {
				g.log.Info("inbound: reloaded", "files", s.files())
			}
			prints[s] = fp
		}
	}
}

func (g *Guard) watch(ctx context.Context) error {
	prints := map[source][32]byte{}
	for _, s := range g.sources {
		prints[s] = fingerprint(s.files())
	}
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
			g.reload(prints)
		case <-tick.C:
			g.reload(prints)
		}
	}
}
