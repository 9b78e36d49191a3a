package broker

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/kubesecret"
	"github.com/credbroker/credbroker/sidecar"
)

// KubernetesAPI says how to reach the Kubernetes API server for
// certificates[].persist.kubernetes_secret: cmd/credbroker fills it from
// KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT and
// --service-account-dir.
type KubernetesAPI struct {
	Host, Port        string
	ServiceAccountDir string // "" is kubesecret.DefaultServiceAccountDir
}

// lockAnnotation marks the replica that renews the shared identity: the
// others wait for its pair instead of renewing too. Its value is
// {"holder": "...", "until": RFC 3339}.
const lockAnnotation = "credbroker.io/renewal-lock"

type renewalLock struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// secretAPI is the part of *kubesecret.Client the store uses.
type secretAPI interface {
	Get(ctx context.Context) (*kubesecret.Secret, error)
	Update(ctx context.Context, s *kubesecret.Secret) (*kubesecret.Secret, error)
	Create(ctx context.Context, s *kubesecret.Secret) (*kubesecret.Secret, error)
	Name() string
}

// storedPair is a validated pair as the Secret holds it.
type storedPair struct {
	cert, key, ca, conn []byte
	pair                *certwatch.Pair
}

func (p *storedPair) data() map[string][]byte {
	d := map[string][]byte{certwatch.CertFile: p.cert, certwatch.KeyFile: p.key}
	if len(p.ca) > 0 {
		d[certwatch.CAFile] = p.ca
	}
	if len(p.conn) > 0 {
		d[certwatch.ConnectionFile] = p.conn
	}
	return d
}

func (p *storedPair) files() certwatch.Files {
	f := certwatch.Files{CertPEM: p.cert, KeyPEM: p.key, CAPEM: p.ca}
	if len(p.conn) > 0 {
		f.Extra = map[string][]byte{certwatch.ConnectionFile: p.conn}
	}
	return f
}

// parseStored validates the pair of a Secret's data (or of a directory's
// files); errors hold no key material.
func parseStored(d map[string][]byte, now time.Time) (*storedPair, error) {
	sp := &storedPair{cert: d[certwatch.CertFile], key: d[certwatch.KeyFile], ca: d[certwatch.CAFile], conn: d[certwatch.ConnectionFile]}
	if len(sp.cert) == 0 || len(sp.key) == 0 {
		return nil, errors.New("no tls.crt and tls.key")
	}
	p, err := certwatch.ParsePEM(sp.cert, sp.key, sp.ca)
	if err != nil {
		return nil, err
	}
	if err := p.Verify(now); err != nil {
		return nil, err
	}
	if len(sp.conn) > 0 {
		if _, err := connector.ParseConnectionInfo(sp.conn, certwatch.ConnectionFile); err != nil {
			return nil, err
		}
	}
	sp.pair = p
	return sp, nil
}

// identityStore keeps one certificate's pair and connection.json in a
// Kubernetes Secret shared by every replica (docs/reliability.md). The
// directory stays the live copy the watcher reads; the Secret is what a new
// pod starts from and how replicas agree on one identity: a renewal is
// claimed with a compare-and-swap update of the Secret (its
// resourceVersion), done by one replica, and written back before any
// replica presents the new pair.
type identityStore struct {
	name    string // the certificate's name
	dir     string
	cfg     sidecar.KubernetesSecret
	api     secretAPI
	log     *slog.Logger
	metrics *sidecar.Metrics
	now     func() time.Time
	holder  string

	mu      sync.Mutex
	pending *storedPair // renewed at the connector, not yet in the Secret
	offered *storedPair // a newer pair from the Secret, for the watcher to adopt
}

func (c *Broker) newIdentityStore(name, dir string, ks sidecar.KubernetesSecret) (*identityStore, error) {
	api, err := kubesecret.New(kubesecret.Config{
		Host: c.o.Kubernetes.Host, Port: c.o.Kubernetes.Port, ServiceAccountDir: c.o.Kubernetes.ServiceAccountDir,
		Namespace: ks.Namespace, Name: ks.Name, Timeout: ks.RequestTimeout, MaxResponseBytes: ks.MaxResponseBytes,
	})
	if err != nil {
		return nil, configErrorf("persist.kubernetes_secret: %v", err)
	}
	host, _ := os.Hostname() // the pod name: shows who holds the renewal
	b := make([]byte, 4)
	_, _ = crand.Read(b)
	return &identityStore{
		name: name, dir: dir, cfg: ks, api: api, log: c.log, metrics: c.metrics, now: c.now,
		holder: host + "-" + hex.EncodeToString(b),
	}, nil
}

