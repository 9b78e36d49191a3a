package tokenclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/internal/testpki"
)

// loopbackDial sends *.localhost to 127.0.0.1 (RFC 6761), so tenant host
// names work against one local server while TLS checks the real names.
var loopbackDial = (&netx.Resolver{}).Dialer(nil)

var authHosts = []string{
	"*.authentication.localhost", "authentication.localhost",
	"*.authentication.cert.localhost", "authentication.cert.localhost",
}

// newTLSFakeAS is a fake authorization server on TLS with a certificate for
// the .localhost auth host names; with clientCAs it requires client
// certificates (mutual TLS).
func newTLSFakeAS(t testing.TB, clientCAs *testpki.CA) (*fakeAS, *testpki.CA) {
	ca := testpki.NewCA()
	var pool *x509.CertPool // nil: no client certificates asked for
	if clientCAs != nil {
		pool = clientCAs.Pool()
	}
	cfg := testpki.ServerTLSConfig(ca.Issue(testpki.WithDNSNames(authHosts...), testpki.ServerAuth()), pool)
	return newFakeAS(t, cfg), ca
}

// hostURL is the server's URL with host instead of 127.0.0.1.
func (as *fakeAS) hostURL(host string) string {
	_, port, _ := net.SplitHostPort(as.srv.Listener.Addr().String())
	return "https://" + host + ":" + port
}

func mtlsConfig(as *fakeAS, hook func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) Config {
	return Config{
		ClientID:             "sb-x509-client",
		TokenURL:             as.hostURL("provider.authentication.localhost"),
		CertURL:              as.hostURL("provider.authentication.cert.localhost"),
		UAADomain:            "authentication.localhost",
		GetClientCertificate: hook,
	}
}

// rotatingCert is a certificate hook whose certificate can be swapped.
type rotatingCert struct {
	p atomic.Pointer[tls.Certificate]
}

func (r *rotatingCert) set(l *testpki.Leaf) { c := l.TLSCertificate(); r.p.Store(&c) }
func (r *rotatingCert) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.p.Load(), nil
}

