package certwatch_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/syncbuf"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/clock/fakeclock"
	"github.com/credbroker/credbroker/internal/testpki"
)

func TestCertwatch(t *testing.T) {
	RegisterFailHandler(Fail)
	// fsync and key generation on two shared cores can take a while.
	SetDefaultEventuallyTimeout(15 * time.Second)
	SetDefaultEventuallyPollingInterval(5 * time.Millisecond)
	RunSpecs(t, "certwatch")
}

func newLogger() (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// events records what an Observer sees.
type events struct {
	mu   sync.Mutex
	list []certwatch.Event
}

func (e *events) Observe(ev certwatch.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

func (e *events) kinds() []certwatch.EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]certwatch.EventKind, 0, len(e.list))
	for _, ev := range e.list {
		out = append(out, ev.Kind)
	}
	return out
}

// fakeRenewer issues certificates from a testpki CA, valid from the fake
// clock's now for ttl, with a fresh key each time, and fails on demand
// (err, or fail returning an error).
type fakeRenewer struct {
	ca    *testpki.CA
	clock *fakeclock.Clock
	ttl   time.Duration

	mu        sync.Mutex
	err       error
	mismatch  bool
	calls     []time.Time // fake-clock time of every call
	presented []string    // serial of the certificate presented on every call
	issued    []*testpki.Leaf
}

func (r *fakeRenewer) Renew(ctx context.Context, current tls.Certificate) ([]byte, []byte, []byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, r.clock.Now())
	r.presented = append(r.presented, current.Leaf.SerialNumber.String())
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	now := r.clock.Now()
	leaf := r.ca.Issue(testpki.WithSubject(current.Leaf.Subject), testpki.WithNotBeforeAfter(now, now.Add(r.ttl)))
	r.issued = append(r.issued, leaf)
	key := leaf.KeyPEM(testpki.PKCS8)
	if r.mismatch {
		key = r.ca.Issue().KeyPEM(testpki.PKCS8)
	}
	return leaf.CertPEM(), key, r.ca.CertPEM(), nil
}

func (r *fakeRenewer) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *fakeRenewer) callTimes() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls...)
}

// revokedError is what the connector returns for a revoked certificate.
type revokedError struct{}

func (revokedError) Error() string    { return "connector: certificate revoked (403)" }
func (revokedError) NeedsToken() bool { return true }

// run starts w.Run and stops it when the spec ends, checking it returned.
func run(w *certwatch.Watcher) {
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	DeferCleanup(func() {
		Expect(w.Close()).To(Succeed())
		Eventually(done).Should(Receive(BeNil()))
		Expect(w.Close()).To(Succeed(), "Close is idempotent")
	})
}

func serialOf(w *certwatch.Watcher) func() string {
	return func() string { return w.Status().Serial }
}

func serialText(l *testpki.Leaf) string { return l.Cert.SerialNumber.String() }

func writePlain(dir string, leaf *testpki.Leaf, keyFrom *testpki.Leaf, ca *testpki.CA) {
	Expect(os.WriteFile(filepath.Join(dir, certwatch.KeyFile), keyFrom.KeyPEM(testpki.PKCS8), 0o600)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, certwatch.CertFile), leaf.CertPEM(), 0o644)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, certwatch.CAFile), ca.CertPEM(), 0o644)).To(Succeed())
}

func kubeFiles(leaf *testpki.Leaf, ca *testpki.CA) map[string][]byte {
	return map[string][]byte{
		certwatch.CertFile: leaf.CertPEM(),
		certwatch.KeyFile:  leaf.KeyPEM(testpki.SEC1),
		certwatch.CAFile:   ca.CertPEM(),
	}
}