func (s *identityStore) count(event string) { s.metrics.IdentityPersist(s.name, event) }

// fail counts and logs an API failure; the error names the Secret and the
// status, never its data.
func (s *identityStore) fail(what string, err error) {
	if errors.Is(err, kubesecret.ErrConflict) {
		s.count(sidecar.PersistConflict)
		s.log.Debug("the Secret changed in between; reading it again", "certificate", s.name, "secret", s.api.Name(), "step", what)
		return
	}
	s.count(sidecar.PersistError)
	s.log.Warn("kubernetes secret: "+what+" failed; retrying with backoff", "certificate", s.name, "secret", s.api.Name(), "error", err.Error())
}

// get reads the Secret: nil without an error when it does not exist.
func (s *identityStore) get(ctx context.Context) (*kubesecret.Secret, error) {
	sec, err := s.api.Get(ctx)
	if errors.Is(err, kubesecret.ErrNotFound) {
		return nil, nil
	}
	return sec, err
}

// backoff waits before attempt n+1 (200 ms doubling to 5 s, jittered);
// false when ctx ended.
func backoff(ctx context.Context, n int) bool {
	d := 200 * time.Millisecond << min(n, 5)
	d = min(d, 5*time.Second)
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// write stores sp in the Secret read as sec (nil: it does not exist yet)
// and releases the renewal lock, in one compare-and-swap.
func (s *identityStore) write(ctx context.Context, sec *kubesecret.Secret, sp *storedPair) (*kubesecret.Secret, error) {
	var err error
	var out *kubesecret.Secret
	if sec == nil {
		out, err = s.api.Create(ctx, &kubesecret.Secret{Data: sp.data()})
	} else {
		next := *sec
		next.Annotations = copyMap(sec.Annotations)
		delete(next.Annotations, lockAnnotation)
		next.Data = sp.data()
		out, err = s.api.Update(ctx, &next)
	}
	if err != nil {
		return nil, err
	}
	s.count(sidecar.PersistSaved)
	s.log.Info("paired identity written to the Kubernetes Secret", "certificate", s.name, "secret", s.api.Name(),
		"sha256", sp.pair.SHA256(), "not_after", sp.pair.Leaf().NotAfter)
	return out, nil
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// readLocal reads the pair and connection.json of the directory.
func (s *identityStore) readLocal() (*storedPair, error) {
	d := map[string][]byte{}
	for _, f := range []string{certwatch.CertFile, certwatch.KeyFile, certwatch.CAFile, certwatch.ConnectionFile} {
		b, err := inputfile.Read(filepath.Join(s.dir, f))
		if err != nil {
			if f == certwatch.CAFile || f == certwatch.ConnectionFile {
				continue
			}
			return nil, err
		}
		d[f] = b
	}
	return parseStored(d, s.now())
}

// load runs at start, before the directory is checked: a valid pair in the
// Secret is written into the directory (the Secret wins over what an old
// container left there). It waits for the API server up to start_timeout;
// when it stays away, a valid pair in the directory is used (and written to
// the Secret later), else the start fails.
func (s *identityStore) load(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	for n := 0; ; n++ {
		sec, err := s.get(sctx)
		if err == nil {
			return s.loadFrom(ctx, sec)
		}
		s.fail("reading at start", err)
		if !backoff(sctx, n) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if _, lerr := s.readLocal(); lerr == nil {
				s.log.Warn("the Kubernetes Secret could not be read at start; using the pair in the directory and writing it to the Secret once the API server answers",
					"certificate", s.name, "secret", s.api.Name(), "error", err.Error())
				return nil
			}
			return fmt.Errorf("certificate %q: persist.kubernetes_secret %s could not be read within start_timeout %v and %s holds no valid pair: %w", s.name, s.api.Name(), s.cfg.StartTimeout, s.dir, err)
		}
	}
}

func (s *identityStore) loadFrom(ctx context.Context, sec *kubesecret.Secret) error {
	if sec == nil || len(sec.Data) == 0 {
		s.count(sidecar.PersistEmpty)
		s.log.Info("the Kubernetes Secret holds no paired identity yet", "certificate", s.name, "secret", s.api.Name())
		return nil
	}
	sp, err := parseStored(sec.Data, s.now())
	if err != nil {
		s.count(sidecar.PersistEmpty)
		s.log.Warn("the Kubernetes Secret holds no usable pair; ignoring it", "certificate", s.name, "secret", s.api.Name(), "error", err.Error())
		return nil
	}
	if err := certwatch.Persist(ctx, s.dir, sp.files()); err != nil {
		return fmt.Errorf("certificate %q: writing the pair from the Kubernetes Secret into %s: %w", s.name, s.dir, err)
	}
	s.count(sidecar.PersistLoaded)
	s.log.Info("paired identity loaded from the Kubernetes Secret", "certificate", s.name, "secret", s.api.Name(),
		"sha256", sp.pair.SHA256(), "not_after", sp.pair.Leaf().NotAfter)
	return nil
}

// publish runs at start once the directory holds a valid pair (paired now,
// or left by an earlier container, or loaded): when the Secret holds none,
// the directory's is written; when another replica wrote one in between,
// that one is written into the directory instead. An API server that stays
// away is not fatal: the poll loop writes the pair later.
func (s *identityStore) publish(ctx context.Context) error {
	local, err := s.readLocal()
	if err != nil {
		return nil // nothing to publish; the watcher reports the directory
	}
	sctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	for n := 0; ; n++ {
		sec, err := s.get(sctx)
		if err == nil {
			if sec != nil {
				if sp, perr := parseStored(sec.Data, s.now()); perr == nil {
					if sp.pair.SHA256() == local.pair.SHA256() {
						return nil
					}
					// Another replica was first: its pair is the identity.
					if err := certwatch.Persist(ctx, s.dir, sp.files()); err != nil {
						return fmt.Errorf("certificate %q: writing the pair from the Kubernetes Secret into %s: %w", s.name, s.dir, err)
					}
					s.count(sidecar.PersistAdopted)
					s.log.Info("another replica wrote the paired identity first; using it", "certificate", s.name, "secret", s.api.Name(), "sha256", sp.pair.SHA256())
					return nil
				}
			}
			if _, err = s.write(sctx, sec, local); err == nil {
				return nil
			}
		}
		s.fail("writing the pair at start", err)
		if !backoff(sctx, n) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Warn("the paired identity could not be written to the Kubernetes Secret at start; the poll loop keeps trying",
				"certificate", s.name, "secret", s.api.Name(), "error", err.Error())
			return nil
		}
	}
}

