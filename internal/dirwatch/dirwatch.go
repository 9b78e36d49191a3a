// Package dirwatch is the one file watcher of this module: certwatch's
// certificate directories, the sidecar's configuration, bindings and CA
// files, and the inbound guard's CA bundles all use it, so they notice a
// change the same way.
//
// A Watcher watches paths (files or directories) through directories, never
// through the files themselves: Kubernetes updates a mounted secret by
// swapping a "..data" symlink, after which a watch on the old file would be
// stale. It watches
//   - the parent directory of a file,
//   - a directory and its subdirectories (one binding each, say),
//   - the nearest existing ancestor of a path that does not exist yet, until
//     it appears.
//
// Only events that can change a path count: the path itself, anything
// below a watched directory, the "..data" symlink and its timestamped
// targets next to a file, and the creation of a missing path's ancestors.
// Events on other files of a watched directory (a log file the process
// writes, say) are ignored. Chmod-only events are ignored.
//
// A counting event starts the debounce; when it ends the paths are
// fingerprinted (Fingerprint) and onChange runs when the fingerprint
// differs from the last one. Further events do not extend the debounce, so
// a stream of writes cannot postpone a reload forever. Every poll interval
// the watches are brought up to date (a directory that appeared is watched)
// and the fingerprint compared again: the backstop for missed events and
// for platforms without fsnotify.
package dirwatch

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/credbroker/credbroker/internal/clock"
)

// Defaults.
const (
	DefaultDebounce = 100 * time.Millisecond
	DefaultPoll     = time.Minute
)

// Watcher reports changes of a set of paths. Make one with New; Run it once.
type Watcher struct {
	options
	paths []string
	last  [32]byte
}

// Option configures a Watcher.
type Option func(*options)

type options struct {
	debounce time.Duration
	poll     time.Duration
	clock    clock.Clock
	log      *slog.Logger
	noNotify bool
}

// WithDebounce sets how long after the first counting event the paths are
// re-read (default 100ms).
func WithDebounce(d time.Duration) Option { return func(o *options) { o.debounce = d } }

// WithPollInterval sets the backstop re-read interval (default one minute;
// 0 turns it off).
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// WithClock sets the clock that times the debounce and the backstop.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger (debug level for events, warn when fsnotify is
// unavailable). The default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithoutFSNotify relies on the backstop alone.
func WithoutFSNotify() Option { return func(o *options) { o.noNotify = true } }

// New returns a Watcher for paths and takes their fingerprint: Run reports
// every change after New returns, including one made before Run's watches
// are in place.
func New(paths []string, opts ...Option) *Watcher {
	w := &Watcher{
		paths: cleanAll(paths),
		options: options{
			debounce: DefaultDebounce,
			poll:     DefaultPoll,
			clock:    clock.System,
			log:      slog.New(slog.DiscardHandler),
		},
	}
	for _, o := range opts {
		o(&w.options)
	}
	w.last = Fingerprint(w.paths)
	return w
}

func cleanAll(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if p != "" {
			out = append(out, filepath.Clean(p))
		}
	}
	return out
}

// Run watches until ctx is done: Start without the goroutine, on the
// caller's. onChange runs one call at a time, each time the fingerprint of
// the paths has changed. With no paths Run just waits for ctx.
func (w *Watcher) Run(ctx context.Context, onChange func()) {
	w.begin(onChange)(ctx)
}

// Start puts the watches in place and reports a change made since New:
// that onChange call, when there is one, runs on the caller's goroutine
// before Start returns. It then watches in a goroutine of its own until
// ctx is done, calling onChange there, one call at a time; the returned
// channel is closed when that goroutine has returned. From Start's return
// on, a change is reported only after a file event (and the debounce) or
// at the backstop, so a caller (or its test) that writes the paths after
// Start returned knows which of them will report it. Call Start (or Run)
// once.
func (w *Watcher) Start(ctx context.Context, onChange func()) <-chan struct{} {
	watch := w.begin(onChange)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		watch(ctx)
	}()
	return stopped
}

// begin puts the watches in place and reports a change made since New; it
// returns the watching, which runs until ctx is done.
func (w *Watcher) begin(onChange func()) func(ctx context.Context) {
	if len(w.paths) == 0 {
		return func(ctx context.Context) { <-ctx.Done() }
	}
	fw := w.newNotify()
	watched := map[string]bool{}
	sync := func() {
		if fw == nil {
			return
		}
		// A directory created between Dirs and the Add of its parent's
		// watch has no event to announce it: look again until the set
		// holds still (a missing path's directories being created one by
		// one, say), so that the check after sync never sees a change
		// whose directory is left unwatched.
		for range 8 {
			want := Dirs(w.paths)
			for _, d := range want {
				if watched[d] {
					continue
				}
				if err := fw.Add(d); err != nil {
					w.log.Debug("dirwatch: cannot watch directory yet", "dir", d, "error", err.Error())
					continue
				}
				watched[d] = true
			}
			keep := map[string]bool{}
			for _, d := range want {
				keep[d] = true
			}
			for d := range watched {
				if !keep[d] {
					_ = fw.Remove(d)
					delete(watched, d)
				}
			}
			if slices.Equal(Dirs(w.paths), want) {
				return
			}
		}
	}
	check := func() {
		if fp := Fingerprint(w.paths); fp != w.last {
			w.last = fp
			onChange()
		}
	}
	sync()
	check() // what changed between New and the watches being in place

	return func(ctx context.Context) {
		if fw != nil {
			defer fw.Close()
		}
		w.loop(ctx, fw, sync, check, watched)
	}
}

