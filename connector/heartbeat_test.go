package connector_test

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/clock/fakeclock"
)

func TestHeartbeatReportsAndPublishesChanges(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(20 * time.Second) // mTLS calls on a loaded machine under -race
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app")
	c := f.client(connector.WithCertificate(p.TLSCertificate()), connector.WithRetry(1, time.Millisecond))

	ticks := make(chan time.Time)
	results := make(chan connector.HeartbeatResult, 16)
	changes := make(chan connector.ManagementInfo, 16)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clk := fakeclock.New(now)
	hb, err := connector.NewHeartbeat(c, p.API.InfoURL,
		connector.HeartbeatTicks(ticks),
		connector.HeartbeatClock(clk),
		connector.OnResult(func(r connector.HeartbeatResult) { results <- r }),
		connector.OnChange(func(i connector.ManagementInfo) { changes <- i }),
	)
	g.Expect(err).NotTo(HaveOccurred())
	runCtx, cancel := context.WithCancel(ctx(t))
	done := make(chan error, 1)
	go func() { done <- hb.Run(runCtx) }()

	// First beat at once: a change (nothing was known).
	var r connector.HeartbeatResult
	g.Eventually(results).Should(Receive(&r))
	g.Expect(r.Err).NotTo(HaveOccurred())
	g.Expect(r.Changed).To(BeTrue())
	g.Expect(r.Time).To(Equal(now))
	var changed connector.ManagementInfo
	g.Expect(changes).To(Receive(&changed))
	g.Expect(changed.URLs.EventsURL).To(Equal(f.URL + "/app/v1/events"))

	// Same answer: reported, not published.
	ticks <- now
	g.Eventually(results).Should(Receive(&r))
	g.Expect(r.Changed).To(BeFalse())
	g.Expect(changes).NotTo(Receive())

	// A new events URL: published.
	f.Set(func(f *fakeConnector) { f.EventsURL = "https://gateway.localhost/app/v2/events" })
	ticks <- now
	g.Eventually(results).Should(Receive(&r))
	g.Expect(r.Changed).To(BeTrue())
	g.Expect(changes).To(Receive(&changed))
	g.Expect(changed.URLs.EventsURL).To(Equal("https://gateway.localhost/app/v2/events"))

	// The connector fails: reported, counted, nothing published.
	f.Set(func(f *fakeConnector) {
		f.Fault = func(string) (int, string) { return 503, `{"code":503,"error":"down"}` }
	})
	for i := 1; i <= 2; i++ {
		now = now.Add(time.Minute)
		clk.Set(now)
		ticks <- now
		g.Eventually(results).Should(Receive(&r))
		g.Expect(r.Err).To(HaveOccurred())
		g.Expect(r.Info).To(BeNil())
		g.Expect(hb.Status().ConsecutiveFailures).To(Equal(i))
	}
	g.Expect(changes).NotTo(Receive())
	st := hb.Status()
	g.Expect(st.LastError).To(MatchError(ContainSubstring("down")))
	g.Expect(st.LastSuccess).To(Equal(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)))
	g.Expect(st.LastAttempt).To(Equal(now))
	g.Expect(st.Failures).To(Equal(2))
	g.Expect(st.Successes).To(Equal(3))

	// Back, with a runtime token URL for the second phase: published.
	rt, _ := f.NewToken("runtime")
	f.Set(func(f *fakeConnector) { f.Fault = nil; f.RuntimeTokenURL = rt })
	ticks <- now
	g.Eventually(results).Should(Receive(&r))
	g.Expect(r.Err).NotTo(HaveOccurred())
	g.Expect(changes).To(Receive(&changed))
	g.Expect(changed.RuntimeTokenURL()).To(Equal(rt))
	g.Expect(hb.Status().ConsecutiveFailures).To(Equal(0))
	g.Expect(hb.Status().Info.RuntimeTokenURL()).To(Equal(rt))

	// A fresh token for the same runtime connector is not a change, but the
	// result carries it.
	rt2, _ := f.NewToken("runtime")
	f.Set(func(f *fakeConnector) { f.RuntimeTokenURL = rt2 })
	ticks <- now
	g.Eventually(results).Should(Receive(&r))
	g.Expect(r.Changed).To(BeFalse())
	g.Expect(r.Info.RuntimeTokenURL()).To(Equal(rt2))
	g.Expect(changes).NotTo(Receive())

	cancel()
	g.Eventually(done).Should(Receive(BeNil()))
}

