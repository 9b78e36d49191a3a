package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher calls onChange when a watched file or directory changes: fsnotify
// events on the directories (Kubernetes swaps a ..data symlink, so files are
// watched through their directory), debounced, plus a periodic fingerprint
// comparison as a backstop for missed events.
type watcher struct {
	paths    []string
	debounce time.Duration
	poll     time.Duration
	log      *slog.Logger
	onChange func()
}

// run blocks until ctx is done.
func (w *watcher) run(ctx context.Context) {
	if len(w.paths) == 0 {
		return
	}
	last := fingerprint(w.paths)
	fw, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err != nil {
		w.log.Warn("file watching unavailable; relying on periodic re-reads", "err", err)
	} else {
		defer fw.Close()
		for _, d := range watchDirs(w.paths) {
			if err := fw.Add(d); err != nil {
				w.log.Debug("cannot watch directory", "dir", d, "err", err)
			}
		}
		events, errs = fw.Events, fw.Errors
	}
	poll := time.NewTicker(w.poll)
	defer poll.Stop()
	var debounce <-chan time.Time
	var timer *time.Timer
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !concerns(w.paths, ev.Name) {
				// Another file in a watched directory, such as a log file
				// the process itself writes: logging it would feed the
				// watch with its own events.
				continue
			}
			w.log.Debug("watched file changed", "path", ev.Name, "op", ev.Op.String())
			if timer == nil {
				timer = time.NewTimer(w.debounce)
			} else {
				timer.Reset(w.debounce)
			}
			debounce = timer.C
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.log.Debug("watch error", "err", err)
		case <-debounce:
			debounce = nil
			if fp := fingerprint(w.paths); fp != last {
				last = fp
				w.onChange()
			}
		case <-poll.C:
			if fp := fingerprint(w.paths); fp != last {
				last = fp
				w.onChange()
			}
		}
	}
}

// concerns reports whether an event on name can change one of paths: the
// file itself, anything inside a watched directory, or the ..data symlink
// (and its timestamped targets) through which Kubernetes swaps the files of
// a mounted directory. Events on other files of a file's directory do not.
func concerns(paths []string, name string) bool {
	name = filepath.Clean(name)
	base := filepath.Base(name)
	for _, p := range paths {
		p = filepath.Clean(p)
		if name == p || strings.HasPrefix(name, p+string(filepath.Separator)) {
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

// watchDirs returns the directories to watch for paths: the parent of a
// file, a directory itself and its subdirectories (one binding each).
func watchDirs(paths []string) []string {
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
			add(filepath.Dir(p)) // it may appear later
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
	}
	sort.Strings(out)
	return out
}

// fingerprint hashes the contents of paths (files, and the files of
// directories two levels deep), following symlinks.
func fingerprint(paths []string) [32]byte {
	h := sha256.New()
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		_, _ = io.WriteString(h, p)
		fi, err := os.Stat(p)
		if err != nil {
			_, _ = io.WriteString(h, "\x00missing")
			return
		}
		if fi.IsDir() {
			if depth >= 2 {
				return
			}
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "..") {
					continue // ..data and its timestamped twin: reached through the links
				}
				walk(filepath.Join(p, e.Name()), depth+1)
			}
			return
		}
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:8], uint64(fi.Size()))
		binary.LittleEndian.PutUint64(b[8:], uint64(fi.ModTime().UnixNano()))
		h.Write(b[:])
		if fi.Size() <= 1<<20 {
			if data, err := os.ReadFile(p); err == nil {
				h.Write(data)
			}
		}
	}
	for _, p := range paths {
		walk(p, 0)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
