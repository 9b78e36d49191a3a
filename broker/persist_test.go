package broker

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/kubesecret"
	"github.com/credbroker/credbroker/internal/kubesecret/fakeapi"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/sidecar"
)

// persistFixture is a fake API server with an empty Secret, a CA for the
// pairs, and stores (replicas) that share the Secret.
type persistFixture struct {
	t   *testing.T
	api *fakeapi.Server
	ca  *testpki.CA
	cfg kubesecret.Config
}

func newPersistFixture(t *testing.T) *persistFixture {
	t.Helper()
	apiCA := testpki.NewCA()
	api := fakeapi.Start(testpki.ServerTLSConfig(apiCA.Issue(testpki.WithIPs("127.0.0.1"), testpki.ServerAuth()), nil), "sa-token-abcdefgh")
	t.Cleanup(api.Close)
	sa := t.TempDir()
	for f, data := range map[string][]byte{"token": []byte("sa-token-abcdefgh"), "ca.crt": apiCA.CertPEM()} {
		if err := os.WriteFile(filepath.Join(sa, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host, port := api.HostPort()
	api.Put("apps", "identity", nil)
	return &persistFixture{t: t, api: api, ca: testpki.NewCA(), cfg: kubesecret.Config{Host: host, Port: port, ServiceAccountDir: sa, Namespace: "apps", Name: "identity", Timeout: 2 * time.Second}}
}

func (f *persistFixture) pair(validity time.Duration) *storedPair {
	f.t.Helper()
	l := f.ca.Issue(testpki.WithCommonName("app"), testpki.WithValidity(validity), testpki.ClientAuth())
	sp, err := parseStored(map[string][]byte{certwatch.CertFile: l.CertPEM(), certwatch.KeyFile: l.KeyPEM(testpki.PKCS8), certwatch.CAFile: f.ca.CertPEM()}, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return sp
}

func (f *persistFixture) store(holder string, m *sidecar.Metrics, cur *storedPair) *identityStore {
	f.t.Helper()
	api, err := kubesecret.New(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	dir := filepath.Join(f.t.TempDir(), "connector")
	if err := certwatch.Persist(context.Background(), dir, cur.files()); err != nil {
		f.t.Fatal(err)
	}
	return &identityStore{
		name: "connector", dir: dir, api: api, log: slog.New(slog.DiscardHandler), metrics: m, now: time.Now, holder: holder,
		cfg: sidecar.KubernetesSecret{PollInterval: time.Second, RequestTimeout: 2 * time.Second, LockDuration: 30 * time.Second, StartTimeout: 5 * time.Second},
	}
}

// TestTwoReplicasRenewingAtOnceRenewOnce: both read the same
// resourceVersion before either claims; one claim wins, the other gets 409,
// reads again, waits for the winner's pair and returns that: one renewal at
// the connector, one identity.
func TestTwoReplicasRenewingAtOnceRenewOnce(t *testing.T) {
	g := NewWithT(t)
	f := newPersistFixture(t)
	cur := f.pair(time.Hour)
	m := sidecar.NewMetrics()
	a, b := f.store("a", m, cur), f.store("b", m, cur)
	g.Expect(a.publish(context.Background())).To(Succeed())
	g.Expect(f.api.Counts().Puts).To(Equal(1))

	// The first claim waits until both replicas have read the Secret.
	var once sync.Once
	f.api.OnPut(func() {
		once.Do(func() {
			g.Eventually(func() int { return f.api.Counts().Gets }).WithTimeout(10 * time.Second).Should(BeNumerically(">=", 3))
		})
	})
	var calls atomic.Int32
	next := f.pair(2 * time.Hour)
	inner := certwatch.RenewerFunc(func(ctx context.Context, c tls.Certificate) ([]byte, []byte, []byte, error) {
		calls.Add(1)
		return next.cert, next.key, nil, nil
	})
	curTLS := cur.pair.TLSCertificate()
	var wg sync.WaitGroup
	got := make([]*storedPair, 2)
	errs := make([]error, 2)
	for i, s := range []*identityStore{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			got[i], errs[i] = s.renew(ctx, curTLS, inner)
		}()
	}
	wg.Wait()
	g.Expect(errs).To(HaveExactElements(Succeed(), Succeed()))
	g.Expect(calls.Load()).To(BeEquivalentTo(1), "one renewal at the connector")
	g.Expect(got[0].pair.SHA256()).To(Equal(next.pair.SHA256()))
	g.Expect(got[1].pair.SHA256()).To(Equal(next.pair.SHA256()))
	g.Expect(f.api.Counts().Conflicts).To(BeNumerically(">=", 1), "the loser's claim got 409")
	data, _ := f.api.Data("apps", "identity")
	g.Expect(data[certwatch.CertFile]).To(Equal(next.cert))
	sec, err := a.api.Get(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sec.Annotations).NotTo(HaveKey(lockAnnotation), "the claim is released with the write")
}

// TestARenewalTheSecretCannotTakeIsNotPresented: the API server is down
// after the connector renewed: renew fails (the watcher keeps the old pair)
// and the next attempt writes the pending pair instead of renewing again.
func TestARenewalTheSecretCannotTakeIsNotPresented(t *testing.T) {
	g := NewWithT(t)
	f := newPersistFixture(t)
	cur := f.pair(time.Hour)
	s := f.store("a", sidecar.NewMetrics(), cur)
	g.Expect(s.publish(context.Background())).To(Succeed())
	next := f.pair(2 * time.Hour)
	var calls atomic.Int32
	inner := certwatch.RenewerFunc(func(ctx context.Context, c tls.Certificate) ([]byte, []byte, []byte, error) {
		calls.Add(1)
		f.api.SetDown(true) // the write after the renewal fails
		return next.cert, next.key, nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := s.renew(ctx, cur.pair.TLSCertificate(), inner)
	g.Expect(err).To(MatchError(ContainSubstring("kubernetes secret apps/identity")))
	data, _ := f.api.Data("apps", "identity")
	g.Expect(data[certwatch.CertFile]).To(Equal(cur.cert))

	f.api.SetDown(false)
	sp, err := s.renew(context.Background(), cur.pair.TLSCertificate(), inner)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(calls.Load()).To(BeEquivalentTo(1), "the pending pair is written, not renewed again")
	g.Expect(sp.pair.SHA256()).To(Equal(next.pair.SHA256()))
	data, _ = f.api.Data("apps", "identity")
	g.Expect(data[certwatch.CertFile]).To(Equal(next.cert))
}

// TestAnExpiredClaimIsTakenOver: a replica that died holding the claim
// does not block renewal beyond lock_duration.
func TestAnExpiredClaimIsTakenOver(t *testing.T) {
	g := NewWithT(t)
	f := newPersistFixture(t)
	cur := f.pair(time.Hour)
	s := f.store("a", sidecar.NewMetrics(), cur)
	g.Expect(s.publish(context.Background())).To(Succeed())
	sec, err := s.api.Get(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	sec.Annotations[lockAnnotation] = `{"holder":"dead","until":"2000-01-01T00:00:00Z"}`
	_, err = s.api.Update(context.Background(), sec)
	g.Expect(err).NotTo(HaveOccurred())
	next := f.pair(2 * time.Hour)
	sp, err := s.renew(context.Background(), cur.pair.TLSCertificate(), certwatch.RenewerFunc(func(context.Context, tls.Certificate) ([]byte, []byte, []byte, error) {
		return next.cert, next.key, nil, nil
	}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sp.pair.SHA256()).To(Equal(next.pair.SHA256()))
}

// TestAClaimReachingFarAheadIsVoid: a claim whose until lies further ahead
// than any replica writes (a hand-edited Secret, a broken clock, a hostile
// writer) must not stop renewal until the certificate expires.
func TestAClaimReachingFarAheadIsVoid(t *testing.T) {
	g := NewWithT(t)
	f := newPersistFixture(t)
	cur := f.pair(time.Hour)
	s := f.store("a", sidecar.NewMetrics(), cur)
	g.Expect(s.publish(context.Background())).To(Succeed())
	sec, err := s.api.Get(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	sec.Annotations[lockAnnotation] = `{"holder":"stuck","until":"2999-01-01T00:00:00Z"}`
	_, err = s.api.Update(context.Background(), sec)
	g.Expect(err).NotTo(HaveOccurred())
	next := f.pair(2 * time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp, err := s.renew(ctx, cur.pair.TLSCertificate(), certwatch.RenewerFunc(func(context.Context, tls.Certificate) ([]byte, []byte, []byte, error) {
		return next.cert, next.key, nil, nil
	}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sp.pair.SHA256()).To(Equal(next.pair.SHA256()))

	// A claim within two lock_durations holds.
	g.Expect(s.lockLive(renewalLock{Holder: "b", Until: time.Now().Add(s.cfg.LockDuration)})).To(BeTrue())
	g.Expect(s.lockLive(renewalLock{Holder: "b", Until: time.Now().Add(3 * s.cfg.LockDuration)})).To(BeFalse())
	g.Expect(s.lockLive(renewalLock{Holder: "b", Until: time.Now().Add(-time.Second)})).To(BeFalse())
}

// TestAPairForAnotherSubjectIsNeverAdopted: whoever can write the Secret
// must not make the replicas switch to another identity, however long it
// lives; nor to a pair whose key does not match, that expired or that is
// not yet valid.
func TestAPairForAnotherSubjectIsNeverAdopted(t *testing.T) {
	g := NewWithT(t)
	f := newPersistFixture(t)
	cur := f.pair(time.Hour)
	s := f.store("a", sidecar.NewMetrics(), cur)
	g.Expect(s.publish(context.Background())).To(Succeed())
	other := f.ca.Issue(testpki.WithCommonName("another-app"), testpki.WithValidity(10*time.Hour), testpki.ClientAuth())
	f.api.Put("apps", "identity", map[string][]byte{certwatch.CertFile: other.CertPEM(), certwatch.KeyFile: other.KeyPEM(testpki.PKCS8), certwatch.CAFile: f.ca.CertPEM()})
	sp, err := parseStored(map[string][]byte{certwatch.CertFile: other.CertPEM(), certwatch.KeyFile: other.KeyPEM(testpki.PKCS8), certwatch.CAFile: f.ca.CertPEM()}, time.Now())
	g.Expect(err).NotTo(HaveOccurred(), "a valid pair in itself")
	g.Expect(newer(sp, cur.pair.Leaf())).To(BeFalse())

	next := f.pair(2 * time.Hour)
	var calls atomic.Int32
	got, err := s.renew(context.Background(), cur.pair.TLSCertificate(), certwatch.RenewerFunc(func(context.Context, tls.Certificate) ([]byte, []byte, []byte, error) {
		calls.Add(1)
		return next.cert, next.key, nil, nil
	}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(calls.Load()).To(BeEquivalentTo(1), "renewed at the connector instead")
	g.Expect(got.pair.SHA256()).To(Equal(next.pair.SHA256()))
	g.Expect(got.pair.Leaf().Subject.CommonName).To(Equal("app"))

	// Pairs parseStored refuses, so that neither start nor poll adopts them.
	mismatch := f.ca.Issue(testpki.WithCommonName("app"), testpki.WithValidity(10*time.Hour), testpki.ClientAuth())
	expired := f.ca.Issue(testpki.WithCommonName("app"), testpki.WithValidity(time.Hour), testpki.ClientAuth())
	for name, d := range map[string]map[string][]byte{
		"key of another certificate": {certwatch.CertFile: mismatch.CertPEM(), certwatch.KeyFile: next.key, certwatch.CAFile: f.ca.CertPEM()},
		"untrusted by its CA":        {certwatch.CertFile: mismatch.CertPEM(), certwatch.KeyFile: mismatch.KeyPEM(testpki.PKCS8), certwatch.CAFile: testpki.NewCA().CertPEM()},
	} {
		_, err := parseStored(d, time.Now())
		g.Expect(err).To(HaveOccurred(), name)
	}
	_, err = parseStored(map[string][]byte{certwatch.CertFile: expired.CertPEM(), certwatch.KeyFile: expired.KeyPEM(testpki.PKCS8), certwatch.CAFile: f.ca.CertPEM()}, time.Now().Add(2*time.Hour))
	g.Expect(err).To(HaveOccurred(), "expired")
	_, err = parseStored(map[string][]byte{certwatch.CertFile: expired.CertPEM(), certwatch.KeyFile: expired.KeyPEM(testpki.PKCS8), certwatch.CAFile: f.ca.CertPEM()}, time.Now().Add(-time.Hour))
	g.Expect(err).To(HaveOccurred(), "not yet valid")
}

func TestApplyPersistSecretFlag(t *testing.T) {
	g := NewWithT(t)
	cfg, err := sidecar.ParseConfig([]byte("certificates:\n  - {name: c, dir: /tmp/c, pairing_url_file: /tmp/p}\n  - {name: d, dir: /tmp/d}\n"), "test")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(applyPersistSecret(cfg, "apps/identity")).To(Succeed())
	g.Expect(cfg.Certificates[0].Persist.KubernetesSecret.Name).To(Equal("identity"))
	g.Expect(cfg.Certificates[0].Persist.KubernetesSecret.Namespace).To(Equal("apps"))
	g.Expect(cfg.Certificates[0].Persist.KubernetesSecret.LockDuration).To(Equal(sidecar.DefaultPersistLockDuration))
	g.Expect(cfg.Certificates[1].Persist).To(BeNil())
	g.Expect(applyPersistSecret(cfg, "other")).To(MatchError(ContainSubstring("sets persist: already")))

	cfg, err = sidecar.ParseConfig([]byte("certificates:\n  - {name: c, dir: /tmp/c, pairing_url_file: /tmp/p}\n"), "test")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(applyPersistSecret(cfg, "Bad_Name")).To(MatchError(ContainSubstring("DNS subdomain")))

	cfg, err = sidecar.ParseConfig([]byte("certificates:\n  - {name: d, dir: /tmp/d}\n"), "test")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(applyPersistSecret(cfg, "identity")).To(MatchError(ContainSubstring("no certificate pairs at start")))
}