func TestHeartbeatWithKnownInfoPublishesOnlyChanges(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	conn, err := f.client().Connect(ctx(t), first(f.NewToken("app")))
	g.Expect(err).NotTo(HaveOccurred())
	c := f.client(connector.WithCertificate(conn.Pairing.TLSCertificate()))
	var published int
	hb, err := connector.NewHeartbeat(c, conn.InfoURL,
		connector.InitialInfo(conn.ConnectionInfo.ManagementInfo()),
		connector.OnChange(func(connector.ManagementInfo) { published++ }))
	g.Expect(err).NotTo(HaveOccurred())
	r := hb.Beat(ctx(t))
	g.Expect(r.Err).NotTo(HaveOccurred())
	g.Expect(r.Changed).To(BeFalse())
	g.Expect(published).To(Equal(0))
}

func TestHeartbeatOptions(t *testing.T) {
	g := NewWithT(t)
	c, _ := connector.New()
	_, err := connector.NewHeartbeat(c, "")
	g.Expect(err).To(MatchError(connector.ErrInvalidInput))
	_, err = connector.NewHeartbeat(c, "https://x.localhost/info", connector.HeartbeatInterval(0))
	g.Expect(err).To(MatchError(connector.ErrInvalidInput))
	_, err = connector.NewHeartbeat(c, "https://x.localhost/info", connector.HeartbeatClock(nil))
	g.Expect(err).To(MatchError(connector.ErrInvalidInput))
}

func first[A, B any](a A, _ B) A { return a }

// A wall-clock jump makes the heartbeat beat at once, without waiting for
// its ticker (which runs on the monotonic clock and stops during a suspend).
func TestHeartbeatBeatsOnAClockJump(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(20 * time.Second)
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app")
	c := f.client(connector.WithCertificate(p.TLSCertificate()), connector.WithRetry(1, time.Millisecond))
	results := make(chan connector.HeartbeatResult, 16)
	var mu sync.Mutex
	jump := make(chan struct{})
	changed := func() <-chan struct{} { mu.Lock(); defer mu.Unlock(); return jump }
	signal := func() { mu.Lock(); close(jump); jump = make(chan struct{}); mu.Unlock() } // as clock.JumpWatcher does
	hb, err := connector.NewHeartbeat(c, p.API.InfoURL,
		connector.HeartbeatTicks(make(chan time.Time)), // never ticks
		connector.HeartbeatJumps(changed),
		connector.OnResult(func(r connector.HeartbeatResult) { results <- r }),
	)
	g.Expect(err).NotTo(HaveOccurred())
	runCtx, cancel := context.WithCancel(ctx(t))
	done := make(chan error, 1)
	go func() { done <- hb.Run(runCtx) }()
	g.Eventually(results).Should(Receive()) // the first beat, at start
	g.Consistently(results, 100*time.Millisecond).ShouldNot(Receive())
	signal()
	g.Eventually(results).Should(Receive())
	g.Consistently(results, 100*time.Millisecond).ShouldNot(Receive(), "one beat per jump")
	cancel()
	g.Eventually(done).Should(Receive(BeNil()))
}

// Without HeartbeatTicks the beats follow the heartbeat's clock: a test
// clock that advances by the interval makes it beat (the end-to-end suites
// fast-forward the binary this way).
func TestHeartbeatBeatsOnItsClock(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(20 * time.Second)
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app")
	c := f.client(connector.WithCertificate(p.TLSCertificate()), connector.WithRetry(1, time.Millisecond))
	clk := fakeclock.New(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	results := make(chan connector.HeartbeatResult, 16)
	hb, err := connector.NewHeartbeat(c, p.API.InfoURL, connector.HeartbeatClock(clk), connector.HeartbeatInterval(time.Hour),
		connector.OnResult(func(r connector.HeartbeatResult) { results <- r }))
	g.Expect(err).NotTo(HaveOccurred())
	runCtx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	go func() { _ = hb.Run(runCtx) }()
	g.Eventually(results).Should(Receive())
	g.Eventually(clk.Waiters).Should(Equal(1))
	g.Consistently(results, 50*time.Millisecond).ShouldNot(Receive(), "no beat before the interval passed on the clock")
	clk.Advance(time.Hour)
	var r connector.HeartbeatResult
	g.Eventually(results).Should(Receive(&r))
	g.Expect(r.Time).To(Equal(clk.Now()))
}
