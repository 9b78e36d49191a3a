package broker

import (
	"errors"
	"testing"

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
