package sidecar

import (
	"fmt"
	"regexp"
	"time"
)

// Defaults of certificates[].persist.kubernetes_secret.
const (
	DefaultPersistPollInterval     = 10 * time.Second
	DefaultPersistRequestTimeout   = 10 * time.Second
	DefaultPersistLockDuration     = 2 * time.Minute
	DefaultPersistStartTimeout     = 60 * time.Second
	DefaultPersistMaxResponseBytes = 4 << 20
	// MinPersistLockDuration is the shortest lock_duration: a renewal
	// attempt takes up to a minute.
	MinPersistLockDuration = time.Minute
)

// CertificatePersist keeps a paired certificate somewhere that outlives
// the pod (docs/reliability.md, "A paired identity that survives
// rescheduling").
type CertificatePersist struct {
	// KubernetesSecret is the Secret that holds tls.crt, tls.key, ca.crt
	// and connection.json.
	KubernetesSecret *KubernetesSecret `yaml:"kubernetes_secret"`
}

// KubernetesSecret names the Secret a paired identity is kept in, and the
// limits of talking to the API server about it.
type KubernetesSecret struct {
	Name string `yaml:"name"`
	// Namespace of the Secret ("": the pod's, from the service account).
	Namespace string `yaml:"namespace"`
	// PollInterval is how often the Secret is read to pick up a pair
	// another replica renewed (default 10s).
	PollInterval time.Duration `yaml:"poll_interval"`
	// RequestTimeout bounds each API request (default 10s).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// LockDuration is how long a replica's claim to renew holds before
	// another may take over (default 2m).
	LockDuration time.Duration `yaml:"lock_duration"`
	// StartTimeout bounds how long the start waits for the API server, or
	// for another replica's pairing to appear in the Secret (default 60s).
	StartTimeout time.Duration `yaml:"start_timeout"`
	// MaxResponseBytes bounds one API answer (default 4 MiB).
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
}

var (
	k8sSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	k8sLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// checkPersist applies the defaults of ct.Persist and checks it; f is the
// certificate's field path.
func (c *Config) checkPersist(errs ConfigErrors, f string, ct *Certificate) ConfigErrors {
	if ct.Persist == nil {
		return errs
	}
	f += ".persist"
	ks := ct.Persist.KubernetesSecret
	if ks == nil {
		return append(errs, c.errorf(f+".kubernetes_secret", ct.Name, ErrMissingValue, "the one store there is"))
	}
	f += ".kubernetes_secret"
	switch {
	case ct.Dir == "":
		errs = append(errs, c.errorf(f, ct.Name, ErrInvalidValue, "needs dir: the pair is kept there too (a memory-backed emptyDir)"))
	case ct.RuntimeDir != "":
		errs = append(errs, c.errorf(f, ct.Name, ErrInvalidValue, "not with runtime_dir yet: the runtime connector's certificate is not persisted"))
	}
	if ks.Name == "" {
		errs = append(errs, c.errorf(f+".name", ct.Name, ErrMissingValue, ""))
	} else if len(ks.Name) > 253 || !k8sSubdomain.MatchString(ks.Name) {
		errs = append(errs, c.errorf(f+".name", ct.Name, ErrInvalidValue, "%q: want a DNS subdomain (lower-case letters, digits, '-', '.')", ks.Name))
	}
	if ks.Namespace != "" && (len(ks.Namespace) > 63 || !k8sLabel.MatchString(ks.Namespace)) {
		errs = append(errs, c.errorf(f+".namespace", ct.Name, ErrInvalidValue, "%q: want a DNS label (lower-case letters, digits, '-')", ks.Namespace))
	}
	for _, d := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"poll_interval", &ks.PollInterval, DefaultPersistPollInterval},
		{"request_timeout", &ks.RequestTimeout, DefaultPersistRequestTimeout},
		{"lock_duration", &ks.LockDuration, DefaultPersistLockDuration},
		{"start_timeout", &ks.StartTimeout, DefaultPersistStartTimeout},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			errs = append(errs, c.errorf(f+"."+d.key, ct.Name, ErrInvalidValue, "must not be negative"))
		}
	}
	switch {
	case ks.MaxResponseBytes == 0:
		ks.MaxResponseBytes = DefaultPersistMaxResponseBytes
	case ks.MaxResponseBytes < 4096:
		errs = append(errs, c.errorf(f+".max_response_bytes", ct.Name, ErrInvalidValue, "%d: want at least 4096", ks.MaxResponseBytes))
	}
	// A claim must outlast the renewal it guards: one attempt takes up to
	// a minute (certwatch's renewal timeout), plus the writes around it.
	if minLock := max(MinPersistLockDuration, 3*ks.RequestTimeout); ks.LockDuration > 0 && ks.LockDuration < minLock {
		errs = append(errs, c.errorf(f+".lock_duration", ct.Name, ErrInvalidValue, "%v: want at least %v (a renewal attempt's minute, and three request timeouts)", ks.LockDuration, minLock))
	}
	return errs
}

// String names the Secret for messages.
func (k *KubernetesSecret) String() string {
	if k.Namespace == "" {
		return k.Name
	}
	return fmt.Sprintf("%s/%s", k.Namespace, k.Name)
}

// CheckPersist applies the defaults of certificates[i].persist and checks
// it (for persist set from a flag after parsing).
func (c *Config) CheckPersist(i int) error {
	if errs := c.checkPersist(nil, fmt.Sprintf("certificates[%d]", i), &c.Certificates[i]); len(errs) > 0 {
		return errs
	}
	return nil
}
