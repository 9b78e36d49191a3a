package connector_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/syncbuf"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/mockauth"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// debugLogger returns a client option logging everything into a buffer.
func debugLogger() (connector.Option, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return connector.WithLogger(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))), buf
}

func TestPairIssuesAVerifiedCertificateWithTheAnnouncedSubject(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	logOpt, logs := debugLogger()
	c := ecClient(t, srv, logOpt)
	tokenURL, tok := mockToken(t, srv, "app1")

	p, err := c.Pair(ctx(t), tokenURL)
	g.Expect(err).NotTo(HaveOccurred())

	// The CSR carried the subject in the connector's order.
	issued := srv.Issued()
	g.Expect(issued).To(HaveLen(1))
	csr, err := x509.ParseCertificateRequest(issued[0].CSR)
	g.Expect(err).NotTo(HaveOccurred())
	var seq pkix.RDNSequence
	_, err = asn1.Unmarshal(csr.RawSubject, &seq)
	g.Expect(err).NotTo(HaveOccurred())
	var order []string
	for _, rdn := range seq {
		order = append(order, rdn[0].Type.String()+"="+rdn[0].Value.(string))
	}
	g.Expect(order).To(Equal([]string{"2.5.4.10=Organization", "2.5.4.11=OrgUnit", "2.5.4.7=Waldorf", "2.5.4.8=Waldorf", "2.5.4.6=DE", "2.5.4.3=app1"}))

	g.Expect(p.Subject.String()).To(Equal("O=Organization,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app1"))
	g.Expect(p.Leaf().Subject.CommonName).To(Equal("app1"))
	g.Expect(p.Chain).To(HaveLen(2))
	g.Expect(p.CA[0].Equal(connectorCA(t, srv))).To(BeTrue())
	g.Expect(p.Key).To(BeAssignableToTypeOf(&ecdsa.PrivateKey{}))
	pair, err := tls.X509KeyPair(p.ChainPEM, p.KeyPEM)
	g.Expect(err).NotTo(HaveOccurred(), "the key PEM matches the chain PEM")
	g.Expect(pair.Certificate).To(HaveLen(2))
	g.Expect(string(p.KeyPEM)).To(HavePrefix("-----BEGIN PRIVATE KEY-----"))
	gw := srv.Info().GatewayURL
	g.Expect(p.API.InfoURL).To(Equal(gw + pathMgmtInfo))
	g.Expect(p.API.EventsURL).To(Equal(gw + "/app1/v1/events"))
	g.Expect(p.API.EventsInfoURL).To(Equal(gw + "/app1/v1/events/subscribed"))
	g.Expect(p.TokenURL).To(Equal(srv.Info().ConnectorURL + pathSigningInfo))
	g.Expect(p.KeyAlgorithm).To(Equal("rsa2048"))
	g.Expect(requests(srv, "GET", pathSigningInfo)).To(Equal(1))
	g.Expect(requests(srv, "POST", pathCertificates)).To(Equal(1))
	// The issued certificate works for mTLS against the connector.
	_, err = x509.ParseCertificate(pair.Certificate[0])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(logs.String()).To(ContainSubstring("connector pairing"))
	g.Expect(logs.String()).NotTo(ContainSubstring(tok))
	g.Expect(logs.String()).NotTo(ContainSubstring("token="))
}

func TestPairFollowsTheConnectorKeyAlgorithmByDefault(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	c, err := connector.New(connector.WithRootCAs(srv.CAPool()), connector.WithDialContext(mockauth.DialContext))
	g.Expect(err).NotTo(HaveOccurred())

	srv.SetKeyAlgorithm("ecdsa-p256")
	p, err := c.Pair(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Key).To(BeAssignableToTypeOf(&ecdsa.PrivateKey{}))

	srv.SetKeyAlgorithm("") // unknown: RSA 2048
	p, err = c.Pair(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Key).To(BeAssignableToTypeOf(&rsa.PrivateKey{}))
	g.Expect(p.Key.(*rsa.PrivateKey).N.BitLen()).To(Equal(2048))

	// Renewal keeps the algorithm of the current key, whatever the client's default.
	r, err := connector.NewRenewer(ecClient(t, srv), srv.Info().GatewayURL+pathRenewals)
	g.Expect(err).NotTo(HaveOccurred())
	certPEM, keyPEM, _, err := r.Renew(ctx(t), p.TLSCertificate())
	g.Expect(err).NotTo(HaveOccurred())
	next, err := tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(next.PrivateKey.(*rsa.PrivateKey).N.BitLen()).To(Equal(2048))
}

