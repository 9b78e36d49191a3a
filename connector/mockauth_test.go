package connector_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/mockauth"
)

// fakeClock is a clock tests move by hand; the mock and the client share it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startMock runs mockauth with certificates that live three seconds on a
// clock the test drives.
func startMock(t *testing.T, twoPhase bool) (*mockauth.Server, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	srv, err := mockauth.Start(mockauth.Options{CertTTL: 3 * time.Second, TwoPhase: twoPhase, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, clock
}

func mockClient(t *testing.T, srv *mockauth.Server, clock *fakeClock, opts ...connector.Option) *connector.Client {
	t.Helper()
	base := []connector.Option{
		connector.WithRootCAs(srv.CAPool()),
		connector.WithDialContext(mockauth.DialContext),
		connector.WithKeyType(connector.ECDSAP256),
		connector.WithClock(clock.Now),
		connector.WithRetry(3, time.Millisecond),
	}
	c, err := connector.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mockToken(t *testing.T, srv *mockauth.Server, app string) (string, string) {
	t.Helper()
	u, tok, err := srv.NewPairingToken(app)
	if err != nil {
		t.Fatal(err)
	}
	return u, tok
}

func TestMockauthPairingAndTokenReuse(t *testing.T) {
	g := NewWithT(t)
	srv, clock := startMock(t, false)
	logOpt, logs := debugLogger()
	c := mockClient(t, srv, clock, logOpt)
	u, tok := mockToken(t, srv, "app1")

	conn, err := c.Connect(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn.InfoErr).NotTo(HaveOccurred())
	g.Expect(conn.Identity.Application).To(Equal("app1"))
	g.Expect(conn.RenewCertURL).To(HavePrefix(srv.Info().ConnectorURL))
	g.Expect(conn.RevokeCertURL).To(HavePrefix(srv.Info().ConnectorURL))
	g.Expect(conn.EventsURL).NotTo(BeEmpty())
	g.Expect(conn.ConnectorURL).To(Equal(srv.Info().ConnectorURL))
	g.Expect(conn.NotAfter.Sub(conn.Pairing.Leaf().NotBefore)).To(BeNumerically("<=", 4*time.Second))
	g.Expect(srv.Stats().CSRSigned).To(Equal(1))
	issued := srv.Issued()
	g.Expect(issued).To(HaveLen(1))
	g.Expect(issued[0].Serial).To(Equal(conn.Serial), "connection.json serial is the mock's (decimal)")

	_, err = c.Pair(ctx(t), u)
	g.Expect(err).To(MatchError(connector.ErrTokenInvalid))
	g.Expect(err.Error()).To(ContainSubstring("a new one-time token is needed"))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	g.Expect(logs.String()).NotTo(ContainSubstring(tok))
}

func TestMockauthSubjectMismatch(t *testing.T) {
	g := NewWithT(t)
	srv, clock := startMock(t, false)
	c := mockClient(t, srv, clock)
	p, err := c.Pair(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(err).NotTo(HaveOccurred())
	// Present app1's certificate but ask for app2's subject: the CSR
	// subject is taken from Leaf, the handshake uses the raw certificate.
	p2, err := c.Pair(ctx(t), first(mockToken(t, srv, "app2")))
	g.Expect(err).NotTo(HaveOccurred())
	current := p.TLSCertificate()
	current.Leaf = p2.Leaf()
	info, ierr := mockClient(t, srv, clock, connector.WithCertificate(p.TLSCertificate())).Info(ctx(t), p.API.InfoURL)
	g.Expect(ierr).NotTo(HaveOccurred())
	_, err = c.RenewCertificate(ctx(t), info.URLs.RenewCertURL, current)
	g.Expect(err).To(MatchError(connector.ErrSubjectMismatch))
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(400))
	g.Expect(ce.Message).To(ContainSubstring("subject does not match"))
}

func TestMockauthRenewalsKeepTheOldCertificateUntilItExpires(t *testing.T) {
	g := NewWithT(t)
	srv, clock := startMock(t, false)
	c := mockClient(t, srv, clock)
	conn, err := c.Connect(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(err).NotTo(HaveOccurred())
	r, err := connector.NewRenewer(c, conn.RenewCertURL)
	g.Expect(err).NotTo(HaveOccurred())
	infoAs := func(cert tls.Certificate) error {
		_, err := mockClient(t, srv, clock, connector.WithCertificate(cert)).Info(ctx(t), conn.InfoURL)
		return err
	}

	certs := []tls.Certificate{conn.Pairing.TLSCertificate()}
	for i := 0; i < 3; i++ {
		clock.Add(700 * time.Millisecond) // each renewal a little later
		certPEM, keyPEM, _, err := r.Renew(ctx(t), certs[len(certs)-1])
		g.Expect(err).NotTo(HaveOccurred(), "renewal %d", i+1)
		next, err := tls.X509KeyPair(certPEM, keyPEM)
		g.Expect(err).NotTo(HaveOccurred())
		certs = append(certs, next)
		for j, old := range certs {
			g.Expect(infoAs(old)).To(Succeed(), "certificate %d still valid after renewal %d", j, i+1)
		}
	}
	g.Expect(srv.Stats().Renewals).To(Equal(3))
	g.Expect(srv.Issued()).To(HaveLen(4))

	// The first certificate lives 3s, rounded up to a whole second (2.1s
	// have passed): 2.5s more and it is refused, while the newest (issued
	// 2.1s in) still works.
	clock.Add(2500 * time.Millisecond)
	err = infoAs(certs[0])
	g.Expect(err).To(MatchError(connector.ErrUnauthorized))
	g.Expect(infoAs(certs[3])).To(Succeed())
}

func TestMockauthRevocation(t *testing.T) {
	g := NewWithT(t)
	srv, clock := startMock(t, false)
	c := mockClient(t, srv, clock)

	// Revoked through the protocol.
	conn, err := c.Connect(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(err).NotTo(HaveOccurred())
	mc := mockClient(t, srv, clock, connector.WithCertificate(conn.Pairing.TLSCertificate()))
	g.Expect(mc.Revoke(ctx(t), conn.RevokeCertURL)).To(Succeed())
	g.Expect(srv.Stats().Revocations).To(Equal(1))
	_, err = mc.Info(ctx(t), conn.InfoURL)
	g.Expect(err).To(MatchError(connector.ErrRevoked))
	r, _ := connector.NewRenewer(c, conn.RenewCertURL)
	_, _, _, err = r.Renew(ctx(t), conn.Pairing.TLSCertificate())
	g.Expect(err).To(MatchError(connector.ErrRevoked))

	// Revoked by the operator, by the serial connection.json records.
	conn2, err := c.Connect(ctx(t), first(mockToken(t, srv, "app2")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(srv.Revoke(conn2.Serial)).To(Succeed())
	_, err = mockClient(t, srv, clock, connector.WithCertificate(conn2.Pairing.TLSCertificate())).Info(ctx(t), conn2.InfoURL)
	g.Expect(err).To(MatchError(connector.ErrRevoked))
	g.Expect(err.Error()).To(ContainSubstring("a new one-time token is needed"))
}

func TestMockauthConnectorDownDuringRenewal(t *testing.T) {
	g := NewWithT(t)
	srv, clock := startMock(t, false)
	c := mockClient(t, srv, clock)
	conn, err := c.Connect(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(err).NotTo(HaveOccurred())
	r, _ := connector.NewRenewer(c, conn.RenewCertURL)

	g.Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetConnector, Status: 503, Count: 1})).To(Succeed())
	_, _, _, err = r.Renew(ctx(t), conn.Pairing.TLSCertificate())
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(503))
	g.Expect(ce.NeedsToken()).To(BeFalse())

	// The connection dropped in the middle of the answer.
	g.Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetConnector, Drop: true, Count: 1})).To(Succeed())
	_, _, _, err = r.Renew(ctx(t), conn.Pairing.TLSCertificate())
	g.Expect(err).To(HaveOccurred())
	g.Expect(errors.As(err, &ce)).To(BeFalse())

	// Back: the renewal goes through, and the old certificate still works.
	certPEM, keyPEM, _, err := r.Renew(ctx(t), conn.Pairing.TLSCertificate())
	g.Expect(err).NotTo(HaveOccurred())
	next, err := tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
	leaf, _ := x509.ParseCertificate(next.Certificate[0])
	g.Expect(leaf.Subject.CommonName).To(Equal("app1"))
	_, err = mockClient(t, srv, clock, connector.WithCertificate(conn.Pairing.TLSCertificate())).Info(ctx(t), conn.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
}

func TestMockauthTwoPhases(t *testing.T) {
	g := NewWithT(t)
	srv, clock := startMock(t, true)
	c := mockClient(t, srv, clock)
	phase1, err := c.Connect(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phase1.Info.RuntimeTokenURL()).To(HavePrefix(srv.Info().RuntimeConnectorURL))
	data, _ := phase1.ConnectionInfo.Marshal()
	g.Expect(string(data)).NotTo(ContainSubstring("token"))

	phase2, err := c.Connect(ctx(t), phase1.Info.RuntimeTokenURL())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phase2.InfoErr).NotTo(HaveOccurred())
	g.Expect(phase2.ConnectorURL).To(Equal(srv.Info().RuntimeConnectorURL))
	g.Expect(phase2.Pairing.Leaf().Issuer.String()).NotTo(Equal(phase1.Pairing.Leaf().Issuer.String()), "the runtime connector has its own CA")

	// The heartbeat on phase 1 sees the runtime connector once, not every
	// fresh token as a change.
	var changes int
	hb, err := connector.NewHeartbeat(mockClient(t, srv, clock, connector.WithCertificate(phase1.Pairing.TLSCertificate())), phase1.InfoURL,
		connector.OnChange(func(connector.ManagementInfo) { changes++ }))
	g.Expect(err).NotTo(HaveOccurred())
	for i := 0; i < 3; i++ {
		res := hb.Beat(ctx(t))
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.Info.RuntimeTokenURL()).NotTo(BeEmpty())
	}
	g.Expect(changes).To(Equal(1))
}