var _ = Describe("loading", func() {
	var ca *testpki.CA
	BeforeEach(func() { ca = testpki.NewCA() })

	DescribeTable("loads every layout",
		func(write func(dir string, leaf *testpki.Leaf)) {
			dir := filepath.Join(GinkgoT().TempDir(), "certs")
			Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
			leaf := ca.Issue(testpki.WithCommonName("app1"))
			write(dir, leaf)
			w, err := certwatch.New(context.Background(), certwatch.WithDir(dir))
			Expect(err).NotTo(HaveOccurred())
			st := w.Status()
			Expect(st.Serial).To(Equal(serialText(leaf)))
			Expect(st.Subject).To(Equal("CN=app1"))
			Expect(st.Ready).To(BeTrue())
			Expect(st.NeedsToken).To(BeFalse())
			Expect(st.NotAfter).To(BeTemporally("==", leaf.Cert.NotAfter))
			Expect(w.CertPool()).NotTo(BeNil())
			c, err := w.GetClientCertificate(nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(c.Leaf.SerialNumber).To(Equal(leaf.Cert.SerialNumber))
		},
		Entry("the pair layout (Persist)", func(dir string, leaf *testpki.Leaf) {
			Expect(certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: leaf.CertPEM(), KeyPEM: leaf.KeyPEM(testpki.PKCS8), CAPEM: ca.CertPEM(),
				Extra: map[string][]byte{certwatch.ConnectionFile: []byte("{}")}})).To(Succeed())
		}),
		Entry("a Kubernetes secret mount", func(dir string, leaf *testpki.Leaf) {
			Expect(testpki.WriteKubernetesDir(dir, kubeFiles(leaf, ca))).To(Succeed())
		}),
		Entry("plain files", func(dir string, leaf *testpki.Leaf) { writePlain(dir, leaf, leaf, ca) }),
	)

	It("loads an xsuaa binding's certificate and key through a loader, literal \\n and all", func() {
		leaf := ca.Issue(testpki.WithCommonName("xsuaa"))
		esc := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte(`\n`)) }
		w, err := certwatch.New(context.Background(), certwatch.WithLoader(func(context.Context) ([]byte, []byte, []byte, error) {
			return esc(leaf.CertPEM()), esc(leaf.KeyPEM(testpki.PKCS8)), nil, nil
		}))
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Status().Serial).To(Equal(serialText(leaf)))
		Expect(w.Status().Source).To(Equal("loader"))
		Expect(w.CertPool()).To(BeNil())
	})

	DescribeTable("refuses a bad first pair",
		func(write func(dir string), want error, mention string) {
			dir := GinkgoT().TempDir()
			write(dir)
			_, err := certwatch.New(context.Background(), certwatch.WithDir(dir))
			Expect(err).To(MatchError(want))
			Expect(err.Error()).To(ContainSubstring(mention))
		},
		Entry("nothing there", func(string) {}, certwatch.ErrNoPair, "tls.crt"),
		Entry("key of another certificate", func(dir string) { writePlain(dir, ca.Issue(), ca.Issue(), ca) }, certwatch.ErrKeyMismatch, "does not match"),
		Entry("expired", func(dir string) {
			writePlain(dir, expiredLeaf(ca), expiredLeaf(ca), ca)
		}, certwatch.ErrKeyMismatch, ""),
		Entry("untrusted", func(dir string) {
			l := ca.Issue()
			writePlain(dir, l, l, testpki.NewCA())
		}, certwatch.ErrUntrusted, "verify"),
	)

	It("names the dates of an expired or not yet valid certificate", func() {
		for _, tc := range []struct {
			nb, na time.Time
			want   error
			text   string
			date   time.Time
		}{
			{time.Now().Add(-72 * time.Hour), time.Now().Add(-24 * time.Hour), certwatch.ErrExpired, "expired at", time.Now().Add(-24 * time.Hour)},
			{time.Now().Add(24 * time.Hour), time.Now().Add(72 * time.Hour), certwatch.ErrNotYetValid, "not yet valid: valid from", time.Now().Add(24 * time.Hour)},
		} {
			dir := GinkgoT().TempDir()
			l := ca.Issue(testpki.WithNotBeforeAfter(tc.nb, tc.na))
			writePlain(dir, l, l, ca)
			_, err := certwatch.New(context.Background(), certwatch.WithDir(dir))
			Expect(err).To(MatchError(tc.want))
			Expect(err.Error()).To(ContainSubstring(tc.text))
			Expect(err.Error()).To(ContainSubstring(tc.date.UTC().Format("2006-01-02T15")))
		}
	})

	It("rejects contradictory options", func() {
		_, err := certwatch.New(context.Background())
		Expect(err).To(MatchError(certwatch.ErrBadConfig))
		_, err = certwatch.New(context.Background(), certwatch.WithDir("x"), certwatch.WithLoader(func(context.Context) ([]byte, []byte, []byte, error) { return nil, nil, nil, nil }))
		Expect(err).To(MatchError(certwatch.ErrBadConfig))
	})

	It("starts without a pair when pairing will provide one, and picks it up", func() {
		dir := filepath.Join(GinkgoT().TempDir(), "not-yet")
		log, buf := newLogger()
		w, err := certwatch.New(context.Background(), certwatch.WithDir(dir), certwatch.AllowMissing(),
			certwatch.WithLogger(log), certwatch.WithDebounce(10*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())
		st := w.Status()
		Expect(st.Ready).To(BeFalse())
		Expect(st.NeedsToken).To(BeTrue())
		Expect(st.Phase).To(Equal(certwatch.PhaseNone))
		_, err = w.GetClientCertificate(nil)
		Expect(err).To(MatchError(certwatch.ErrNoPair))
		Expect(buf.String()).To(ContainSubstring("no usable certificate yet"))

		run(w)
		updated := w.Updated()
		leaf := ca.Issue()
		// The directory did not exist: the watch on its parent sees it appear.
		Expect(certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: leaf.CertPEM(), KeyPEM: leaf.KeyPEM(testpki.PKCS8), CAPEM: ca.CertPEM()})).To(Succeed())
		Eventually(updated).Should(BeClosed())
		Expect(w.Status().Serial).To(Equal(serialText(leaf)))
		Expect(w.Status().NeedsToken).To(BeFalse())
	})
})

