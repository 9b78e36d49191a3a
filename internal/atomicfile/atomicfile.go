// Package atomicfile writes a set of files into a directory so that a reader
// (or a crash) never sees a mix of old and new contents.
//
// WriteDir uses the layout of the Kubernetes atomic writer:
//
//	dir/..2026_11_23_18_00_00.123456789/<name>   one generation of files
//	dir/..data -> ..2026_11_23_18_00_00.123456789
//	dir/<name> -> ..data/<name>
//
// A new generation is written into a fresh directory, every file and the
// directory are fsynced, and then the "..data" symlink is replaced with one
// rename(2): before it the old set is live, after it the new one. Readers
// that open dir/<name> through the per-name symlinks always see one
// generation, except in one case: a directory that held plain files before
// its first WriteDir is converted name by name, and a crash in the middle of
// that leaves some top-level names on the new generation and some on the old
// plain files. "..data" is already complete then, so a reader that checks a
// key against its certificate can fall back to DataDir (certwatch does).
//
// Files not named in a WriteDir are carried into the new generation only
// when WithKeep names them and they are regular files of the live
// generation; plain top-level files are left alone.
//
// The directory may be shared (a Kubernetes emptyDir is 0777 and its owner
// cannot change that), so WriteDir writes only into what it creates itself:
// dir when missing (0700), and each generation directory (0700, checked
// after creation, files created relative to it). It follows "..data" only
// to a generation directory inside dir: a link that points anywhere else is
// refused (ErrUnsafeLayout), never read. Inspect reports this, and whether
// dir is writable by group or others, before anything is written.
package atomicfile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DataLink is the name of the symlink that points at the live generation.
const DataLink = "..data"

// genPrefix starts the name of every generation directory and temporary
// entry WriteDir makes; names that start with ".." are never the name of a
// file in the set.
const genPrefix = ".."

// File is one file of a set.
type File struct {
	// Name is a plain file name: no directory separators, not starting
	// with "..".
	Name string
	// Data is the content.
	Data []byte
	// Mode is the permission; 0 means 0o644. Private keys use 0o600.
	Mode fs.FileMode
}

// Step names a point between two steps of WriteDir, for the step hook.
type Step string

// The steps of WriteDir, in order. StepWrote and StepLinked occur once per
// file (the hook receives the file name with them).
const (
	StepCreatedGeneration Step = "created-generation" // empty generation dir exists
	StepWrote             Step = "wrote"              // one file written and fsynced
	StepSyncedGeneration  Step = "synced-generation"  // generation dir fsynced
	StepTempLink          Step = "temp-link"          // temporary ..data symlink made
	StepSwapped           Step = "swapped"            // ..data renamed into place and dir fsynced
	StepLinked            Step = "linked"             // one top-level name points into ..data
	StepSyncedDir         Step = "synced-dir"         // top-level links fsynced
	StepCleaned           Step = "cleaned"            // old generations removed
)

// Hook is called between the steps of WriteDir with the step just done and,
// for StepWrote and StepLinked, the file name. When it returns an error,
// WriteDir stops at once, without cleaning up, and returns that error: tests
// use it to simulate a crash at every point.
type Hook func(step Step, name string) error

// Option configures WriteDir.
type Option func(*options)

type options struct {
	hook Hook
	now  func() time.Time
	keep []string
}

// WithKeep names the files of the live generation that a WriteDir not
// writing them carries into the new generation (regular files only, at most
// MaxKeepSize bytes each). Other files of the live generation are dropped.
func WithKeep(names ...string) Option { return func(o *options) { o.keep = append(o.keep, names...) } }

// MaxKeepSize bounds a file WithKeep carries.
const MaxKeepSize = 1 << 20

// WithHook installs a hook called between steps (for crash tests).
func WithHook(h Hook) Option { return func(o *options) { o.hook = h } }

// WithNow sets the clock used to name generation directories.
func WithNow(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Error reports a failed WriteDir; Op names the step and Path the file.
type Error struct {
	Op   string
	Path string
	Err  error
}

func (e *Error) Error() string { return "atomicfile: " + e.Op + " " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// DataDir returns dir/..data when dir holds a WriteDir or Kubernetes layout
// whose "..data" points to a generation directory inside dir, and ""
// otherwise (no layout, or a link that leads elsewhere).
func DataDir(dir string) string {
	if live, err := liveGeneration(dir); err == nil && live != "" {
		return filepath.Join(dir, DataLink)
	}
	return ""
}

// liveGeneration returns the name of the generation "..data" points to, ""
// when dir has no "..data" link or it dangles, and ErrUnsafeLayout when
// the link leads anywhere but a directory directly inside dir.
func liveGeneration(dir string) (string, error) {
	target, err := os.Readlink(filepath.Join(dir, DataLink))
	if err != nil {
		return "", nil // no link (or not a link): no generation to follow
	}
	if target != filepath.Base(target) || !strings.HasPrefix(target, genPrefix) || target == ".." || target == DataLink {
		return "", fmt.Errorf("%w (%s)", ErrUnsafeLayout, dir)
	}
	fi, err := os.Lstat(filepath.Join(dir, target))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", &Error{"stat", filepath.Join(dir, target), err}
	case !fi.IsDir():
		return "", fmt.Errorf("%w (%s)", ErrUnsafeLayout, dir)
	}
	return target, nil
}

// Info is what Inspect finds.
type Info struct {
	// Exists is false when dir does not exist yet (WriteDir creates it 0700).
	Exists bool
	// Mode is dir's mode.
	Mode fs.FileMode
	// Loose is true when group or others may write dir: they can replace
	// its top-level links (though not the contents of a generation).
	Loose bool
}

// Inspect checks dir the way WriteDir will, without changing anything: an
// error wrapping ErrUnsafeLayout when its "..data" leads outside it, or
// when dir is not a directory.
func Inspect(dir string) (Info, error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, nil
	}
	if err != nil {
		return Info{}, &Error{"stat", dir, err}
	}
	if !fi.IsDir() {
		return Info{}, &Error{"use", dir, errors.New("not a directory")}
	}
	info := Info{Exists: true, Mode: fi.Mode(), Loose: fi.Mode().Perm()&0o022 != 0}
	if _, err := liveGeneration(dir); err != nil {
		return info, err
	}
	return info, nil
}