func TestX509HostsTenantsAndRotation(t *testing.T) {
	g := NewWithT(t)
	clientCA := testpki.NewCA()
	as, serverCA := newTLSFakeAS(t, clientCA)
	var handshakes atomic.Int64
	as.srv.TLS.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { handshakes.Add(1); return nil, nil }
	var hook rotatingCert
	first := clientCA.Issue(testpki.WithCommonName("app"), testpki.ClientAuth())
	hook.set(first)
	c := newClient(t, mtlsConfig(as, hook.get), WithRootCAs(serverCA.Pool()), WithDialContext(loopbackDial))
	_, port, _ := net.SplitHostPort(as.srv.Listener.Addr().String())

	for _, tc := range []struct {
		name     string
		req      Request
		wantHost string
		wantZID  string
	}{
		{"provider on the cert host", Request{}, "provider.authentication.cert.localhost", ""},
		{"tenant by subdomain", Request{Tenant: "sub1"}, "sub1.authentication.cert.localhost", ""},
		{"tenant by zone id", Request{ZoneID: "zone-42"}, "authentication.cert.localhost", "zone-42"},
		{"jwt-bearer for a tenant", Request{Grant: GrantJWTBearer, Assertion: "a.b.c", Tenant: "sub2"}, "sub2.authentication.cert.localhost", ""},
	} {
		tok, err := c.Token(bg, tc.req)
		g.Expect(err).NotTo(HaveOccurred(), tc.name)
		s := as.last()
		g.Expect(s.Host).To(Equal(tc.wantHost+":"+port), tc.name)
		g.Expect(s.ZID).To(Equal(tc.wantZID), tc.name)
		g.Expect(s.CertSerial).To(Equal(first.Cert.SerialNumber.String()), tc.name)
		g.Expect(s.Form.Get("client_id")).To(Equal("sb-x509-client"), tc.name)
		g.Expect(s.Form).NotTo(HaveKey("client_secret"))
		g.Expect(s.HasBasic).To(BeFalse())
		g.Expect(tok.URL).To(Equal("https://" + tc.wantHost + ":" + port + "/oauth/token"))
	}

	// Connections are reused: another fetch on the provider host makes no
	// handshake.
	before := handshakes.Load()
	_, err := c.Token(bg, Request{Scopes: []string{"again"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(handshakes.Load()).To(Equal(before))

	// Rotate: the next fetch presents the new certificate, on a new
	// connection, with nothing rebuilt.
	second := clientCA.Issue(testpki.WithCommonName("app"), testpki.ClientAuth())
	hook.set(second)
	_, err = c.Token(bg, Request{Scopes: []string{"after-rotation"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(as.last().CertSerial).To(Equal(second.Cert.SerialNumber.String()))
	g.Expect(handshakes.Load()).To(BeNumerically(">", before))
	// Cached tokens of the previous certificate are still served (the
	// client id is the same).
	g.Expect(as.count()).To(Equal(6))
	_, err = c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(as.count()).To(Equal(6))
}

func TestX509FingerprintInKey(t *testing.T) {
	g := NewWithT(t)
	clientCA := testpki.NewCA()
	as, serverCA := newTLSFakeAS(t, clientCA)
	var hook rotatingCert
	hook.set(clientCA.Issue(testpki.ClientAuth()))
	var fp atomic.Pointer[string]
	one, two := "fp-one", "fp-two"
	fp.Store(&one)
	cfg := mtlsConfig(as, hook.get)
	cfg.CertificateFingerprint = func() string { return *fp.Load() }
	c := newClient(t, cfg, WithRootCAs(serverCA.Pool()), WithDialContext(loopbackDial))
	a, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(a))
	h, err := c.Handle(Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h.Token(bg)).To(BeIdenticalTo(a), "a Handle finds the same entry")
	fp.Store(&two)
	b, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(b.AccessToken).NotTo(Equal(a.AccessToken), "a new fingerprint is a new key")
	g.Expect(h.Token(bg)).To(BeIdenticalTo(b), "and the Handle follows the fingerprint")
}

func TestX509Failures(t *testing.T) {
	clientCA := testpki.NewCA()
	as, serverCA := newTLSFakeAS(t, clientCA)
	t.Run("hook error", func(t *testing.T) {
		g := NewWithT(t)
		c := newClient(t, mtlsConfig(as, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return nil, errors.New("no key loaded")
		}), WithRootCAs(serverCA.Pool()), WithDialContext(loopbackDial))
		_, err := c.Token(bg, Request{})
		g.Expect(errors.Is(err, ErrCertificate)).To(BeTrue())
		g.Expect(err).To(MatchError(ContainSubstring("no key loaded")))
		g.Expect(as.count()).To(BeZero())
	})
	t.Run("untrusted client certificate", func(t *testing.T) {
		g := NewWithT(t)
		var hook rotatingCert
		hook.set(testpki.NewCA().Issue(testpki.ClientAuth()))
		c := newClient(t, mtlsConfig(as, hook.get), WithRootCAs(serverCA.Pool()), WithDialContext(loopbackDial),
			WithRetry(RetryPolicy{MaxAttempts: 1}))
		_, err := c.Token(bg, Request{})
		g.Expect(err).To(HaveOccurred())
		g.Expect(as.count()).To(BeZero())
	})
	t.Run("untrusted server", func(t *testing.T) {
		g := NewWithT(t)
		var hook rotatingCert
		hook.set(clientCA.Issue(testpki.ClientAuth()))
		c := newClient(t, mtlsConfig(as, hook.get), WithDialContext(loopbackDial), WithRetry(RetryPolicy{MaxAttempts: 1}))
		_, err := c.Token(bg, Request{})
		g.Expect(err).To(MatchError(ContainSubstring("certificate")))
	})
}

// A hook that checks the request with SupportsCertificate (as multi-cert
// hooks do) accepts the client's pre-fetch rotation check.
func TestX509HookCheckingTheRequest(t *testing.T) {
	g := NewWithT(t)
	clientCA := testpki.NewCA()
	as, serverCA := newTLSFakeAS(t, clientCA)
	for _, kt := range []testpki.KeyType{testpki.ECDSAP256, testpki.Ed25519} {
		cert := clientCA.Issue(testpki.ClientAuth(), testpki.WithKeyType(kt)).TLSCertificate()
		hook := func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if err := cri.SupportsCertificate(&cert); err != nil {
				return nil, err
			}
			return &cert, nil
		}
		c := newClient(t, mtlsConfig(as, hook), WithRootCAs(serverCA.Pool()), WithDialContext(loopbackDial))
		_, err := c.Token(bg, Request{})
		g.Expect(err).NotTo(HaveOccurred())
	}
}
