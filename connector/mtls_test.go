package connector_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/testpki"
)

// paired pairs app with f and returns the certificate.
func paired(t *testing.T, f *fakeConnector, app string) *connector.Pairing {
	t.Helper()
	u, _ := f.NewToken(app)
	p, err := f.client().Pair(ctx(t), u)
	if err != nil {
		t.Fatalf("pairing: %v", err)
	}
	return p
}

func TestInfoOverMTLS(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app1")
	c := f.client(connector.WithCertificate(p.TLSCertificate()))

	info, err := c.Info(ctx(t), p.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.ClientIdentity).To(Equal(connector.ClientIdentity{Application: "app1", Group: "g1", Tenant: "t1"}))
	g.Expect(info.URLs.RenewCertURL).To(Equal(f.URL + "/v1/applications/certificates/renewals"))
	g.Expect(info.URLs.RevokeCertURL).To(Equal(f.URL + "/v1/applications/certificates/revocations"))
	g.Expect(info.URLs.EventsURL).To(Equal(f.URL + "/app/v1/events"))
	g.Expect(info.URLs.MetadataURL).To(Equal(f.URL + "/app/v1/metadata/services"))
	g.Expect(info.URLs.EventsInfoURL).To(Equal(f.URL + "/app/v1/subscribed"))
	g.Expect(info.Certificate.Subject).To(ContainSubstring("CN=app1"))
	g.Expect(info.Runtime).To(BeNil())
	g.Expect(info.RuntimeTokenURL()).To(BeEmpty())

	// The older spelling of the revocation URL and the runtime token URL.
	rt, rtok := f.NewToken("runtime")
	f.Set(func(f *fakeConnector) { f.OldRevokeSpelling = true; f.RuntimeTokenURL = rt })
	info, err = c.Info(ctx(t), p.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.URLs.RevokeCertURL).To(Equal(f.URL + "/v1/applications/certificates/revocations"))
	g.Expect(info.RuntimeTokenURL()).To(Equal(rt))
	g.Expect(info.Runtime.String()).NotTo(ContainSubstring(rtok))
	g.Expect(f.lis.accepted.Load()).To(BeEquivalentTo(2), "one connection for pairing, one reused for both info calls")
}

func TestInfoWithoutCertificateIsRefused(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	_, err := f.client().Info(ctx(t), f.URL+"/v1/applications/management/info")
	g.Expect(err).To(MatchError(connector.ErrUnauthorized))
	g.Expect(err).NotTo(MatchError(connector.ErrRevoked))
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.Op).To(Equal("info"))
}

func TestInfoWithACertificateFromAnotherCAIsRefusedInTheHandshake(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	stranger := testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithCommonName("stranger"))
	c := f.client(connector.WithCertificate(stranger.TLSCertificate()))
	_, err := c.Info(ctx(t), f.URL+"/v1/applications/management/info")
	g.Expect(err).To(MatchError(connector.ErrUnauthorized))
	g.Expect(f.Count("info")).To(Equal(0))
	var nt interface{ NeedsToken() bool }
	g.Expect(errors.As(err, &nt)).To(BeTrue())
	g.Expect(nt.NeedsToken()).To(BeTrue())
}