// WriteDir writes files into dir as one generation (see the package doc).
// dir is created (0o700) when missing. It checks ctx before each step. One
// writer at a time per directory: WriteDir removes generations it does not
// know, which would include another writer's unfinished one.
func WriteDir(ctx context.Context, dir string, files []File, opts ...Option) error {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	step := func(s Step, name string) error {
		if o.hook != nil {
			if err := o.hook(s, name); err != nil {
				return err
			}
		}
		return ctx.Err()
	}
	seen := map[string]bool{}
	for _, f := range files {
		if f.Name == "" || strings.ContainsAny(f.Name, `/\`) || strings.HasPrefix(f.Name, genPrefix) || f.Name == "." {
			return fmt.Errorf("%w: %q", ErrBadName, f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("%w: %q given twice", ErrBadName, f.Name)
		}
		seen[f.Name] = true
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &Error{"create", dir, err}
	}

	// The files of the live generation that WithKeep names and this call
	// does not write move on; nothing else of it is read.
	live, err := liveGeneration(dir)
	if err != nil {
		return err
	}
	if live != "" {
		kept, err := readKept(filepath.Join(dir, live), o.keep, seen)
		if err != nil {
			return err
		}
		files = append(files, kept...)
	}
	// Keys first, so that even a reader of the top-level names that does
	// not fall back sees the key change before the certificate.
	sort.SliceStable(files, func(i, j int) bool { return rank(files[i]) < rank(files[j]) })

	gen, err := os.MkdirTemp(dir, genPrefix+o.now().UTC().Format("2006_01_02_15_04_05.")) //nolint:gosec
	if err != nil {
		return &Error{"create generation in", dir, err}
	}
	genName := filepath.Base(gen)
	// abandon removes the unfinished generation after an I/O error (a full
	// or read-only disk) so that failed attempts do not pile up; a hook's
	// error (a simulated crash) leaves it, as a crash would.
	abandon := func(err error) error {
		_ = os.RemoveAll(gen)
		return err
	}
	// Files are created relative to the directory MkdirTemp made (0700):
	// in a shared dir another user could rename it and put their own in its
	// place, so it is opened once, checked, and used through that handle.
	root, err := os.OpenRoot(gen)
	if err != nil {
		return abandon(&Error{"open", gen, err})
	}
	defer root.Close()
	if fi, err := root.Stat("."); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		return abandon(&Error{"check", gen, errors.New("the new generation directory is not the 0700 directory just created")})
	}
	if err := step(StepCreatedGeneration, ""); err != nil {
		return err
	}
	for _, f := range files {
		if err := writeSyncedIn(root, gen, f.Name, f.Data, f.Mode); err != nil {
			return abandon(err)
		}
		if err := step(StepWrote, f.Name); err != nil {
			return err
		}
	}
	if err := syncRoot(root, gen); err != nil {
		return abandon(err)
	}
	if err := step(StepSyncedGeneration, ""); err != nil {
		return err
	}

	tmpLink := filepath.Join(dir, genPrefix+"data_tmp_"+randomSuffix())
	if err := os.Symlink(genName, tmpLink); err != nil {
		return abandon(&Error{"symlink", tmpLink, err})
	}
	if err := step(StepTempLink, ""); err != nil {
		return err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, DataLink)); err != nil {
		_ = os.Remove(tmpLink)
		return abandon(&Error{"rename", filepath.Join(dir, DataLink), err})
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := step(StepSwapped, ""); err != nil {
		return err
	}

	for _, f := range files {
		top := filepath.Join(dir, f.Name)
		want := filepath.Join(DataLink, f.Name)
		if got, err := os.Readlink(top); err == nil && got == want {
			continue
		}
		tmp := filepath.Join(dir, genPrefix+f.Name+"_tmp_"+randomSuffix())
		if err := os.Symlink(want, tmp); err != nil {
			return &Error{"symlink", tmp, err}
		}
		if err := os.Rename(tmp, top); err != nil {
			_ = os.Remove(tmp)
			return &Error{"rename", top, err}
		}
		if err := step(StepLinked, f.Name); err != nil {
			return err
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := step(StepSyncedDir, ""); err != nil {
		return err
	}
	cleanup(dir, genName)
	return step(StepCleaned, "")
}

// rank orders private keys before everything else.
func rank(f File) int {
	if strings.HasSuffix(f.Name, ".key") || f.Mode.Perm()&0o077 == 0 && f.Mode != 0 {
		return 0
	}
	return 1
}

// cleanup removes generations and temporary links left by this and earlier
// (possibly crashed) runs. Errors are ignored: leftovers are harmless and
// the next run tries again.
func cleanup(dir, live string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case name == DataLink || name == live:
		case e.IsDir() && isGeneration(name):
			_ = os.RemoveAll(p)
		case e.Type()&fs.ModeSymlink != 0 && strings.HasPrefix(name, genPrefix) && strings.Contains(name, "_tmp_"):
			_ = os.Remove(p)
		case e.Type()&fs.ModeSymlink != 0:
			// A top-level link into ..data whose file is gone is dangling.
			if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, DataLink+string(filepath.Separator)) {
				if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
					_ = os.Remove(p)
				}
			}
		}
	}
}

// isGeneration reports whether name looks like a generation directory
// ("..2006_01_02_15_04_05.<digits or temp suffix>").
func isGeneration(name string) bool {
	if !strings.HasPrefix(name, genPrefix) || len(name) < len("..2006_01_02_15_04_05.") {
		return false
	}
	_, err := time.Parse("2006_01_02_15_04_05", name[2:21])
	return err == nil && name[21] == '.'
}

// readKept reads the files of generation gen that keep names and seen does
// not, through a root so that no name can lead outside gen; only regular
// files are carried.
func readKept(gen string, keep []string, seen map[string]bool) ([]File, error) {
	if len(keep) == 0 {
		return nil, nil
	}
	root, err := os.OpenRoot(gen)
	if err != nil {
		return nil, &Error{"open", gen, err}
	}
	defer root.Close()
	var out []File
	for _, name := range keep {
		if seen[name] || name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, genPrefix) {
			continue
		}
		fi, err := root.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, &Error{"stat", filepath.Join(gen, name), err}
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > MaxKeepSize {
			return nil, &Error{"read", filepath.Join(gen, name), fmt.Errorf("larger than %d bytes", MaxKeepSize)}
		}
		f, err := root.Open(name)
		if err != nil {
			return nil, &Error{"open", filepath.Join(gen, name), err}
		}
		data, err := io.ReadAll(io.LimitReader(f, MaxKeepSize+1))
		f.Close()
		if err != nil {
			return nil, &Error{"read", filepath.Join(gen, name), err}
		}
		if len(data) > MaxKeepSize {
			return nil, &Error{"read", filepath.Join(gen, name), fmt.Errorf("larger than %d bytes", MaxKeepSize)}
		}
		seen[name] = true
		out = append(out, File{Name: name, Data: data, Mode: fi.Mode().Perm()})
	}
	return out, nil
}

// writeSyncedIn creates name in root (exclusively), writes and fsyncs it.
func writeSyncedIn(root *os.Root, dir, name string, data []byte, mode fs.FileMode) error {
	if mode == 0 {
		mode = 0o644
	}
	path := filepath.Join(dir, name)
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return &Error{"create", path, err}
	}
	return finishSynced(f, path, data, mode)
}

func syncRoot(root *os.Root, dir string) error {
	d, err := root.Open(".")
	return syncOpened(d, err, dir)
}

func writeSynced(path string, data []byte, mode fs.FileMode) error {
	if mode == 0 {
		mode = 0o644
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return &Error{"create", path, err}
	}
	return finishSynced(f, path, data, mode)
}

func finishSynced(f *os.File, path string, data []byte, mode fs.FileMode) error {
	if err := f.Chmod(mode.Perm()); err != nil { // umask may have cut bits
		f.Close()
		return &Error{"chmod", path, err}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return &Error{"write", path, err}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return &Error{"fsync", path, err}
	}
	if err := f.Close(); err != nil {
		return &Error{"close", path, err}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	return syncOpened(d, err, dir)
}

// syncOpened fsyncs and closes the directory d, opened with err; dir names
// it in errors.
func syncOpened(d *os.File, err error, dir string) error {
	if err != nil {
		return &Error{"open", dir, err}
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &Error{"fsync", dir, err}
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WriteFile replaces one file atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory. A crash leaves either
// the old or the new content (and possibly a ".<name>.tmp-*" file, which
// the next WriteFile of the same name removes).
func WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "."+name+".tmp-*")); len(old) > 0 {
		for _, p := range old {
			_ = os.Remove(p)
		}
	}
	tmp := filepath.Join(dir, "."+name+".tmp-"+randomSuffix())
	if err := writeSynced(tmp, data, mode); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return &Error{"rename", path, err}
	}
	return syncDir(dir)
}