// waitForPair runs when pairing failed at start: with several replicas
// only one can spend the one-time token, and the others take the pair it
// writes to the Secret (up to start_timeout).
func (s *identityStore) waitForPair(ctx context.Context) bool {
	sctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	for n := 0; ; n++ {
		sec, err := s.get(sctx)
		if err != nil {
			s.fail("waiting for another replica's pair", err)
		} else if sec != nil {
			if sp, perr := parseStored(sec.Data, s.now()); perr == nil {
				if err := certwatch.Persist(ctx, s.dir, sp.files()); err == nil {
					s.count(sidecar.PersistAdopted)
					s.log.Info("pairing failed, but another replica paired and wrote the identity to the Kubernetes Secret; using it",
						"certificate", s.name, "secret", s.api.Name(), "sha256", sp.pair.SHA256())
					return true
				}
			}
		}
		if !backoff(sctx, min(n, 2)) { // poll about every second
			return false
		}
	}
}

func leafOf(c tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// newer reports whether sp is another certificate than cur, for the same
// subject, that lives longer: a pair worth switching to. A pair for
// another subject (another application's identity written into the
// Secret) is never switched to: the connector renews a certificate with
// its subject unchanged, and a new subject takes pairing anew.
func newer(sp *storedPair, cur *x509.Certificate) bool {
	return sp != nil && sp.pair.SHA256() != connector.Fingerprint(cur) && sp.pair.Leaf().NotAfter.After(cur.NotAfter) &&
		bytes.Equal(sp.pair.Leaf().RawSubject, cur.RawSubject)
}

// adoptOnlyKey marks the context of a renewal the poll starts to adopt a
// pair from the Secret; its value cancels that context.
type adoptOnlyKey struct{}

// persistRenewer renews through the shared Secret: see identityStore.renew.
type persistRenewer struct {
	inner certwatch.Renewer
	s     *identityStore
}

func (r *persistRenewer) Renew(ctx context.Context, cur tls.Certificate) ([]byte, []byte, []byte, error) {
	sp, err := r.s.renew(ctx, cur, r.inner)
	if err != nil {
		return nil, nil, nil, err
	}
	return sp.cert, sp.key, sp.ca, nil
}

// renew returns the pair the watcher makes live next. In order:
// a newer pair the poll loop saw in the Secret; a newer pair in the Secret
// now (another replica renewed); a pair this replica renewed earlier but
// could not write yet (written now); otherwise it claims the renewal in
// the Secret's annotations with a compare-and-swap update (409: another
// replica was faster; read again and wait for its pair), renews through
// the connector and writes the new pair back, releasing the claim, before
// returning it. No replica presents a pair the Secret does not hold.
func (s *identityStore) renew(ctx context.Context, cur tls.Certificate, inner certwatch.Renewer) (*storedPair, error) {
	curLeaf, err := leafOf(cur)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	offered := s.offered
	s.offered = nil
	s.mu.Unlock()
	if newer(offered, curLeaf) {
		s.adopted(offered)
		return offered, nil
	}
	if stop, ok := ctx.Value(adoptOnlyKey{}).(context.CancelFunc); ok {
		// The poll asked to adopt a pair, and a renewal that ran before
		// it took that pair already: never renew from here. A cancelled
		// context is what the watcher does not count as a failure.
		stop()
		return nil, ctx.Err()
	}
	waited := false
	var last error
	for n := 0; ; n++ {
		if ctx.Err() != nil {
			if last == nil {
				last = ctx.Err()
			}
			return nil, fmt.Errorf("kubernetes secret %s: %w", s.api.Name(), last)
		}
		sec, err := s.get(ctx)
		if err != nil {
			s.fail("reading before renewal", err)
			last = err
			backoff(ctx, n)
			continue
		}
		var inSecret *storedPair
		if sec != nil {
			inSecret, _ = parseStored(sec.Data, s.now())
		}
		if newer(inSecret, curLeaf) {
			s.mu.Lock()
			s.pending = nil // another replica's pair won
			s.mu.Unlock()
			s.adopted(inSecret)
			return inSecret, nil
		}
		s.mu.Lock()
		pending := s.pending
		s.mu.Unlock()
		if pending != nil && pending.pair.Verify(s.now()) == nil {
			if _, err := s.write(ctx, sec, pending); err != nil {
				s.fail("writing the renewed pair", err)
				last = err
				if !errors.Is(err, kubesecret.ErrConflict) {
					backoff(ctx, n)
				}
				continue
			}
			s.mu.Lock()
			s.pending = nil
			s.mu.Unlock()
			return pending, nil
		}
		if l, ok := lockOf(sec); ok && l.Holder != s.holder && s.lockLive(l) {
			if !waited {
				waited = true
				s.count(sidecar.PersistLockWait)
				s.log.Info("another replica is renewing the shared certificate; waiting for its pair", "certificate", s.name, "holder", l.Holder, "until", l.Until)
			}
			last = fmt.Errorf("replica %s is renewing; its pair did not arrive in time", l.Holder)
			backoff(ctx, min(n, 2))
			continue
		}
		claimed, err := s.claim(ctx, sec)
		if err != nil {
			s.fail("claiming the renewal", err)
			last = err
			if !errors.Is(err, kubesecret.ErrConflict) {
				backoff(ctx, n)
			}
			continue
		}
		certPEM, keyPEM, caPEM, err := inner.Renew(ctx, cur)
		if err != nil {
			s.release(claimed)
			return nil, err // as the connector said (a revoked certificate needs a token)
		}
		sp, err := s.renewed(certPEM, keyPEM, caPEM)
		if err != nil {
			s.release(claimed)
			return nil, err
		}
		s.mu.Lock()
		s.pending = sp
		s.mu.Unlock()
		if _, err := s.write(ctx, claimed, sp); err != nil {
			s.fail("writing the renewed pair", err)
			last = err
			continue // the loop writes pending, or adopts a newer pair
		}
		s.mu.Lock()
		s.pending = nil
		s.mu.Unlock()
		return sp, nil
	}
}

func (s *identityStore) adopted(sp *storedPair) {
	s.count(sidecar.PersistAdopted)
	s.log.Info("using the pair another replica renewed (from the Kubernetes Secret)", "certificate", s.name, "secret", s.api.Name(),
		"sha256", sp.pair.SHA256(), "not_after", sp.pair.Leaf().NotAfter)
}

func lockOf(sec *kubesecret.Secret) (renewalLock, bool) {
	if sec == nil {
		return renewalLock{}, false
	}
	v, ok := sec.Annotations[lockAnnotation]
	if !ok {
		return renewalLock{}, false
	}
	var l renewalLock
	if len(v) > 1024 || json.Unmarshal([]byte(v), &l) != nil {
		return renewalLock{}, false // malformed: not a claim anyone holds
	}
	return l, true
}

// lockLive reports whether a claim still holds: it has not run out, and
// it does not reach further ahead than two lock_durations from now (more
// than a replica's claim ever does, clock skew included). A claim that
// reaches further — a Secret edited by hand, a replica with a broken
// clock, a hostile writer — would otherwise stop every replica from
// renewing until the certificate expired; it is void.
func (s *identityStore) lockLive(l renewalLock) bool {
	now := s.now()
	return now.Before(l.Until) && !l.Until.After(now.Add(2*s.cfg.LockDuration))
}

// claim marks this replica as the one renewing, with a compare-and-swap
// update (a create when the Secret does not exist).
func (s *identityStore) claim(ctx context.Context, sec *kubesecret.Secret) (*kubesecret.Secret, error) {
	b, err := json.Marshal(renewalLock{Holder: s.holder, Until: s.now().Add(s.cfg.LockDuration).UTC()})
	if err != nil {
		return nil, err
	}
	if sec == nil {
		return s.api.Create(ctx, &kubesecret.Secret{Annotations: map[string]string{lockAnnotation: string(b)}})
	}
	next := *sec
	next.Annotations = copyMap(sec.Annotations)
	next.Annotations[lockAnnotation] = string(b)
	return s.api.Update(ctx, &next)
}

// release drops the claim after a failed renewal (best effort: it expires
// anyway).
func (s *identityStore) release(claimed *kubesecret.Secret) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	next := *claimed
	next.Annotations = copyMap(claimed.Annotations)
	delete(next.Annotations, lockAnnotation)
	if _, err := s.api.Update(ctx, &next); err != nil {
		s.log.Debug("releasing the renewal claim failed; it expires by itself", "certificate", s.name, "error", err.Error())
	}
}

