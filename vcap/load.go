package vcap

import (
	"context"
	"log/slog"
	"time"
)

// Option configures parsing and loading.
type Option func(*config)

type config struct {
	now    func() time.Time
	log    *slog.Logger
	keyPEM []byte // key (and optionally certificate) supplied from outside the binding
	keySrc string
	keyErr error
}

func newConfig(opts []Option) *config {
	c := &config{now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(c)
	}
	return c
}

// WithClock sets the clock used to judge certificate validity (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// WithLogger sets the logger (silent by default). Nothing secret is logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithKeyPEM supplies the private key of self-managed X.509 bindings (an
// xsuaa x509 or IAS X509_PROVIDED/X509_ATTESTED binding that carries a
// certificate but no key). The PEM may also hold a certificate chain, used
// for bindings that carry none (X509_ATTESTED). source names it in messages,
// e.g. "--key-file /etc/key.pem". The key is given to every such binding
// whose leaf certificate it matches; a binding it does not match gets an
// ErrKeyMismatch problem.
func WithKeyPEM(pem []byte, source string) Option {
	return func(c *config) {
		c.keyPEM = append([]byte(nil), pem...)
		c.keySrc = source
	}
}

// WithKeyFile is WithKeyPEM with the PEM read from path when loading.
func WithKeyFile(path string) Option {
	return func(c *config) {
		c.keySrc = "--key-file " + path
		b, err := readFileLimited(path)
		if err != nil {
			c.keyErr = &Error{Source: "file " + path, Field: "key", Err: err}
			return
		}
		c.keyPEM = b
	}
}

// Sources are the places bindings can come from, in precedence order. cmd
// fills them from flags and the environment; vcap reads no environment.
//
// The first source that is set wins; sources are never merged. A flag names
// the bindings the operator wants, and merging two platforms' views of the
// same services would produce duplicate names with different credentials.
type Sources struct {
	// VCAPFile is --vcap-file: a file holding VCAP_SERVICES JSON.
	VCAPFile string
	// VCAPServices is the content of the VCAP_SERVICES variable.
	VCAPServices string
	// VCAPServicesFilePath is VCAP_SERVICES_FILE_PATH: a file holding the JSON.
	VCAPServicesFilePath string
	// BindingsDir is --bindings-dir or SERVICE_BINDING_ROOT.
	BindingsDir string
}

// Chosen returns the source Load would read ("" when none is set) and its
// display name ("file /x", "VCAP_SERVICES", "dir /bindings").
func (s Sources) Chosen() (kind, display string) {
	switch {
	case s.VCAPFile != "":
		return "vcap-file", "file " + s.VCAPFile
	case s.VCAPServices != "":
		return "VCAP_SERVICES", SourceVCAPServices
	case s.VCAPServicesFilePath != "":
		return "VCAP_SERVICES_FILE_PATH", "file " + s.VCAPServicesFilePath
	case s.BindingsDir != "":
		return "bindings-dir", "dir " + s.BindingsDir
	}
	return "", ""
}

// Load reads the first source that is set (see Sources). It returns
// ErrNoBindings when none is set. Source-level failures (unreadable file,
// malformed JSON) are errors; per-binding problems are in Binding.Problems
// (and Set.Err).
func Load(ctx context.Context, src Sources, opts ...Option) (*Set, error) {
	kind, _ := src.Chosen()
	switch kind {
	case "vcap-file":
		return LoadFile(ctx, src.VCAPFile, opts...)
	case "VCAP_SERVICES":
		return ParseVCAP([]byte(src.VCAPServices), SourceVCAPServices, opts...)
	case "VCAP_SERVICES_FILE_PATH":
		return LoadFile(ctx, src.VCAPServicesFilePath, opts...)
	case "bindings-dir":
		return LoadDir(ctx, src.BindingsDir, opts...)
	}
	return nil, &Error{Err: ErrNoBindings}
}
