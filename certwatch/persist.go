package certwatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/internal/atomicfile"
)

// File names of the directory layout shared by `credbroker pair`, Persist,
// LoadDir and a Kubernetes TLS secret mount.
const (
	CertFile       = "tls.crt"         // leaf first, then intermediates
	KeyFile        = "tls.key"         // private key, mode 0600
	CAFile         = "ca.crt"          // CA certificates (optional)
	ConnectionFile = "connection.json" // written by the pair command; no secrets
)

// layout are the names a certificate directory holds: the only files
// carried from one generation to the next.
var layout = []string{CertFile, KeyFile, CAFile, ConnectionFile}

// Files is a set Persist writes. Extra holds more files (such as
// ConnectionFile) written in the same generation, mode 0644: never put a
// secret there.
type Files struct {
	CertPEM []byte
	KeyPEM  []byte
	CAPEM   []byte // nil keeps the ca.crt already there
	Extra   map[string][]byte
}

// PersistOption configures Persist.
type PersistOption func(*persistOptions)

type persistOptions struct {
	hook func(step string) error
}

// WithPersistHook calls hook between the steps of the write with a step name
// ("wrote tls.key", "swapped", …). When it returns an error, Persist stops
// right there, without cleaning up, and returns it: tests use it to
// simulate a crash at every step.
func WithPersistHook(hook func(step string) error) PersistOption {
	return func(o *persistOptions) { o.hook = hook }
}

// Persist checks that f holds a certificate chain and the key that matches
// it (it does not check the time), then writes them into dir so that a crash
// at any moment leaves a matching key and certificate there: a new
// generation directory, every file fsynced, then one atomic swap of the
// "..data" symlink, the layout of the Kubernetes atomic writer
// (internal/atomicfile). The key is written 0600, the rest 0644, all inside
// a 0700 generation directory Persist creates itself. Of the files f does
// not name, only the layout's (CAFile, ConnectionFile) are carried over from
// the live generation; nothing else of it is read, and a "..data" link that
// leads outside dir is refused, not followed. dir is created (0700) when
// missing. One writer at a time per directory.
func Persist(ctx context.Context, dir string, f Files, opts ...PersistOption) error {
	var o persistOptions
	for _, opt := range opts {
		opt(&o)
	}
	p, err := ParsePEM(f.CertPEM, f.KeyPEM, f.CAPEM)
	if err != nil {
		return fmt.Errorf("certwatch: persist to %s: %w", dir, err)
	}
	files := []atomicfile.File{
		{Name: KeyFile, Data: p.keyPEM, Mode: 0o600},
		{Name: CertFile, Data: p.certPEM, Mode: 0o644},
	}
	if len(bytes.TrimSpace(p.caPEM)) > 0 {
		files = append(files, atomicfile.File{Name: CAFile, Data: p.caPEM, Mode: 0o644})
	}
	for name, data := range f.Extra {
		switch name {
		case CertFile, KeyFile, CAFile:
			return fmt.Errorf("certwatch: persist to %s: extra file %q would replace the pair", dir, name)
		}
		files = append(files, atomicfile.File{Name: name, Data: data, Mode: 0o644})
	}
	aopts := []atomicfile.Option{atomicfile.WithKeep(layout...)}
	if o.hook != nil {
		aopts = append(aopts, atomicfile.WithHook(func(s atomicfile.Step, name string) error {
			if name != "" {
				return o.hook(string(s) + " " + name)
			}
			return o.hook(string(s))
		}))
	}
	if err := atomicfile.WriteDir(ctx, dir, files, aopts...); err != nil {
		return fmt.Errorf("certwatch: persist to %s: %w", dir, err)
	}
	return nil
}

// WriteExtra replaces files other than the pair's (ConnectionFile, when the
// connector's URLs change) in dir, atomically and in one generation like
// Persist, leaving tls.crt, tls.key and ca.crt as they are. The files are
// written 0644: never put a secret there.
func WriteExtra(ctx context.Context, dir string, extra map[string][]byte) error {
	files := make([]atomicfile.File, 0, len(extra))
	for name, data := range extra {
		switch name {
		case CertFile, KeyFile, CAFile:
			return fmt.Errorf("certwatch: write to %s: %q is part of the pair; use Persist", dir, name)
		}
		files = append(files, atomicfile.File{Name: name, Data: data, Mode: 0o644})
	}
	if err := atomicfile.WriteDir(ctx, dir, files, atomicfile.WithKeep(layout...)); err != nil {
		return fmt.Errorf("certwatch: write to %s: %w", dir, err)
	}
	return nil
}

// LoadDir reads CertFile, KeyFile and (when present) CAFile from dir and
// parses them with ParsePEM. It works on the layout Persist writes, on a
// Kubernetes secret mount ("..data" symlinks) and on plain files. When the
// top-level files do not match each other and dir has a "..data"
// generation, it reads that generation instead: this is how a crash in the
// middle of converting plain files to the "..data" layout is survived.
// Missing files give an error wrapping ErrNoPair. It does not check the
// time: call Verify.
func LoadDir(ctx context.Context, dir string) (*Pair, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := loadFrom(dir)
	if err == nil || errors.Is(err, ErrNoPair) {
		return p, err
	}
	if data := atomicfile.DataDir(dir); data != "" {
		if q, err2 := loadFrom(data); err2 == nil {
			return q, nil
		}
	}
	return nil, err
}

func loadFrom(dir string) (*Pair, error) {
	r, err := readDirRaw(dir)
	if err != nil {
		return nil, err
	}
	p, err := ParsePEM(r.cert, r.key, r.ca)
	if err != nil {
		return nil, &LoadError{Source: dir, Err: err}
	}
	return p, nil
}
