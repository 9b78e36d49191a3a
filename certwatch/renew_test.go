package certwatch_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/credbroker/credbroker/internal/syncbuf"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/clock/fakeclock"
	"github.com/credbroker/credbroker/internal/testpki"
)

// newMTLSServer answers every request with the serial of the client
// certificate, and requires one signed by ca. now, when not nil, is the
// server's clock (the fake one of the renewal specs).
func newMTLSServer(ca *testpki.CA, now func() time.Time) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].SerialNumber.String())
	}))
	srv.TLS = testpki.ServerTLSConfig(ca.Issue(testpki.ServerAuth(), testpki.WithIPs("127.0.0.1"), testpki.WithValidity(24*time.Hour)), ca.Pool())
	srv.TLS.Time = now
	srv.StartTLS()
	DeferCleanup(srv.Close)
	return srv
}

// newMTLSClient presents w's certificate; no keep-alive, so every request
// is a new handshake.
func newMTLSClient(ca *testpki.CA, w *certwatch.Watcher, now func() time.Time) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: w.GetClientCertificate,
			MinVersion: tls.VersionTLS12, Time: now},
	}}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

var _ = Describe("renewal", func() {
	const ttl = 30 * time.Minute // renewal at 20 min, emergency window from 27 min
	var (
		ca      *testpki.CA
		clock   *fakeclock.Clock
		dir     string
		first   *testpki.Leaf
		renewer *fakeRenewer
		obs     *events
		log     *slog.Logger
		buf     *syncbuf.Buffer
		t0      time.Time
	)
	BeforeEach(func() {
		t0 = time.Now().Truncate(time.Second)
		ca = testpki.NewCA()
		clock = fakeclock.New(t0)
		dir = filepath.Join(GinkgoT().TempDir(), "connector")
		first = ca.Issue(testpki.WithCommonName("app1"), testpki.WithNotBeforeAfter(t0, t0.Add(ttl)))
		Expect(certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: first.CertPEM(), KeyPEM: first.KeyPEM(testpki.PKCS8), CAPEM: ca.CertPEM(),
			Extra: map[string][]byte{certwatch.ConnectionFile: []byte(`{"application":"app1"}`)}})).To(Succeed())
		renewer = &fakeRenewer{ca: ca, clock: clock, ttl: ttl}
		obs = &events{}
		log, buf = newLogger()
	})
	start := func() *certwatch.Watcher {
		w, err := certwatch.New(context.Background(), certwatch.WithDir(dir), certwatch.WithRenewer(renewer),
			certwatch.WithClock(clock), certwatch.WithPolicy(certwatch.Policy{Jitter: -1}),
			certwatch.WithoutFSNotify(), certwatch.WithPollInterval(0),
			certwatch.WithObserver(obs), certwatch.WithLogger(log), certwatch.WithName("connector"))
		Expect(err).NotTo(HaveOccurred())
		run(w)
		return w
	}
	// advanceTo moves the clock to t (again and again, until cond holds:
	// the Watcher's goroutine may arm its timer after the first move).
	advanceUntil := func(t time.Time, cond func() bool) {
		Eventually(func() bool {
			clock.Set(t)
			return cond()
		}).Should(BeTrue())
	}
	renewals := func(w *certwatch.Watcher, n int) func() bool {
		return func() bool { return w.Status().Renewals == n }
	}

	It("renews at two thirds, several times in a row, persisting each pair", func() {
		w := start()
		st := w.Status()
		Expect(st.NextRenewal).To(BeTemporally("==", t0.Add(20*time.Minute)))
		Expect(st.Phase).To(Equal(certwatch.PhaseValid))
		srv := newMTLSServer(ca, clock.Now)
		client := newMTLSClient(ca, w, clock.Now)
		Expect(get(client, srv.URL)).To(Equal(serialText(first)))

		prev := serialText(first)
		for i := 1; i <= 3; i++ {
			updated := w.Updated()
			at := w.Status().NextRenewal
			advanceUntil(at, renewals(w, i))
			Eventually(updated).Should(BeClosed())
			st := w.Status()
			issued := renewer.issued[i-1]
			Expect(st.Serial).To(Equal(serialText(issued)))
			Expect(renewer.presented[i-1]).To(Equal(prev), "the current certificate is presented to renew")
			Expect(st.NextRenewal).To(BeTemporally("==", at.Add(20*time.Minute)))
			Expect(st.Failures).To(BeZero())
			// On disk, whole and matching, with connection.json kept.
			p, err := certwatch.LoadDir(context.Background(), dir)
			Expect(err).NotTo(HaveOccurred())
			Expect(p.Serial()).To(Equal(serialText(issued)))
			Expect(filepath.Join(dir, certwatch.ConnectionFile)).To(BeARegularFile())
			// A real handshake presents the new serial.
			Expect(get(client, srv.URL)).To(Equal(serialText(issued)))
			prev = serialText(issued)
		}
		Eventually(obs.kinds).Should(HaveExactElements(certwatch.EventLoaded, certwatch.EventRenewed, certwatch.EventRenewed, certwatch.EventRenewed))
		Expect(renewer.callTimes()).To(HaveLen(3))
	})

	It("keeps the old certificate while the connector is down, backs off, then renews", func() {
		w := start()
		renewer.fail(errConnectorDown)
		renewAt := t0.Add(20 * time.Minute)
		advanceUntil(renewAt, func() bool { return w.Status().Failures == 1 })
		st := w.Status()
		Expect(st.Serial).To(Equal(serialText(first)))
		Expect(st.LastError).To(ContainSubstring("503"))
		Expect(st.NextRenewal).To(BeTemporally("==", renewAt.Add(time.Second)))
		Expect(st.Ready).To(BeTrue())
		Expect(st.NeedsToken).To(BeFalse())

		// 1 s, 2 s, 4 s, 8 s apart.
		for n := 2; n <= 5; n++ {
			next := w.Status().NextRenewal
			advanceUntil(next, func() bool { return w.Status().Failures == n })
		}
		calls := renewer.callTimes()
		Expect(calls).To(HaveLen(5))
		var gaps []time.Duration
		for i := 1; i < len(calls); i++ {
			gaps = append(gaps, calls[i].Sub(calls[i-1]))
		}
		Expect(gaps).To(Equal([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}))
		c, err := w.GetClientCertificate(nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Leaf.SerialNumber).To(Equal(first.Cert.SerialNumber), "the old certificate is still served")
		Expect(buf.String()).To(ContainSubstring("renewal failed; will retry"))

		renewer.fail(nil)
		advanceUntil(w.Status().NextRenewal, renewals(w, 1))
		st = w.Status()
		Expect(st.Failures).To(BeZero())
		Expect(st.LastError).To(BeEmpty())
		Expect(st.Serial).To(Equal(serialText(renewer.issued[0])))
		Eventually(obs.kinds).Should(ContainElements(certwatch.EventRenewFailed, certwatch.EventRenewed))
	})

	It("refuses a renewed pair that does not match and keeps the old one", func() {
		w := start()
		renewer.mismatch = true
		advanceUntil(t0.Add(20*time.Minute), func() bool { return w.Status().Failures == 1 })
		Expect(w.Status().LastError).To(ContainSubstring("does not match"))
		Expect(w.Status().Serial).To(Equal(serialText(first)))
		p, err := certwatch.LoadDir(context.Background(), dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Serial()).To(Equal(serialText(first)), "nothing was persisted")
	})

	It("retries faster near expiry and reports expiry loudly", func() {
		w := start()
		renewer.fail(errConnectorDown)
		advanceUntil(t0.Add(28*time.Minute), func() bool { return w.Status().Failures >= 1 })
		Expect(w.Status().Phase).To(Equal(certwatch.PhaseEmergency))
		for i := 0; i < 6; i++ {
			n := w.Status().Failures
			advanceUntil(w.Status().NextRenewal, func() bool { return w.Status().Failures == n+1 })
		}
		Expect(w.Status().NextRenewal.Sub(clock.Now())).To(BeNumerically("<=", 10*time.Second), "emergency backoff cap")
		Expect(buf.String()).To(ContainSubstring("renewal failed close to expiry"))

		advanceUntil(t0.Add(ttl+time.Second), func() bool { return w.Status().NeedsToken })
		st := w.Status()
		Expect(st.Phase).To(Equal(certwatch.PhaseExpired))
		Expect(st.Ready).To(BeFalse())
		Expect(st.NextRenewal).To(BeZero())
		Eventually(obs.kinds).Should(ContainElement(certwatch.EventExpired))
		Eventually(buf.String).Should(MatchRegexp(`"level":"ERROR","msg":"certwatch: certificate expired; a new one-time token is needed"`))
		Eventually(func() string { return w.Status().LastError }).Should(ContainSubstring("expired at"))
		calls := len(renewer.callTimes())
		clock.Advance(time.Hour)
		Consistently(func() int { return len(renewer.callTimes()) }, 200*time.Millisecond).Should(Equal(calls), "no attempts after expiry")
	})

	It("stops renewing when the connector says the certificate is revoked", func() {
		w := start()
		renewer.fail(revokedError{})
		advanceUntil(t0.Add(20*time.Minute), func() bool { return w.Status().NeedsToken })
		st := w.Status()
		Expect(st.NextRenewal).To(BeZero())
		Expect(st.LastError).To(ContainSubstring("revoked"))
		Expect(st.Revoked).To(BeTrue())
		Expect(st.Ready).To(BeTrue(), "a revoked certificate serves until it expires")
		Expect(buf.String()).To(ContainSubstring("a new one-time token is needed"))
		clock.Advance(5 * time.Minute)
		Consistently(func() int { return len(renewer.callTimes()) }, 200*time.Millisecond).Should(Equal(1))
	})

	It("renews on demand, and never logs key material", func() {
		w := start()
		Expect(w.Renew(context.Background())).To(Succeed())
		Expect(w.Status().Renewals).To(Equal(1))
		renewer.fail(errConnectorDown)
		err := w.Renew(context.Background())
		var re *certwatch.RenewError
		Expect(err).To(BeAssignableToTypeOf(re))
		Expect(err).To(MatchError(errConnectorDown))
		logs := buf.String()
		Expect(logs).To(ContainSubstring("certificate renewed"))
		for _, l := range append(renewer.issued, first) {
			Expect(logs).NotTo(ContainSubstring(keyBody(l.KeyPEM(testpki.PKCS8))))
		}
		Expect(logs).NotTo(ContainSubstring("PRIVATE KEY"))
		status, err := json.Marshal(w.Status())
		Expect(err).NotTo(HaveOccurred())
		Expect(string(status)).To(ContainSubstring(`"consecutive_failures":1`))
		Expect(string(status)).To(ContainSubstring(`"needs_token":false`))
		Expect(string(status)).NotTo(ContainSubstring("PRIVATE KEY"))
		for _, l := range append(renewer.issued, first) {
			Expect(string(status)).NotTo(ContainSubstring(keyBody(l.KeyPEM(testpki.PKCS8))))
		}
	})

	It("keeps a renewed pair live when the directory cannot be written", func() {
		w := start()
		// Make ..data a real directory (root ignores permissions, so this is
		// how the swap is made to fail): reads still work, the rename fails.
		gen, err := os.Readlink(filepath.Join(dir, "..data"))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.Remove(filepath.Join(dir, "..data"))).To(Succeed())
		Expect(os.Rename(filepath.Join(dir, gen), filepath.Join(dir, "..data"))).To(Succeed())

		Expect(w.Renew(context.Background())).To(Succeed())
		st := w.Status()
		Expect(st.Serial).To(Equal(serialText(renewer.issued[0])))
		Expect(st.LastError).To(ContainSubstring("persist"))
		Eventually(obs.kinds).Should(ContainElement(certwatch.EventPersistFailed))
		Expect(buf.String()).To(ContainSubstring("could not be written"))
		p, err := certwatch.LoadDir(context.Background(), dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Serial()).To(Equal(serialText(first)), "the old pair is still whole on disk")
	})

	It("makes no renewal without a Renewer, only the expiry report", func() {
		w, err := certwatch.New(context.Background(), certwatch.WithDir(dir), certwatch.WithClock(clock),
			certwatch.WithoutFSNotify(), certwatch.WithPollInterval(0), certwatch.WithLogger(log))
		Expect(err).NotTo(HaveOccurred())
		run(w)
		Expect(w.Status().NextRenewal).To(BeZero())
		Expect(w.Renew(context.Background())).To(MatchError(certwatch.ErrNoRenewer))
		advanceUntil(t0.Add(ttl+time.Second), func() bool { return strings.Contains(buf.String(), "certificate expired") })
		Expect(w.Status().NeedsToken).To(BeTrue())
	})
})