// renewed builds the stored form of a renewed pair: the CA of the
// directory when the connector sent none, and connection.json naming the
// new certificate.
func (s *identityStore) renewed(certPEM, keyPEM, caPEM []byte) (*storedPair, error) {
	local, _ := s.readLocalRaw()
	if len(caPEM) == 0 {
		caPEM = local[certwatch.CAFile]
	}
	d := map[string][]byte{certwatch.CertFile: certPEM, certwatch.KeyFile: keyPEM, certwatch.CAFile: caPEM}
	p, err := certwatch.ParsePEM(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, err
	}
	if raw := local[certwatch.ConnectionFile]; len(raw) > 0 {
		if ci, err := connector.ParseConnectionInfo(raw, certwatch.ConnectionFile); err == nil {
			ci.SetCertificate(p.Leaf(), s.now())
			if b, err := ci.Marshal(); err == nil {
				d[certwatch.ConnectionFile] = b
			}
		}
	}
	return parseStored(d, s.now())
}

func (s *identityStore) readLocalRaw() (map[string][]byte, error) {
	d := map[string][]byte{}
	for _, f := range []string{certwatch.CAFile, certwatch.ConnectionFile} {
		if b, err := inputfile.Read(filepath.Join(s.dir, f)); err == nil {
			d[f] = b
		}
	}
	return d, nil
}