func TestTheHookCertificateIsUsedOnTheNextHandshake(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	a, b := paired(t, f, "app"), paired(t, f, "app")
	var cur atomic.Pointer[tls.Certificate]
	ca := a.TLSCertificate()
	cur.Store(&ca)
	c := f.client(connector.WithGetClientCertificate(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return cur.Load(), nil
	}))
	_, err := c.Info(ctx(t), a.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	cb := b.TLSCertificate()
	cur.Store(&cb)
	c.CloseIdleConnections()
	_, err = c.Info(ctx(t), a.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	f.mu.Lock()
	defer f.mu.Unlock()
	g.Expect(f.peerSerial).To(Equal([]string{a.Leaf().SerialNumber.Text(16), b.Leaf().SerialNumber.Text(16)}))
}

func TestRenewSeveralTimesInARow(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app1")
	logOpt, logs := debugLogger()
	c := f.client(logOpt)
	r, err := connector.NewRenewer(c, f.URL+"/v1/applications/certificates/renewals")
	g.Expect(err).NotTo(HaveOccurred())

	current := p.TLSCertificate()
	seen := map[string]bool{p.Leaf().SerialNumber.String(): true}
	var keys [][]byte
	for i := 0; i < 3; i++ {
		certPEM, keyPEM, caPEM, err := r.Renew(ctx(t), current)
		g.Expect(err).NotTo(HaveOccurred())
		next, err := tls.X509KeyPair(certPEM, keyPEM)
		g.Expect(err).NotTo(HaveOccurred(), "renewed key and certificate match")
		g.Expect(string(caPEM)).To(Equal(string(f.CA.CertPEM())))
		leaf, err := x509.ParseCertificate(next.Certificate[0])
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(seen[leaf.SerialNumber.String()]).To(BeFalse(), "a new certificate each time")
		seen[leaf.SerialNumber.String()] = true
		g.Expect(p.Subject.Matches(leaf.RawSubject)).To(BeTrue(), "same subject")
		g.Expect(next.PrivateKey).To(BeAssignableToTypeOf(&ecdsa.PrivateKey{}), "the algorithm of the current key")
		g.Expect(keys).NotTo(ContainElement(keyPEM), "a fresh key each time")
		keys = append(keys, keyPEM)
		// The certificate that was renewed still works until it expires.
		_, err = f.client(connector.WithCertificate(current)).Info(ctx(t), p.API.InfoURL)
		g.Expect(err).NotTo(HaveOccurred())
		current = next
	}
	g.Expect(f.Count("renew")).To(Equal(3))
	// The first certificate still works too.
	_, err = f.client(connector.WithCertificate(p.TLSCertificate())).Info(ctx(t), p.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(logs.String()).To(ContainSubstring("connector renewing"))
	for _, k := range keys {
		g.Expect(logs.String()).NotTo(ContainSubstring(string(k[30:60])))
	}
}

func TestRenewWhileTheConnectorIsDown(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app")
	r, err := connector.NewRenewer(f.client(), f.URL+"/v1/applications/certificates/renewals")
	g.Expect(err).NotTo(HaveOccurred())

	f.Set(func(f *fakeConnector) {
		f.Fault = func(op string) (int, string) { return 503, `{"code":503,"error":"maintenance"}` }
	})
	_, _, _, err = r.Renew(ctx(t), p.TLSCertificate())
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(503))
	g.Expect(ce.Temporary()).To(BeTrue())
	g.Expect(ce.NeedsToken()).To(BeFalse(), "certwatch keeps retrying")

	f.Set(func(f *fakeConnector) { f.Fault = nil })
	f.lis.Drop.Store(100) // nothing gets through
	_, _, _, err = r.Renew(ctx(t), p.TLSCertificate())
	g.Expect(err).To(HaveOccurred())
	g.Expect(errors.As(err, &ce)).To(BeFalse(), "no answer, no *Error")

	f.lis.Drop.Store(0) // back
	certPEM, keyPEM, _, err := r.Renew(ctx(t), p.TLSCertificate())
	g.Expect(err).NotTo(HaveOccurred())
	_, err = tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
}

func TestRenewRefusedWhenTheSubjectIsWrong(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app")
	// A certificate of the same CA with another subject asks to renew a
	// subject the connector does not accept for it.
	f.Set(func(f *fakeConnector) {
		f.Issue = func(csr *x509.CertificateRequest) (string, string, string) {
			other := *csr
			other.Subject.CommonName = "else"
			return b64(testpki.EncodeCerts(f.CA.SignCSR(&other, 3600e9))), "", b64(f.CA.CertPEM())
		}
	})
	r, _ := connector.NewRenewer(f.client(), f.URL+"/v1/applications/certificates/renewals")
	_, _, _, err := r.Renew(ctx(t), p.TLSCertificate())
	g.Expect(err).To(MatchError(connector.ErrSubjectMismatch))
}

func TestRevoke(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	p := paired(t, f, "app")
	c := f.client(connector.WithCertificate(p.TLSCertificate()))
	info, err := c.Info(ctx(t), p.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(c.Revoke(ctx(t), info.URLs.RevokeCertURL)).To(Succeed())
	g.Expect(f.Count("revoke")).To(Equal(1))

	_, err = c.Info(ctx(t), p.API.InfoURL)
	g.Expect(err).To(MatchError(connector.ErrRevoked))
	g.Expect(err).To(MatchError(connector.ErrUnauthorized))
	g.Expect(err.Error()).To(ContainSubstring("a new one-time token is needed"))

	r, _ := connector.NewRenewer(f.client(), info.URLs.RenewCertURL)
	_, _, _, err = r.Renew(ctx(t), p.TLSCertificate())
	g.Expect(err).To(MatchError(connector.ErrRevoked))
	var nt interface{ NeedsToken() bool }
	g.Expect(errors.As(err, &nt)).To(BeTrue())
	g.Expect(nt.NeedsToken()).To(BeTrue(), "certwatch stops renewing")
}

func TestRenewerURL(t *testing.T) {
	g := NewWithT(t)
	c, _ := connector.New()
	_, err := connector.NewRenewer(c, "")
	g.Expect(err).To(MatchError(connector.ErrInvalidInput))
	r, err := connector.NewRenewer(c, "https://a.localhost/renew")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.SetURL("https://b.localhost/renew")).To(Succeed())
	g.Expect(r.URL()).To(Equal("https://b.localhost/renew"))
	g.Expect(r.SetURL("::bad")).To(MatchError(connector.ErrInvalidInput))
	g.Expect(r.URL()).To(Equal("https://b.localhost/renew"))
	_, _, _, err = r.Renew(ctx(t), tls.Certificate{})
	g.Expect(err).To(MatchError(connector.ErrInvalidInput))
}
