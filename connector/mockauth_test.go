package connector_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/clock/fakeclock"
	"github.com/credbroker/credbroker/mockauth"
)

// startMock runs mockauth with certificates that live three seconds on a
// clock the test drives.
func startMock(t *testing.T, twoPhase bool) (*mockauth.Server, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(time.Now())
	return start(t, mockauth.Options{CertTTL: 3 * time.Second, TwoPhase: twoPhase, Now: clock.Now}), clock
}

// start runs mockauth for one test.
func start(t *testing.T, opts mockauth.Options) *mockauth.Server {
	t.Helper()
	return mockauth.StartTest(t, opts)
}

func mockClient(t *testing.T, srv *mockauth.Server, clock *fakeclock.Clock, opts ...connector.Option) *connector.Client {
	t.Helper()
	base := []connector.Option{
		connector.WithRootCAs(srv.CAPool()),
		connector.WithDialContext(mockauth.DialContext),
		connector.WithClock(clock.Now), // keys follow the announced key-algorithm (rsa2048)
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
	g.Expect(conn.InfoURL).To(HavePrefix(srv.Info().GatewayURL), "the mTLS calls are on the gateway host, as in Kyma")
	g.Expect(conn.RenewCertURL).To(HavePrefix(srv.Info().GatewayURL))
	g.Expect(conn.RevokeCertURL).To(HavePrefix(srv.Info().GatewayURL))
	g.Expect(conn.EventsURL).NotTo(BeEmpty())
	g.Expect(conn.ConnectorURL).To(Equal(srv.Info().ConnectorURL))
	g.Expect(conn.NotAfter.Sub(conn.Pairing.Leaf().NotBefore)).To(BeNumerically("<=", 4*time.Second))
	g.Expect(srv.Stats().CSRSigned).To(Equal(1))
	issued := srv.Issued()
	g.Expect(issued).To(HaveLen(1))
	g.Expect(issued[0].Serial).To(Equal(conn.Serial), "connection.json serial is the mock's (decimal)")
	g.Expect(issued[0].SHA256).To(Equal(conn.SHA256), "connection.json identifies the certificate by fingerprint")

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
	g.Expect(ce.Message).To(Equal("CSR: Invalid common name provided."))
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
		clock.Advance(700 * time.Millisecond) // each renewal a little later
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
	clock.Advance(2500 * time.Millisecond)
	err = infoAs(certs[0])
	g.Expect(err).To(MatchError(connector.ErrUnauthorized))
	g.Expect(infoAs(certs[3])).To(Succeed())
}

func TestMockauthRevocation(t *testing.T) {
	g := NewWithT(t)
	srv, clock := startMock(t, false)
	c := mockClient(t, srv, clock)

	// Revoked through the protocol: renewal is refused for good, the
	// management info still answers (as the Kyma connector does).
	conn, err := c.Connect(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(err).NotTo(HaveOccurred())
	mc := mockClient(t, srv, clock, connector.WithCertificate(conn.Pairing.TLSCertificate()))
	g.Expect(mc.Revoke(ctx(t), conn.RevokeCertURL)).To(Succeed())
	g.Expect(srv.Stats().Revocations).To(Equal(1))
	_, err = mc.Info(ctx(t), conn.InfoURL)
	g.Expect(err).NotTo(HaveOccurred())
	r, _ := connector.NewRenewer(c, conn.RenewCertURL)
	_, _, _, err = r.Renew(ctx(t), conn.Pairing.TLSCertificate())
	g.Expect(err).To(MatchError(connector.ErrRevoked))
	g.Expect(err.Error()).To(ContainSubstring("a new one-time token is needed"))
	var nt interface{ NeedsToken() bool }
	g.Expect(errors.As(err, &nt) && nt.NeedsToken()).To(BeTrue())

	// Revoked by the operator, by the fingerprint connection.json records
	// (serials repeat: every certificate has serial 2).
	conn2, err := c.Connect(ctx(t), first(mockToken(t, srv, "app2")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn2.Serial).To(Equal(conn.Serial))
	g.Expect(conn2.SHA256).NotTo(Equal(conn.SHA256))
	g.Expect(srv.RevokeSHA256(conn2.SHA256)).To(Succeed())
	_, _, _, err = r.Renew(ctx(t), conn2.Pairing.TLSCertificate())
	g.Expect(err).To(MatchError(connector.ErrRevoked))
}

// TestMockauthECDSAKeyAgainstAnRSAConnector: the connector's CA signs with
// RSA and copies the CSR's signature algorithm, so an ECDSA CSR fails with
// 500. The client warns before sending, says what a retry can do, and with
// WithRSAFallback retries the same (unspent) CSR token with an RSA key.
func TestMockauthECDSAKeyAgainstAnRSAConnector(t *testing.T) {
	g := NewWithT(t)
	srv, clock := startMock(t, false)
	logOpt, logs := debugLogger()
	c := mockClient(t, srv, clock, logOpt, connector.WithKeyType(connector.ECDSAP256))
	_, err := c.Pair(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(logs.String()).To(ContainSubstring("the key type differs from the connector's key-algorithm"))
	var csrErr *connector.CSRError
	g.Expect(errors.As(err, &csrErr)).To(BeTrue(), "%v", err)
	g.Expect(csrErr.KeyMismatch).To(BeTrue())
	g.Expect(err.Error()).To(And(
		ContainSubstring("requested SignatureAlgorithm does not match private key type"),
		ContainSubstring("did not spend the CSR token"),
		ContainSubstring("pair with an RSA key")))
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(500))

	fb := mockClient(t, srv, clock, logOpt, connector.WithKeyType(connector.ECDSAP256), connector.WithRSAFallback())
	p, err := fb.Pair(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Leaf().PublicKeyAlgorithm).To(Equal(x509.RSA))
	g.Expect(srv.Stats().CSRSigned).To(Equal(1))
	g.Expect(srv.Stats().Errors).To(HaveKeyWithValue("sign_failed", 2))

	// A connector with an ECDSA CA (the mock's extension) takes the key.
	ec, err := mockauth.Start(mockauth.Options{ECDSAConnectorCA: true})
	g.Expect(err).NotTo(HaveOccurred())
	defer ec.Close()
	u, _, _ := ec.NewPairingToken("app1")
	ecc, _ := connector.New(connector.WithRootCAs(ec.CAPool()), connector.WithDialContext(mockauth.DialContext), connector.WithKeyType(connector.ECDSAP256))
	p, err = ecc.Pair(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Leaf().PublicKeyAlgorithm).To(Equal(x509.ECDSA))
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

// The connector's paths, as mockauth serves them.
const (
	pathSigningInfo  = "/v1/applications/signingRequests/info"
	pathCertificates = "/v1/applications/certificates"
	pathMgmtInfo     = "/v1/applications/management/info"
	pathRenewals     = "/v1/applications/certificates/renewals"
	pathRevocations  = "/v1/applications/certificates/revocations"
)

// startConnector runs mockauth with ECDSA connector CAs, so that tests pair
// with quick ECDSA keys, on the real clock.
func startConnector(t *testing.T, opts mockauth.Options) *mockauth.Server {
	t.Helper()
	opts.ECDSAConnectorCA = true
	return start(t, opts)
}

// ecClient is a client that trusts the mock and pairs with ECDSA keys, with
// quick retries.
func ecClient(t *testing.T, srv *mockauth.Server, opts ...connector.Option) *connector.Client {
	t.Helper()
	base := []connector.Option{
		connector.WithRootCAs(srv.CAPool()),
		connector.WithDialContext(mockauth.DialContext),
		connector.WithKeyType(connector.ECDSAP256),
		connector.WithRetry(3, time.Millisecond),
	}
	c, err := connector.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// paired pairs app with the mock and returns the certificate.
func paired(t *testing.T, srv *mockauth.Server, app string) *connector.Pairing {
	t.Helper()
	p, err := ecClient(t, srv).Pair(ctx(t), first(mockToken(t, srv, app)))
	if err != nil {
		t.Fatalf("pairing: %v", err)
	}
	return p
}

func addFault(t *testing.T, srv *mockauth.Server, f mockauth.Fault) {
	t.Helper()
	if err := srv.AddFault(f); err != nil {
		t.Fatal(err)
	}
}

// requests counts the requests the mock saw for method and path, faulted
// ones included (of its last 50).
func requests(srv *mockauth.Server, method, path string) int {
	n := 0
	for _, r := range srv.Stats().LastRequests {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

// connectorCA is the mock's central connector CA.
func connectorCA(t *testing.T, srv *mockauth.Server) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(srv.ConnectorCAPEM())
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sha256Hex(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