// poll reads the Secret every poll_interval until ctx ends, so that a pair
// another replica renewed goes live here without a restart, a pair this
// replica could not write is written once the API server is back, and a
// Secret emptied by hand is filled again.
func (s *identityStore) poll(ctx context.Context, w *certwatch.Watcher, canRenew bool) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.pollOnce(ctx, w, canRenew)
	}
}

func (s *identityStore) pollOnce(ctx context.Context, w *certwatch.Watcher, canRenew bool) {
	live := w.Pair()
	if live == nil {
		return
	}
	sec, err := s.get(ctx)
	if err != nil {
		s.fail("polling", err)
		return
	}
	var inSecret *storedPair
	if sec != nil {
		inSecret, _ = parseStored(sec.Data, s.now())
	}
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	var offer *storedPair
	switch {
	case newer(inSecret, live.Leaf()):
		offer = inSecret
	case pending != nil && newer(pending, live.Leaf()):
		if _, err := s.write(ctx, sec, pending); err != nil {
			s.fail("writing the renewed pair", err)
			return
		}
		s.mu.Lock()
		if s.pending == pending {
			s.pending = nil
		}
		s.mu.Unlock()
		offer = pending
	case inSecret == nil:
		if l, lockHeld := lockOf(sec); lockHeld && s.lockLive(l) {
			return // a renewal (of a lost Secret) is under way
		}
		local, err := s.readLocal()
		if err != nil || local.pair.SHA256() != live.SHA256() {
			return
		}
		if _, err := s.write(ctx, sec, local); err != nil {
			s.fail("writing the live pair", err)
		}
		return
	default:
		return
	}
	if canRenew {
		// The watcher's renewal takes the offered pair: it validates it,
		// writes it into the directory and makes it live, serialised with
		// its own renewals.
		s.mu.Lock()
		s.offered = offer
		s.mu.Unlock()
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if err := w.Renew(context.WithValue(rctx, adoptOnlyKey{}, cancel)); err != nil && rctx.Err() == nil {
			s.log.Warn("taking the pair from the Kubernetes Secret failed", "certificate", s.name, "error", err.Error())
		}
		return
	}
	if err := certwatch.Persist(ctx, s.dir, offer.files()); err != nil {
		s.log.Warn("writing the pair from the Kubernetes Secret into the directory failed", "certificate", s.name, "dir", s.dir, "error", err.Error())
		return
	}
	s.adopted(offer)
	_ = w.Reload(ctx)
}

