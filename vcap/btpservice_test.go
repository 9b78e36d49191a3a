package vcap

import (
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestServiceOf(t *testing.T) {
	g := NewWithT(t)
	set := mustSet(t, vcapJSON(t,
		map[string]any{"label": "destination", "name": "dest", "credentials": map[string]any{
			"uri": "https://destination-configuration.cfapps.example", "clientid": "sb-dest", "clientsecret": plantedSecret,
			"url": "https://provider.authentication.example", "uaadomain": "authentication.example", "xsappname": "dest!b9"}},
		// A Kubernetes connectivity binding: no url, no proxy host.
		map[string]any{"label": "connectivity", "name": "conn", "credentials": map[string]any{
			"clientid": "sb-conn", "clientsecret": plantedSecret, "token_service_url": "https://provider.authentication.example/oauth/token"}},
		map[string]any{"label": "connectivity", "name": "conn-cf", "credentials": map[string]any{
			"clientid": "sb-conn", "clientsecret": plantedSecret, "url": "https://provider.authentication.example",
			"onpremise_proxy_host": "connectivityproxy.internal.cf.example", "onpremise_proxy_http_port": "20003", "onpremise_proxy_port": 20004}},
		map[string]any{"label": "destination", "name": "dest-no-uri", "credentials": map[string]any{"clientid": "x", "clientsecret": plantedSecret, "url": "https://p.authentication.example"}},
	))
	b, _ := set.ByName("dest")
	g.Expect(b.Auth).To(BeNil(), "the binding itself stays a non-auth binding")
	svc, ok := ServiceOf(b)
	g.Expect(ok).To(BeTrue())
	g.Expect(svc.Kind).To(Equal(KindDestination))
	g.Expect(svc.URI).To(Equal("https://destination-configuration.cfapps.example"))
	g.Expect(svc.Auth.Auth).To(Equal(AuthSecret))
	g.Expect(svc.Auth.TokenURL).To(Equal("https://provider.authentication.example/oauth/token"))
	g.Expect(svc.Problems).To(BeEmpty())

	b, _ = set.ByName("conn")
	svc, _ = ServiceOf(b)
	g.Expect(svc.Kind).To(Equal(KindConnectivity))
	g.Expect(svc.Auth.TokenURL).To(Equal("https://provider.authentication.example/oauth/token"))
	g.Expect(svc.ProxyHost).To(BeEmpty())

	b, _ = set.ByName("conn-cf")
	svc, _ = ServiceOf(b)
	g.Expect(svc.ProxyHost).To(Equal("connectivityproxy.internal.cf.example"))
	g.Expect(svc.ProxyPort).To(Equal("20003"))

	b, _ = set.ByName("dest-no-uri")
	svc, _ = ServiceOf(b)
	g.Expect(svc.Problems).To(ContainElement(ContainSubstring(`"uri"`)))
	for _, p := range svc.Problems {
		g.Expect(p).NotTo(ContainSubstring(plantedSecret))
	}

	xs, _ := set.ByName("dest")
	xs.Label, xs.Type, xs.Tags = "xsuaa", "xsuaa", nil
	_, ok = ServiceOf(xs)
	g.Expect(ok).To(BeFalse())
}

func TestServiceOfX509AndDirectory(t *testing.T) {
	g := NewWithT(t)
	p := testPKI
	set := mustSet(t, vcapJSON(t,
		map[string]any{"label": "destination", "name": "dest-x509", "credentials": map[string]any{
			"uri": "https://destination-configuration.cfapps.example", "clientid": "sb-dest", "credential-type": "x509",
			"url": "https://provider.authentication.example", "certurl": "https://provider.authentication.cert.example",
			"certificate": string(p.valid.CertPEM()), "key": string(p.valid.KeyPEM(testpki.PKCS8))}},
	), WithClock(func() time.Time { return testNow }))
	b, _ := set.ByName("dest-x509")
	svc, ok := ServiceOf(b, WithClock(func() time.Time { return testNow }))
	g.Expect(ok).To(BeTrue())
	g.Expect(svc.Problems).To(BeEmpty())
	g.Expect(svc.Auth.Auth).To(Equal(AuthMTLS))
	g.Expect(svc.Auth.TokenURL).To(Equal("https://provider.authentication.cert.example/oauth/token"))
	g.Expect(svc.Auth.Key).NotTo(BeNil())
	g.Expect(svc.Digest([]byte("k1"))).NotTo(BeEmpty())
	g.Expect(svc.Digest([]byte("k1"))).NotTo(ContainSubstring("sb-dest"))
	g.Expect(svc.Digest([]byte("k1"))).NotTo(Equal(svc.Digest([]byte("k2"))), "keyed: another key gives another digest")
}

// TestServiceOfDirectory: a servicebinding.io connectivity binding as the
// BTP service operator writes it on Kubernetes (no url, no proxy host).
func TestServiceOfDirectory(t *testing.T) {
	g := NewWithT(t)
	root := t.TempDir()
	writeFiles(t, filepath.Join(root, "conn"), map[string]string{
		"type": "connectivity\n", "plan": "connectivity_proxy", "clientid": "sb-conn", "clientsecret": plantedSecret,
		"token_service_url": "https://p.authentication.example/oauth/token\n", "token_service_domain": "authentication.example",
	})
	set := loadDirT(t, root)
	b, err := set.ByName("conn")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(b.Problems).To(BeEmpty())
	svc, ok := ServiceOf(b)
	g.Expect(ok).To(BeTrue())
	g.Expect(svc.Kind).To(Equal(KindConnectivity))
	g.Expect(svc.Problems).To(BeEmpty())
	g.Expect(svc.Auth.TokenURL).To(Equal("https://p.authentication.example/oauth/token"))
	g.Expect(svc.ProxyHost).To(BeEmpty())
}
