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
	"github.com/credbroker/credbroker/mockauth"
)

func TestInfoOverMTLS(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	p := paired(t, srv, "app1")
	c := ecClient(t, srv, connector.WithCertificate(p.TLSCertificate()))

	info, err := c.Info(ctx(t), p.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	gw := srv.Info().GatewayURL
	g.Expect(info.ClientIdentity).To(Equal(connector.ClientIdentity{Application: "app1"}))
	g.Expect(info.URLs.RenewCertURL).To(Equal(gw + pathRenewals))
	g.Expect(info.URLs.RevokeCertURL).To(Equal(gw + pathRevocations))
	g.Expect(info.URLs.EventsURL).To(Equal(gw + "/app1/v1/events"))
	g.Expect(info.URLs.MetadataURL).To(Equal(gw + "/app1/v1/metadata/services"))
	g.Expect(info.URLs.EventsInfoURL).To(Equal(gw + "/app1/v1/events/subscribed"))
	g.Expect(info.Certificate.Subject).To(ContainSubstring("CN=app1"))
	g.Expect(info.Runtime).To(BeNil())
	g.Expect(info.RuntimeTokenURL()).To(BeEmpty())

	// The older spelling of the revocation URL (the runtime token URL:
	// TestTwoPhases).
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetInfo, Answer: mockauth.AnswerOldRevokeURL, Count: 1})
	info, err = c.Info(ctx(t), p.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.URLs.RevokeCertURL).To(Equal(gw + pathRevocations))
	g.Expect(srv.Stats().Connections["gateway"]).To(Equal(1), "one connection reused for both info calls")
}

func TestInfoWithoutCertificateIsRefused(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	_, err := ecClient(t, srv).Info(ctx(t), srv.Info().GatewayURL+pathMgmtInfo)
	g.Expect(err).To(MatchError(connector.ErrUnauthorized))
	g.Expect(err).NotTo(MatchError(connector.ErrRevoked))
	g.Expect(err.Error()).To(HavePrefix("connector: info "))
	g.Expect(srv.Stats().InfoRequests).To(Equal(0), "the gateway refuses the handshake")
}

func TestInfoWithACertificateFromAnotherCAIsRefusedInTheHandshake(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	stranger := testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithCommonName("stranger"))
	c := ecClient(t, srv, connector.WithCertificate(stranger.TLSCertificate()))
	_, err := c.Info(ctx(t), srv.Info().GatewayURL+pathMgmtInfo)
	g.Expect(err).To(MatchError(connector.ErrUnauthorized))
	g.Expect(srv.Stats().InfoRequests).To(Equal(0))
	var nt interface{ NeedsToken() bool }
	g.Expect(errors.As(err, &nt)).To(BeTrue())
	g.Expect(nt.NeedsToken()).To(BeTrue())
}