// applyPersistSecret sets persist.kubernetes_secret of the one certificate
// with pairing_url_file from --persist-kubernetes-secret "[NS/]NAME".
func applyPersistSecret(cfg *sidecar.Config, flag string) error {
	if flag == "" {
		return nil
	}
	ns, name, ok := strings.Cut(flag, "/")
	if !ok {
		ns, name = "", flag
	}
	idx := -1
	for i, ce := range cfg.Certificates {
		if ce.PairingURLFile == "" {
			continue
		}
		if idx >= 0 {
			return configErrorf("--persist-kubernetes-secret %s: more than one certificate pairs at start (certificates %q and %q): set persist.kubernetes_secret in the config instead", flag, cfg.Certificates[idx].Name, ce.Name)
		}
		idx = i
	}
	if idx < 0 {
		return configErrorf("--persist-kubernetes-secret %s: no certificate pairs at start (pairing_url_file)", flag)
	}
	ce := &cfg.Certificates[idx]
	if ce.Persist != nil {
		return configErrorf("--persist-kubernetes-secret %s: certificate %q sets persist: already", flag, ce.Name)
	}
	ce.Persist = &sidecar.CertificatePersist{KubernetesSecret: &sidecar.KubernetesSecret{Name: name, Namespace: ns}}
	return cfg.CheckPersist(idx)
}