func expiredLeaf(ca *testpki.CA) *testpki.Leaf {
	return ca.Issue(testpki.WithNotBeforeAfter(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))
}

var _ = Describe("watching the directory", func() {
	var (
		ca  *testpki.CA
		dir string
		obs *events
		log *slog.Logger
		buf *syncbuf.Buffer
	)
	BeforeEach(func() {
		ca = testpki.NewCA()
		dir = filepath.Join(GinkgoT().TempDir(), "certs")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		obs = &events{}
		log, buf = newLogger()
	})
	start := func(extra ...certwatch.Option) *certwatch.Watcher {
		opts := append([]certwatch.Option{certwatch.WithDir(dir), certwatch.WithDebounce(20 * time.Millisecond),
			certwatch.WithPollInterval(0), certwatch.WithObserver(obs), certwatch.WithLogger(log)}, extra...)
		w, err := certwatch.New(context.Background(), opts...)
		Expect(err).NotTo(HaveOccurred())
		run(w)
		return w
	}

	It("picks up a Kubernetes ..data swap", func() {
		first, second := ca.Issue(), ca.Issue()
		Expect(testpki.WriteKubernetesDir(dir, kubeFiles(first, ca))).To(Succeed())
		w := start()
		Expect(w.Status().Serial).To(Equal(serialText(first)))
		updated := w.Updated()
		Expect(testpki.WriteKubernetesDir(dir, kubeFiles(second, ca))).To(Succeed())
		Eventually(updated).Should(BeClosed())
		Eventually(serialOf(w)).Should(Equal(serialText(second)))
		Expect(w.Status().Reloads).To(Equal(2))
		Expect(obs.kinds()).To(HaveExactElements(certwatch.EventLoaded, certwatch.EventLoaded))
	})

	It("picks up files renamed into place", func() {
		first, second := ca.Issue(), ca.Issue()
		writePlain(dir, first, first, ca)
		w := start()
		staging := GinkgoT().TempDir()
		for name, data := range map[string][]byte{certwatch.KeyFile: second.KeyPEM(testpki.PKCS8), certwatch.CertFile: second.CertPEM()} {
			Expect(os.WriteFile(filepath.Join(staging, name), data, 0o600)).To(Succeed())
		}
		Expect(os.Rename(filepath.Join(staging, certwatch.KeyFile), filepath.Join(dir, certwatch.KeyFile))).To(Succeed())
		Expect(os.Rename(filepath.Join(staging, certwatch.CertFile), filepath.Join(dir, certwatch.CertFile))).To(Succeed())
		Eventually(serialOf(w)).Should(Equal(serialText(second)))
	})

	It("picks up files written in place", func() {
		first, second := ca.Issue(), ca.Issue()
		writePlain(dir, first, first, ca)
		w := start()
		writePlain(dir, second, second, ca)
		Eventually(serialOf(w)).Should(Equal(serialText(second)))
		Expect(w.Status().LastError).To(BeEmpty())
	})

	It("refuses a mismatched pair written by someone else and keeps the old one", func() {
		first := ca.Issue()
		writePlain(dir, first, first, ca)
		w := start()
		writePlain(dir, ca.Issue(), ca.Issue(), ca)
		Eventually(func() string { return w.Status().LastError }).Should(ContainSubstring("does not match"))
		Consistently(serialOf(w), 300*time.Millisecond).Should(Equal(serialText(first)))
		Expect(obs.kinds()).To(ContainElement(certwatch.EventReloadFailed))
		Expect(buf.String()).To(ContainSubstring("keeping the current one"))
		c, err := w.GetClientCertificate(nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Leaf.SerialNumber).To(Equal(first.Cert.SerialNumber))

		// An expired pair is refused the same way.
		old := expiredLeaf(ca)
		writePlain(dir, old, old, ca)
		Eventually(func() string { return w.Status().LastError }).Should(ContainSubstring("expired at"))
		Expect(w.Status().Serial).To(Equal(serialText(first)))

		// A good pair afterwards is taken.
		third := ca.Issue()
		writePlain(dir, third, third, ca)
		Eventually(serialOf(w)).Should(Equal(serialText(third)))
	})

	It("keeps watching when the directory is removed and written again", func() {
		first, second := ca.Issue(), ca.Issue()
		writePlain(dir, first, first, ca)
		w := start()
		Expect(os.RemoveAll(dir)).To(Succeed())
		Eventually(func() string { return w.Status().LastError }).Should(ContainSubstring("no certificate and key yet"))
		Expect(w.Status().Serial).To(Equal(serialText(first)), "the live pair stays")
		Expect(certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: second.CertPEM(), KeyPEM: second.KeyPEM(testpki.PKCS8), CAPEM: ca.CertPEM()})).To(Succeed())
		Eventually(serialOf(w)).Should(Equal(serialText(second)))
	})

	It("re-reads on the backstop when no file event arrives", func() {
		clock := fakeclock.New(time.Now())
		first, second := ca.Issue(), ca.Issue()
		Expect(testpki.WriteKubernetesDir(dir, kubeFiles(first, ca))).To(Succeed())
		w := start(certwatch.WithoutFSNotify(), certwatch.WithPollInterval(time.Minute), certwatch.WithClock(clock))
		// Run has made its start-up reads and put its watches in place:
		// from here on only the backstop reads the directory (no file
		// events). A timer armed is no such sign: which timers are armed,
		// and on which goroutine, is the code's business.
		Eventually(buf.String).Should(ContainSubstring(`"msg":"certwatch: watching"`))
		Expect(testpki.WriteKubernetesDir(dir, kubeFiles(second, ca))).To(Succeed())
		Consistently(serialOf(w), 300*time.Millisecond).Should(Equal(serialText(first)), "no events and the clock has not moved")
		Eventually(func() string {
			clock.Advance(time.Minute)
			return w.Status().Serial
		}).Should(Equal(serialText(second)))
	})

	It("serves a real TLS server the new certificate on the next handshake after a rotation", func() {
		first, second := ca.Issue(testpki.ClientAuth()), ca.Issue(testpki.ClientAuth())
		Expect(testpki.WriteKubernetesDir(dir, kubeFiles(first, ca))).To(Succeed())
		w := start()
		srv := newMTLSServer(ca, nil)
		client := newMTLSClient(ca, w, nil)
		Expect(get(client, srv.URL)).To(Equal(serialText(first)))
		Expect(testpki.WriteKubernetesDir(dir, kubeFiles(second, ca))).To(Succeed())
		Eventually(func() (string, error) { return get(client, srv.URL) }).Should(Equal(serialText(second)))
	})
})

