package testclock_test

import (
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/clock"
	"github.com/credbroker/credbroker/internal/clock/testclock"
)

func TestAdvanceFiresWaitsAndJumpDoesNot(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "clock")
	ctl, err := testclock.Create(path)
	g.Expect(err).NotTo(HaveOccurred())
	a, err := testclock.Open(path)
	g.Expect(err).NotTo(HaveOccurred())
	b, err := testclock.Open(path)
	g.Expect(err).NotTo(HaveOccurred())

	fired := make(chan struct{})
	a.AfterFunc(time.Hour, func() { close(fired) })
	at := b.At(b.Now().Add(24 * time.Hour))
	stopped := a.AfterFunc(time.Hour, func() { t.Error("a stopped timer ran") })
	g.Expect(stopped.Stop()).To(BeTrue())

	before := a.Now()
	ctl.Jump(48 * time.Hour)
	// The jump moves the wall clock of every process at once…
	g.Expect(a.Now().Sub(before)).To(BeNumerically(">=", 48*time.Hour))
	g.Expect(b.Now().Sub(before)).To(BeNumerically(">=", 48*time.Hour))
	// …and is what the jump check sees (wall beside monotonic).
	s0 := clock.Sample{Wall: before, Mono: a.Monotonic()}
	s1, ok := clock.Read(a)
	g.Expect(ok).To(BeTrue())
	g.Expect(clock.Jump(s0, s1)).To(BeNumerically(">=", 47*time.Hour))
	// A jump fires no timer: they run on the monotonic clock.
	g.Consistently(fired, 50*time.Millisecond).ShouldNot(BeClosed())
	g.Expect(at).NotTo(Receive())

	ctl.Advance(time.Hour)
	g.Eventually(fired).Should(BeClosed())
	g.Consistently(at, 20*time.Millisecond).ShouldNot(Receive())
	ctl.Advance(23 * time.Hour)
	g.Eventually(at).Should(Receive())
	g.Eventually(a.Pending).Should(BeZero())
	adv, jump := ctl.Offsets()
	g.Expect(adv).To(Equal(24 * time.Hour))
	g.Expect(jump).To(Equal(48 * time.Hour))
	g.Expect(clock.Sleep(t.Context(), a, 0)).To(Succeed())
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	g := NewWithT(t)
	_, err := testclock.Open(filepath.Join(t.TempDir(), "missing"))
	g.Expect(err).To(HaveOccurred())
	path := filepath.Join(t.TempDir(), "clock")
	_, err = testclock.Create(path)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = testclock.Create(path)
	g.Expect(err).To(HaveOccurred(), "Create never reuses a file")
}