func TestKeyTypes(t *testing.T) {
	g := NewWithT(t)
	for in, want := range map[string]connector.KeyType{
		"rsa2048": connector.RSA2048, "RSA": connector.RSA2048, "rsa-4096": connector.RSA4096,
		"ecdsa-p256": connector.ECDSAP256, "ECDSA": connector.ECDSAP256, "p256": connector.ECDSAP256,
	} {
		got, err := connector.ParseKeyType(in)
		g.Expect(err).NotTo(HaveOccurred(), in)
		g.Expect(got).To(Equal(want), in)
	}
	for _, in := range []string{"", "dsa", "rsa1024", "ed25519"} {
		_, err := connector.ParseKeyType(in)
		g.Expect(err).To(MatchError(connector.ErrInvalidInput), in)
	}
	_, err := connector.New(connector.WithKeyType("rsa1024"))
	g.Expect(err).To(MatchError(connector.ErrInvalidInput))

	k, err := connector.NewKey(connector.RSA4096)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k.(*rsa.PrivateKey).N.BitLen()).To(Equal(4096))
	k, err = connector.NewKey(connector.ECDSAP256)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k.(*ecdsa.PrivateKey).Curve.Params().Name).To(Equal("P-256"))
	_, err = connector.NewKey("rsa1024")
	g.Expect(err).To(MatchError(connector.ErrInvalidInput))
}

func TestPairRefusesAUsedOrUnknownTokenAndSaysANewOneIsNeeded(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	logOpt, logs := debugLogger()
	c := ecClient(t, srv, logOpt)
	u, tok := mockToken(t, srv, "app")
	_, err := c.Pair(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())

	_, err = c.Pair(ctx(t), u) // reuse
	g.Expect(err).To(MatchError(connector.ErrTokenInvalid))
	g.Expect(err.Error()).To(ContainSubstring("a new one-time token is needed"))
	g.Expect(err.Error()).To(ContainSubstring("Invalid token."))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(403))
	g.Expect(ce.Code).To(Equal(403))
	g.Expect(ce.Op).To(Equal("pair"))
	g.Expect(requests(srv, "GET", pathSigningInfo)).To(Equal(2), "a refused token is not retried")

	_, err = c.Pair(ctx(t), srv.Info().ConnectorURL+pathSigningInfo+"?token=neverissued12345")
	g.Expect(err).To(MatchError(connector.ErrTokenInvalid))
	g.Expect(err.Error()).NotTo(ContainSubstring("neverissued12345"))
	g.Expect(logs.String()).NotTo(ContainSubstring(tok))
	g.Expect(logs.String()).NotTo(ContainSubstring("neverissued12345"))
}

func TestPairRedactsATokenTheServerEchoes(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	u, tok := mockToken(t, srv, "app")
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetPairing, Status: 403, Body: `{"code":403,"error":"token ` + tok + ` expired"}`})
	_, err := ecClient(t, srv).Pair(ctx(t), u)
	g.Expect(err).To(MatchError(connector.ErrTokenInvalid))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	g.Expect(err.Error()).To(ContainSubstring("token [redacted] expired"))
}

func TestPairSubjectMismatch(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	c := ecClient(t, srv)

	// The connector wants another subject than it announced: 400.
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetPairing, Answer: mockauth.AnswerAnnounceOtherSubject, Count: 1})
	_, err := c.Pair(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).To(MatchError(connector.ErrSubjectMismatch))
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(400))
	g.Expect(ce.Message).To(Equal("CSR: Invalid organization provided."))

	// The connector issues a certificate for another subject: refused locally.
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetCSR, Answer: mockauth.AnswerOtherSubject, Count: 1})
	_, err = c.Pair(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).To(MatchError(connector.ErrSubjectMismatch))
	g.Expect(err.Error()).To(ContainSubstring("someone-else"))
}

func TestPairRefusesUnusableCertificates(t *testing.T) {
	srv := startConnector(t, mockauth.Options{})
	for _, tc := range []struct {
		answer string
		want   string
	}{
		{mockauth.AnswerOtherKey, "does not match the key"},
		{mockauth.AnswerOtherCA, "does not verify"},
		{mockauth.AnswerExpired, "does not verify"},
		{mockauth.AnswerCrtNotBase64, `"crt" is not base64`},
		{mockauth.AnswerCrtNotPEM, `"crt": no certificate`},
		{mockauth.AnswerNoCrt, `no "crt" and no "clientCrt"`},
		{mockauth.AnswerNoCA, `no "caCrt"`},
		{mockauth.AnswerClientCrtDiffer, `"clientCrt" is not the first certificate`},
	} {
		t.Run(tc.answer, func(t *testing.T) {
			g := NewWithT(t)
			addFault(t, srv, mockauth.Fault{Target: mockauth.TargetCSR, Answer: tc.answer, Count: 1})
			u, tok := mockToken(t, srv, "app")
			_, err := ecClient(t, srv).Pair(ctx(t), u)
			g.Expect(err).To(MatchError(connector.ErrInvalidResponse))
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
			g.Expect(err.Error()).NotTo(ContainSubstring(tok))
			g.Expect(err.Error()).NotTo(ContainSubstring("token="))
		})
	}
}

func TestPairAcceptsPlainClientCrtWithoutChain(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetCSR, Answer: mockauth.AnswerClientCrtOnly, Count: 1})
	p, err := ecClient(t, srv).Pair(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Chain).To(HaveLen(1))
}