// loop is the watching: file events, the debounce and the backstop.
func (w *Watcher) loop(ctx context.Context, fw *fsnotify.Watcher, sync, check func(), watched map[string]bool) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw != nil {
		events, errs = fw.Events, fw.Errors
	}
	var pollC, debounceC <-chan time.Time
	for {
		if pollC == nil && w.poll > 0 {
			pollC = w.clock.At(w.clock.Now().Add(w.poll))
		}
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op == fsnotify.Chmod || !Concerns(w.paths, ev.Name) {
				continue
			}
			w.log.Debug("watched file changed", "path", ev.Name, "op", ev.Op.String())
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				// A watched directory that went away took its watch with it,
				// even when it is back by now: watch it afresh.
				if name := filepath.Clean(ev.Name); watched[name] {
					_ = fw.Remove(name)
					delete(watched, name)
				}
			}
			if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				sync() // a directory appeared or went away
			}
			if debounceC == nil {
				debounceC = w.clock.At(w.clock.Now().Add(w.debounce))
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.log.Warn("dirwatch: file watch error; the backstop re-read continues", "error", err.Error())
		case <-debounceC:
			debounceC = nil
			sync()
			check()
		case <-pollC:
			pollC = nil
			sync()
			check()
		}
	}
}

func (w *Watcher) newNotify() *fsnotify.Watcher {
	if w.noNotify {
		return nil
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.log.Warn("dirwatch: file events unavailable; relying on the backstop re-read", "error", err.Error())
		return nil
	}
	return fw
}

// Concerns reports whether an event on name can change one of paths: the
// path itself, anything below it, the "..data" symlink (and its timestamped
// targets) beside it through which Kubernetes swaps the files of a mounted
// directory, the target of a path that is a symlink, or an ancestor of a
// path (a missing directory being created). Events on other files of a
// file's directory do not.
func Concerns(paths []string, name string) bool {
	name = filepath.Clean(name)
	base := filepath.Base(name)
	sep := string(filepath.Separator)
	for _, p := range paths {
		p = filepath.Clean(p)
		if name == p || strings.HasPrefix(name, p+sep) || strings.HasPrefix(p, name+sep) {
			return true
		}
		if filepath.Dir(name) == filepath.Dir(p) && strings.HasPrefix(base, "..") {
			return true
		}
		if t, err := filepath.EvalSymlinks(p); err == nil && filepath.Clean(t) == name {
			return true
		}
	}
	return false
}

// Dirs returns the directories to watch for paths: the parent of a file, a
// directory itself and its subdirectories (not the ".." ones: they are
// reached through their links), the directory of a symlink's target outside
// the path's own directory, and the nearest existing ancestor of a path
// that does not exist.
func Dirs(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(d string) {
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			add(existingAncestor(p))
		case fi.IsDir():
			add(p)
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				sub := filepath.Join(p, e.Name())
				if st, err := os.Stat(sub); err == nil && st.IsDir() && !strings.HasPrefix(e.Name(), "..") {
					add(sub)
				}
			}
		default:
			add(filepath.Dir(p))
		}
		// A symlink to somewhere else: its target changes there. (The
		// "..data" links of a Kubernetes volume stay in the same tree.)
		if t, err := filepath.EvalSymlinks(p); err == nil {
			if fi, err := os.Stat(t); err == nil && !fi.IsDir() {
				t = filepath.Dir(t)
			}
			if base := filepath.Dir(p); t != base && !strings.HasPrefix(t, base+string(filepath.Separator)) {
				add(t)
			}
		}
	}
	sort.Strings(out)
	return out
}

func existingAncestor(p string) string {
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

// maxHashed is the largest file whose content is hashed; larger files count
// by size and modification time.
const maxHashed = 1 << 20

// Fingerprint hashes paths: the content of files (following symlinks; size
// and modification time for files over 1 MiB), the files of directories two
// levels deep (not the ".." entries: their files are reached through the
// links), and which paths are missing. Equal fingerprints mean nothing a
// reader would see has changed.
func Fingerprint(paths []string) [32]byte {
	h := sha256.New()
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		_, _ = io.WriteString(h, p+"\x00")
		fi, err := os.Stat(p)
		if err != nil {
			_, _ = io.WriteString(h, "\x00missing\x00")
			return
		}
		if fi.IsDir() {
			_, _ = io.WriteString(h, "\x00dir\x00")
			if depth >= 2 {
				return
			}
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				if !strings.HasPrefix(e.Name(), "..") {
					walk(filepath.Join(p, e.Name()), depth+1)
				}
			}
			return
		}
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(fi.Size()))
		h.Write(n[:])
		if fi.Size() > maxHashed {
			binary.LittleEndian.PutUint64(n[:], uint64(fi.ModTime().UnixNano()))
			h.Write(n[:])
			return
		}
		data, err := os.ReadFile(p)
		if err != nil {
			_, _ = io.WriteString(h, "\x00unreadable\x00")
			return
		}
		h.Write(data)
	}
	for _, p := range paths {
		walk(p, 0)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
