package broker

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/vcap"
)

func TestRefPoolSharesUntilTheLastRelease(t *testing.T) {
	g := NewWithT(t)
	var p refPool[int]
	made, closed := 0, 0
	mk := func() (int, func(), error) { made++; return made, func() { closed++ }, nil }

	v1, rel1, err := p.acquire("a", mk)
	g.Expect(err).NotTo(HaveOccurred())
	v2, rel2, _ := p.acquire("a", mk) // the next generation, same inputs
	g.Expect(v2).To(Equal(v1))
	g.Expect(made).To(Equal(1))
	rel1()
	rel1() // idempotent
	g.Expect(closed).To(Equal(0), "still held by the second generation")
	rel2()
	g.Expect(closed).To(Equal(1))

	v3, rel3, _ := p.acquire("a", mk)
	g.Expect(v3).To(Equal(2), "a released key is made again")
	_, _, err = p.acquire("b", func() (int, func(), error) { return 0, nil, errors.New("boom") })
	g.Expect(err).To(MatchError("boom"))
	p.closeAll()
	g.Expect(closed).To(Equal(2))
	rel3() // after closeAll: no double close
	g.Expect(closed).To(Equal(2))
}

func TestBindingLookup(t *testing.T) {
	g := NewWithT(t)
	set, err := vcap.Load(t.Context(), vcap.Sources{VCAPServices: `{"xsuaa":[
		{"name":"ok","label":"xsuaa","plan":"application","credentials":{"clientid":"c","clientsecret":"s3cr3t-value-1","url":"https://p.authentication.example.com","uaadomain":"authentication.example.com"}},
		{"name":"broken","label":"xsuaa","plan":"application","credentials":{"clientid":"c","url":"https://p.authentication.example.com","uaadomain":"authentication.example.com","credential-type":"x509"}}],
		"postgres":[{"name":"db","label":"postgres","credentials":{"uri":"postgres://x"}}]}`})
	g.Expect(err).NotTo(HaveOccurred())
	lookup := bindingLookup(set)
	info, ok := lookup("ok")
	g.Expect(ok).To(BeTrue())
	g.Expect(info.Auth).To(BeTrue())
	g.Expect(info.Certificate).To(BeFalse())
	g.Expect(info.Problems).To(BeEmpty())
	info, ok = lookup("broken")
	g.Expect(ok).To(BeTrue())
	g.Expect(info.Problems).NotTo(BeEmpty())
	info, ok = lookup("db")
	g.Expect(ok).To(BeTrue())
	g.Expect(info.Auth).To(BeFalse())
	_, ok = lookup("missing")
	g.Expect(ok).To(BeFalse())
	_, ok = bindingLookup(nil)("ok")
	g.Expect(ok).To(BeFalse())
}

// mk can pair over the network: while one key is being made, other keys
// are acquired and released, and a second acquirer of the same key waits
// for the one mk instead of running another.
func TestRefPoolMakesWithoutHoldingItsLock(t *testing.T) {
	g := NewWithT(t)
	var p refPool[int]
	unblock, started := make(chan struct{}), make(chan struct{})
	slowMade := 0
	slow := func() (int, func(), error) {
		slowMade++
		close(started)
		<-unblock
		return 7, nil, nil
	}
	first := make(chan int, 1)
	go func() {
		v, rel, err := p.acquire("slow", slow)
		if err == nil {
			defer rel()
		}
		first <- v
	}()
	<-started
	second := make(chan int, 1)
	go func() {
		v, rel, err := p.acquire("slow", func() (int, func(), error) { return -1, nil, errors.New("a second mk for the same key") })
		if err == nil {
			defer rel()
		}
		second <- v
	}()

	other := make(chan error, 1)
	go func() {
		_, rel, err := p.acquire("other", func() (int, func(), error) { return 1, nil, nil })
		if err == nil {
			rel()
		}
		other <- err
	}()
	g.Eventually(other, 10*time.Second).Should(Receive(BeNil()), "another key is not held up by a slow mk")
	g.Consistently(second).ShouldNot(Receive(), "the same key waits for the mk in flight")

	close(unblock)
	g.Eventually(first, 10*time.Second).Should(Receive(Equal(7)))
	g.Eventually(second, 10*time.Second).Should(Receive(Equal(7)), "shares the one value")
	g.Expect(slowMade).To(Equal(1))
}

// A pool closed while a value is being made closes that value when mk
// returns, and the acquirer gets an error instead of a closed value.
func TestRefPoolClosedWhileMaking(t *testing.T) {
	g := NewWithT(t)
	var p refPool[int]
	unblock, started := make(chan struct{}), make(chan struct{})
	closed := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		_, _, err := p.acquire("a", func() (int, func(), error) {
			close(started)
			<-unblock
			return 1, func() { close(closed) }, nil
		})
		got <- err
	}()
	<-started
	p.closeAll()
	close(unblock)
	g.Eventually(got, 10*time.Second).Should(Receive(MatchError(errPoolClosed)))
	g.Eventually(closed).Should(BeClosed())
}

// A failed mk leaves nothing behind: the next acquire makes it again.
func TestRefPoolRetriesAfterAFailedMake(t *testing.T) {
	g := NewWithT(t)
	var p refPool[int]
	_, _, err := p.acquire("a", func() (int, func(), error) { return 0, nil, errors.New("pairing refused") })
	g.Expect(err).To(MatchError("pairing refused"))
	v, rel, err := p.acquire("a", func() (int, func(), error) { return 2, nil, nil })
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(v).To(Equal(2))
	rel()
}