func TestPairRetriesFailuresBeforeTheTokenWasSent(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	// The first two connections die before the TLS handshake.
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetConnector, Refuse: true, Count: 2})
	_, err := ecClient(t, srv).Pair(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(requests(srv, "GET", pathSigningInfo)).To(Equal(1))
	g.Expect(srv.Stats().Connections["connector"]).To(Equal(3), "two failed connections, then one reused for GET and POST")
}

func TestPairRetriesAreBounded(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetConnector, Refuse: true})
	u, tok := mockToken(t, srv, "app")
	_, err := ecClient(t, srv).Pair(ctx(t), u) // WithRetry(3, …)
	g.Expect(err).To(HaveOccurred())
	g.Expect(srv.Stats().Connections["connector"]).To(Equal(3))
	g.Expect(err.Error()).To(HavePrefix("connector: pair " + srv.Info().ConnectorURL + pathSigningInfo + ": "))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	g.Expect(requests(srv, "GET", pathSigningInfo)).To(Equal(0))
}

func TestPairNeverResendsATokenThatMayHaveArrived(t *testing.T) {
	for _, tc := range []struct{ target, method, path string }{
		{mockauth.TargetPairing, "GET", pathSigningInfo},
		{mockauth.TargetCSR, "POST", pathCertificates},
	} {
		t.Run(tc.target, func(t *testing.T) {
			g := NewWithT(t)
			srv := startConnector(t, mockauth.Options{})
			addFault(t, srv, mockauth.Fault{Target: tc.target, Hangup: true})
			logOpt, logs := debugLogger()
			u, tok := mockToken(t, srv, "app")
			_, err := ecClient(t, srv, logOpt).Pair(ctx(t), u)
			g.Expect(err).To(MatchError(connector.ErrTokenMaybeUsed))
			g.Expect(requests(srv, tc.method, tc.path)).To(Equal(1), "sent once, never again")
			g.Expect(err.Error()).NotTo(ContainSubstring(tok))
			g.Expect(err.Error()).NotTo(ContainSubstring("token="))
			g.Expect(logs.String()).NotTo(ContainSubstring("token="))
		})
	}
}

func TestPairServerErrorIsTyped(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetPairing, Status: 500, Body: `{"code":500,"error":"database unavailable"}`, Count: 1})
	u, _ := mockToken(t, srv, "app")
	_, err := ecClient(t, srv).Pair(ctx(t), u)
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(500))
	g.Expect(ce.Message).To(Equal("database unavailable"))
	g.Expect(ce.Temporary()).To(BeTrue())
	g.Expect(err).NotTo(MatchError(connector.ErrTokenInvalid))
	g.Expect(requests(srv, "GET", pathSigningInfo)).To(Equal(1), "an answer means the token may be consumed: no retry")

	// A proxy's HTML error page, with its own content type.
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetPairing, Status: 502, Body: "<html>bad gateway</html>", ContentType: "text/html", Count: 1})
	_, err = ecClient(t, srv).Pair(ctx(t), u)
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(502))
	g.Expect(ce.Message).To(Equal("<html>bad gateway</html>"))
}

func TestPairRefusesBadTokenURLs(t *testing.T) {
	c, err := connector.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"", "not a url", "ftp://host/x?token=secret123", "https:///path?token=secret123", "://x?token=secret123", "https://host:99999999/?token=secret123"} {
		t.Run(u, func(t *testing.T) {
			g := NewWithT(t)
			_, err := c.Pair(ctx(t), u)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).NotTo(ContainSubstring("secret123"))
			if u != "https://host:99999999/?token=secret123" {
				g.Expect(err).To(MatchError(connector.ErrInvalidInput))
			}
		})
	}
}

func TestPairRejectsAnUnparsableSubject(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetPairing, Answer: mockauth.AnswerBadSubject})
	_, err := ecClient(t, srv).Pair(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).To(MatchError(connector.ErrInvalidResponse))
	g.Expect(err.Error()).To(ContainSubstring("certificate.subject"))
	g.Expect(requests(srv, "POST", pathCertificates)).To(Equal(0))
}

func TestRedactURL(t *testing.T) {
	g := NewWithT(t)
	g.Expect(connector.RedactURL("https://user:pw@h.localhost:1/a/b?token=abc#frag")).To(Equal("https://h.localhost:1/a/b"))
	g.Expect(connector.RedactURL("https://h/x")).To(Equal("https://h/x"))
	g.Expect(connector.RedactURL("%zz?token=abc")).To(Equal("<invalid URL>"))
	g.Expect(strings.Contains(connector.RedactURL("https://h/?token=abc"), "abc")).To(BeFalse())
}

func TestAnUntrustedServerIsNotRetried(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	c, err := connector.New(connector.WithDialContext(mockauth.DialContext), connector.WithRetry(4, time.Millisecond)) // system roots
	g.Expect(err).NotTo(HaveOccurred())
	u, tok := mockToken(t, srv, "app")
	_, err = c.Pair(ctx(t), u)
	g.Expect(err).To(MatchError(ContainSubstring("certificate signed by unknown authority")))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	g.Expect(srv.Stats().Connections["connector"]).To(Equal(1), "one handshake, no retries")
	g.Expect(requests(srv, "GET", pathSigningInfo)).To(Equal(0))
}