var errConnectorDown = errors.New("connector: 503 service unavailable")

var _ = Describe("a loader source (an x509 binding)", func() {
	It("takes a rotated binding on Reload and refuses a broken one", func() {
		ca := testpki.NewCA()
		var (
			mu   sync.Mutex
			cert []byte
			key  []byte
		)
		set := func(c, k []byte) {
			mu.Lock()
			defer mu.Unlock()
			cert, key = c, k
		}
		first, second := ca.Issue(), ca.Issue()
		set(first.CertPEM(), first.KeyPEM(testpki.PKCS8))
		obs := &events{}
		w, err := certwatch.New(context.Background(), certwatch.WithObserver(obs), certwatch.WithLoader(func(context.Context) ([]byte, []byte, []byte, error) {
			mu.Lock()
			defer mu.Unlock()
			return cert, key, nil, nil
		}))
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Reload(context.Background())).To(Succeed(), "unchanged: nothing to do")
		Expect(w.Status().Reloads).To(Equal(1))

		set(second.CertPEM(), first.KeyPEM(testpki.PKCS8)) // half rotated
		Expect(w.Reload(context.Background())).To(MatchError(certwatch.ErrKeyMismatch))
		Expect(w.Status().Serial).To(Equal(serialText(first)))

		set(second.CertPEM(), second.KeyPEM(testpki.SEC1))
		updated := w.Updated()
		Expect(w.Reload(context.Background())).To(Succeed())
		Expect(updated).To(BeClosed())
		Expect(w.Status().Serial).To(Equal(serialText(second)))
		Expect(w.Status().LastError).To(BeEmpty())
		Expect(obs.kinds()).To(HaveExactElements(certwatch.EventLoaded, certwatch.EventReloadFailed, certwatch.EventLoaded))
	})
})
