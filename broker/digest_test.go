package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/vcap"
)

// Pool keys identify a binding's credentials by a digest keyed with a
// per-process random salt: the same binding gives the same key within one
// broker, another key in another broker, and never the plain hash of its
// secret (which anyone could check guesses against).
func TestBindingDigestIsSaltedPerBroker(t *testing.T) {
	g := NewWithT(t)
	const secret = "s3cr3t-value-for-digest"
	set, err := vcap.Load(t.Context(), vcap.Sources{VCAPServices: `{"xsuaa":[
		{"name":"ok","label":"xsuaa","plan":"application","credentials":{"clientid":"c","clientsecret":"` + secret + `","url":"https://p.authentication.example.com","uaadomain":"authentication.example.com"}}]}`})
	g.Expect(err).NotTo(HaveOccurred())
	b, err := set.ByName("ok")
	g.Expect(err).NotTo(HaveOccurred())

	one, err := New(Options{})
	g.Expect(err).NotTo(HaveOccurred())
	two, err := New(Options{})
	g.Expect(err).NotTo(HaveOccurred())
	d := one.bindingDigest(b)
	g.Expect(one.bindingDigest(b)).To(Equal(d), "stable within a broker")
	g.Expect(two.bindingDigest(b)).NotTo(Equal(d), "another broker, another key")

	// The unkeyed digest the pool used to compute.
	h := sha256.New()
	a := b.Auth
	for _, s := range []string{a.ClientID, a.ClientSecret.Reveal(), a.URL, a.CertURL, a.UAADomain, string(a.Auth), string(a.CertificatePEM), a.Key.PEM().Reveal()} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	plain := hex.EncodeToString(h.Sum(nil))
	g.Expect(plain).NotTo(HavePrefix(d))
	g.Expect(d).NotTo(ContainSubstring(plain[:24]))
	g.Expect(d).NotTo(ContainSubstring(secret))
}
