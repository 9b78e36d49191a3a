package certwatch

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/credbroker/credbroker/internal/atomicfile"
)

// rawSet is the bytes of a pair as read, before parsing.
type rawSet struct{ cert, key, ca []byte }

func (r rawSet) sum() [32]byte {
	h := sha256.New()
	for _, b := range [][]byte{r.cert, r.key, r.ca} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// readDirRaw reads the pair's files from dir. Missing cert or key: ErrNoPair.
func readDirRaw(dir string) (rawSet, error) {
	var r rawSet
	for _, f := range []struct {
		name     string
		dst      *[]byte
		optional bool
	}{{CertFile, &r.cert, false}, {KeyFile, &r.key, false}, {CAFile, &r.ca, true}} {
		p := filepath.Join(dir, f.name)
		b, err := os.ReadFile(p)
		switch {
		case err == nil:
			*f.dst = b
		case errors.Is(err, fs.ErrNotExist) && f.optional:
		case errors.Is(err, fs.ErrNotExist):
			return r, &LoadError{Source: p, Err: ErrNoPair}
		default:
			return r, &LoadError{Source: p, Err: err}
		}
	}
	return r, nil
}

// read loads the source: the raw bytes (for change detection) and the
// parsed pair. A directory whose top-level names disagree falls back to its
// "..data" generation (see LoadDir).
func (w *Watcher) read(ctx context.Context) (rawSet, *Pair, error) {
	if w.loader != nil {
		var r rawSet
		var err error
		r.cert, r.key, r.ca, err = w.loader(ctx)
		if err != nil {
			return r, nil, &LoadError{Source: "loader", Err: err}
		}
		p, err := ParsePEM(r.cert, r.key, r.ca)
		if err != nil {
			return r, nil, &LoadError{Source: "loader", Err: err}
		}
		return r, p, nil
	}
	r, err := readDirRaw(w.dir)
	if err != nil {
		return r, nil, err
	}
	p, err := ParsePEM(r.cert, r.key, r.ca)
	if err == nil {
		return r, p, nil
	}
	if data := atomicfile.DataDir(w.dir); data != "" {
		if r2, err2 := readDirRaw(data); err2 == nil {
			if p2, err2 := ParsePEM(r2.cert, r2.key, r2.ca); err2 == nil {
				return r, p2, nil
			}
		}
	}
	return r, nil, &LoadError{Source: w.dir, Err: err}
}

// Reload reads the source now and makes its pair live when it changed and
// is valid. A pair that fails validation is refused and the live one kept;
// the error is returned, logged once and recorded in Status.
func (w *Watcher) Reload(ctx context.Context) error {
	err := w.reload(ctx)
	w.wake()
	return err
}

func (w *Watcher) reload(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.op.Lock()
	defer w.op.Unlock()
	raw, p, err := w.read(ctx)
	sum := raw.sum()
	cur := w.cur.Load()
	w.mu.Lock()
	unchanged := sum == w.diskSum && cur != nil
	sameBad := sum == w.badSum && w.badErr != nil
	badErr := w.badErr
	w.mu.Unlock()
	if unchanged && err == nil {
		return nil
	}
	if sameBad {
		return badErr // reported already
	}
	now := w.clock.Now()
	if err == nil {
		err = p.Verify(now)
	}
	if err != nil {
		if cur != nil {
			w.log.Warn("certwatch: new certificate refused; keeping the current one",
				"source", w.source(), "serial", cur.pair.Serial(), "sha256", cur.pair.SHA256(), "error", err.Error())
		} else {
			w.log.Warn("certwatch: no usable certificate", "source", w.source(), "error", err.Error())
		}
		w.event(EventReloadFailed, time.Time{}, err)
		w.mu.Lock()
		w.badSum, w.badErr = sum, err
		w.mu.Unlock()
		w.recordErr(err)
		return err
	}
	w.mu.Lock()
	w.diskSum, w.badSum, w.badErr = sum, [32]byte{}, nil
	w.mu.Unlock()
	if cur != nil && cur.pair.same(p) {
		return nil
	}
	w.swap(p)
	w.mu.Lock()
	w.reloads++
	w.mu.Unlock()
	leaf := p.Leaf()
	w.log.Info("certwatch: certificate loaded", "source", w.source(), "serial", p.Serial(), "sha256", p.SHA256(),
		"subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	w.event(EventLoaded, time.Time{}, nil)
	w.notify()
	return nil
}
