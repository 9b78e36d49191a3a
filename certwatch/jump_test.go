package certwatch_test

import (
	"context"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/clock"
	"github.com/credbroker/credbroker/internal/clock/fakeclock"
	"github.com/credbroker/credbroker/internal/testpki"
)

var _ = Describe("a wall-clock jump", func() {
	It("re-evaluates the renewal schedule: a renewal due during a suspend runs at once after it", func() {
		const ttl = 30 * time.Minute // renewal at 20 min
		t0 := time.Now().Truncate(time.Second)
		ca := testpki.NewCA()
		fc := fakeclock.New(t0)
		dir := filepath.Join(GinkgoT().TempDir(), "connector")
		first := ca.Issue(testpki.WithCommonName("app1"), testpki.WithNotBeforeAfter(t0, t0.Add(ttl)))
		Expect(certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: first.CertPEM(), KeyPEM: first.KeyPEM(testpki.PKCS8), CAPEM: ca.CertPEM()})).To(Succeed())
		renewer := &fakeRenewer{ca: ca, clock: fc, ttl: ttl}
		jw := clock.NewJumpWatcher(fc, time.Second, 2*time.Second, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = jw.Run(ctx) }()
		DeferCleanup(func() { cancel(); <-done })
		// The jump watcher has taken its first sample and armed its tick,
		// its one wait until the clock moves. (A jump before that sample
		// would be its baseline, never seen as a jump.)
		Eventually(fc.Waiters).Should(Equal(1))
		w, err := certwatch.New(context.Background(), certwatch.WithDir(dir), certwatch.WithRenewer(renewer),
			certwatch.WithClock(fc), certwatch.WithPolicy(certwatch.Policy{Jitter: -1}),
			certwatch.WithoutFSNotify(), certwatch.WithPollInterval(0), certwatch.WithClockJumps(jw))
		Expect(err).NotTo(HaveOccurred())
		run(w)
		Expect(w.Status().NextRenewal).To(BeTemporally("==", t0.Add(20*time.Minute)))
		// Run's loop has armed the renewal too: the only other wait (no
		// backstop, no file events). Without it the jump could come first,
		// and a renewal timer armed after the jump fires at once: the spec
		// would pass without the jump being noticed.
		Eventually(fc.Waiters).Should(BeNumerically(">=", 2))

		fc.Jump(21 * time.Minute) // suspended past the renewal: no wait fires
		Expect(w.Status().Renewals).To(BeZero())
		// A few seconds of monotonic time later the renewal has run (the
		// monotonic wait alone would fire only 20 minutes later).
		Eventually(func() int {
			fc.Advance(100 * time.Millisecond)
			return w.Status().Renewals
		}).WithTimeout(5 * time.Second).Should(Equal(1))
		Expect(fc.Now()).To(BeTemporally("<", t0.Add(22*time.Minute)))
		Expect(jw.Jumps()).To(BeNumerically(">=", 1))
	})
})