func TestTheHookCertificateIsUsedOnTheNextHandshake(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	a, b := paired(t, srv, "app"), paired(t, srv, "app")
	var cur atomic.Pointer[tls.Certificate]
	ca := a.TLSCertificate()
	cur.Store(&ca)
	c := ecClient(t, srv, connector.WithGetClientCertificate(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return cur.Load(), nil
	}))
	_, err := c.Info(ctx(t), a.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	cb := b.TLSCertificate()
	cur.Store(&cb)
	c.CloseIdleConnections()
	_, err = c.Info(ctx(t), a.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	var presented []string
	for _, r := range srv.Received() {
		if r.Kind == "info" {
			presented = append(presented, r.CertSHA256)
		}
	}
	g.Expect(presented).To(Equal([]string{sha256Hex(a.Leaf().Raw), sha256Hex(b.Leaf().Raw)}))
}

func TestRenewSeveralTimesInARow(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{UniqueSerials: true})
	p := paired(t, srv, "app1")
	logOpt, logs := debugLogger()
	c := ecClient(t, srv, logOpt)
	r, err := connector.NewRenewer(c, srv.Info().GatewayURL+pathRenewals)
	g.Expect(err).NotTo(HaveOccurred())

	current := p.TLSCertificate()
	seen := map[string]bool{p.Leaf().SerialNumber.String(): true}
	var keys [][]byte
	for i := 0; i < 3; i++ {
		certPEM, keyPEM, caPEM, err := r.Renew(ctx(t), current)
		g.Expect(err).NotTo(HaveOccurred())
		next, err := tls.X509KeyPair(certPEM, keyPEM)
		g.Expect(err).NotTo(HaveOccurred(), "renewed key and certificate match")
		g.Expect(string(caPEM)).To(Equal(string(srv.ConnectorCAPEM())))
		leaf, err := x509.ParseCertificate(next.Certificate[0])
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(seen[leaf.SerialNumber.String()]).To(BeFalse(), "a new certificate each time")
		seen[leaf.SerialNumber.String()] = true
		g.Expect(p.Subject.Matches(leaf.RawSubject)).To(BeTrue(), "same subject")
		g.Expect(next.PrivateKey).To(BeAssignableToTypeOf(&ecdsa.PrivateKey{}), "the algorithm of the current key")
		g.Expect(keys).NotTo(ContainElement(keyPEM), "a fresh key each time")
		keys = append(keys, keyPEM)
		// The certificate that was renewed still works until it expires.
		_, err = ecClient(t, srv, connector.WithCertificate(current)).Info(ctx(t), p.API.InfoURL)
		g.Expect(err).NotTo(HaveOccurred())
		current = next
	}
	g.Expect(srv.Stats().Renewals).To(Equal(3))
	// The first certificate still works too.
	_, err = ecClient(t, srv, connector.WithCertificate(p.TLSCertificate())).Info(ctx(t), p.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(logs.String()).To(ContainSubstring("connector renewing"))
	for _, k := range keys {
		g.Expect(logs.String()).NotTo(ContainSubstring(string(k[30:60])))
	}
}

func TestRenewWhileTheConnectorIsDown(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	p := paired(t, srv, "app")
	r, err := connector.NewRenewer(ecClient(t, srv), srv.Info().GatewayURL+pathRenewals)
	g.Expect(err).NotTo(HaveOccurred())

	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetConnector, Status: 503, Body: `{"code":503,"error":"maintenance"}`})
	_, _, _, err = r.Renew(ctx(t), p.TLSCertificate())
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(503))
	g.Expect(ce.Temporary()).To(BeTrue())
	g.Expect(ce.NeedsToken()).To(BeFalse(), "certwatch keeps retrying")

	srv.ClearFaults()
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetConnector, Refuse: true}) // nothing gets through
	_, _, _, err = r.Renew(ctx(t), p.TLSCertificate())
	g.Expect(err).To(HaveOccurred())
	g.Expect(errors.As(err, &ce)).To(BeFalse(), "no answer, no *Error")

	srv.ClearFaults() // back
	certPEM, keyPEM, _, err := r.Renew(ctx(t), p.TLSCertificate())
	g.Expect(err).NotTo(HaveOccurred())
	_, err = tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
}

func TestRenewRefusedWhenTheSubjectIsWrong(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	p := paired(t, srv, "app")
	// The connector renews into a certificate for another subject.
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetCSR, Answer: mockauth.AnswerOtherSubject, Count: 1})
	r, _ := connector.NewRenewer(ecClient(t, srv), srv.Info().GatewayURL+pathRenewals)
	_, _, _, err := r.Renew(ctx(t), p.TLSCertificate())
	g.Expect(err).To(MatchError(connector.ErrSubjectMismatch))
	g.Expect(err.Error()).To(ContainSubstring("someone-else"))
}

func TestRevoke(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{StrictRevocation: true})
	p := paired(t, srv, "app")
	c := ecClient(t, srv, connector.WithCertificate(p.TLSCertificate()))
	info, err := c.Info(ctx(t), p.API.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(c.Revoke(ctx(t), info.URLs.RevokeCertURL)).To(Succeed())
	g.Expect(srv.Stats().Revocations).To(Equal(1))

	_, err = c.Info(ctx(t), p.API.InfoURL)
	g.Expect(err).To(MatchError(connector.ErrRevoked))
	g.Expect(err).To(MatchError(connector.ErrUnauthorized))
	g.Expect(err.Error()).To(ContainSubstring("a new one-time token is needed"))

	r, _ := connector.NewRenewer(ecClient(t, srv), info.URLs.RenewCertURL)
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
