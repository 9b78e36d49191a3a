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
	"github.com/credbroker/credbroker/internal/testpki"
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
	f := newFake()
	defer f.Close()
	logOpt, logs := debugLogger()
	c := f.client(logOpt)
	tokenURL, tok := f.NewToken("app1")

	p, err := c.Pair(ctx(t), tokenURL)
	g.Expect(err).NotTo(HaveOccurred())

	// The CSR carried the subject in the connector's order.
	var seq pkix.RDNSequence
	f.mu.Lock()
	raw := f.lastCSR.RawSubject
	f.mu.Unlock()
	_, err = asn1.Unmarshal(raw, &seq)
	g.Expect(err).NotTo(HaveOccurred())
	var order []string
	for _, rdn := range seq {
		order = append(order, rdn[0].Type.String()+"="+rdn[0].Value.(string))
	}
	g.Expect(order).To(Equal([]string{"2.5.4.10=Org", "2.5.4.11=OrgUnit", "2.5.4.7=Waldorf", "2.5.4.8=Waldorf", "2.5.4.6=DE", "2.5.4.3=app1"}))

	g.Expect(p.Subject.String()).To(Equal("O=Org,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app1"))
	g.Expect(p.Leaf().Subject.CommonName).To(Equal("app1"))
	g.Expect(p.Chain).To(HaveLen(2))
	g.Expect(p.CA[0].Equal(f.CA.Cert)).To(BeTrue())
	g.Expect(p.Key).To(BeAssignableToTypeOf(&ecdsa.PrivateKey{}))
	pair, err := tls.X509KeyPair(p.ChainPEM, p.KeyPEM)
	g.Expect(err).NotTo(HaveOccurred(), "the key PEM matches the chain PEM")
	g.Expect(pair.Certificate).To(HaveLen(2))
	g.Expect(string(p.KeyPEM)).To(HavePrefix("-----BEGIN PRIVATE KEY-----"))
	g.Expect(p.API.InfoURL).To(Equal(f.URL + "/v1/applications/management/info"))
	g.Expect(p.API.EventsURL).To(Equal(f.URL + "/app/v1/events"))
	g.Expect(p.API.EventsInfoURL).To(Equal(f.URL + "/app/v1/subscribed"))
	g.Expect(p.TokenURL).To(Equal(f.URL + "/v1/applications/signingRequests/info"))
	g.Expect(p.KeyAlgorithm).To(Equal("rsa2048"))
	g.Expect(f.Count("pair")).To(Equal(1))
	g.Expect(f.Count("csr")).To(Equal(1))
	// The issued certificate works for mTLS against the connector.
	_, err = x509.ParseCertificate(pair.Certificate[0])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(logs.String()).To(ContainSubstring("connector pairing"))
	g.Expect(logs.String()).NotTo(ContainSubstring(tok))
	g.Expect(logs.String()).NotTo(ContainSubstring("token="))
}

func TestPairFollowsTheConnectorKeyAlgorithmByDefault(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	c, err := connector.New(connector.WithRootCAs(f.CA.Pool()), connector.WithDialContext(loopbackDial()))
	g.Expect(err).NotTo(HaveOccurred())

	f.Set(func(f *fakeConnector) { f.KeyAlgorithm = "ecdsa-p256" })
	u, _ := f.NewToken("app")
	p, err := c.Pair(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Key).To(BeAssignableToTypeOf(&ecdsa.PrivateKey{}))

	f.Set(func(f *fakeConnector) { f.KeyAlgorithm = "" }) // unknown: RSA 2048
	u, _ = f.NewToken("app")
	p, err = c.Pair(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Key).To(BeAssignableToTypeOf(&rsa.PrivateKey{}))
	g.Expect(p.Key.(*rsa.PrivateKey).N.BitLen()).To(Equal(2048))

	// Renewal keeps the algorithm of the current key, whatever the client's default.
	r, err := connector.NewRenewer(f.client(connector.WithKeyType(connector.ECDSAP256)), f.URL+"/v1/applications/certificates/renewals")
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
	f := newFake()
	defer f.Close()
	logOpt, logs := debugLogger()
	c := f.client(logOpt)
	u, tok := f.NewToken("app")
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
	g.Expect(f.Count("pair")).To(Equal(2), "a refused token is not retried")

	_, err = c.Pair(ctx(t), f.URL+"/v1/applications/signingRequests/info?token=neverissued12345")
	g.Expect(err).To(MatchError(connector.ErrTokenInvalid))
	g.Expect(err.Error()).NotTo(ContainSubstring("neverissued12345"))
	g.Expect(logs.String()).NotTo(ContainSubstring(tok))
	g.Expect(logs.String()).NotTo(ContainSubstring("neverissued12345"))
}

func TestPairRedactsATokenTheServerEchoes(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	c := f.client()
	u, tok := f.NewToken("app")
	f.Set(func(f *fakeConnector) {
		f.Fault = func(op string) (int, string) {
			return 403, `{"code":403,"error":"token ` + tok + ` expired"}`
		}
	})
	_, err := c.Pair(ctx(t), u)
	g.Expect(err).To(MatchError(connector.ErrTokenInvalid))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	g.Expect(err.Error()).To(ContainSubstring("token [redacted] expired"))
}

func TestPairSubjectMismatch(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	c := f.client()

	// The connector wants another subject than it announced: 400.
	f.Set(func(f *fakeConnector) { f.WantSubject = "O=Other,CN=%s" })
	u, _ := f.NewToken("app")
	_, err := c.Pair(ctx(t), u)
	g.Expect(err).To(MatchError(connector.ErrSubjectMismatch))
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(400))
	g.Expect(ce.Message).To(Equal("CSR: Invalid subject."))

	// The connector issues a certificate for another subject: refused locally.
	f.Set(func(f *fakeConnector) {
		f.WantSubject = ""
		f.Issue = func(csr *x509.CertificateRequest) (string, string, string) {
			other := *csr
			other.Subject.CommonName = "someone-else"
			leaf := f.CA.SignCSR(&other, time.Hour)
			return b64(testpki.EncodeCerts(leaf)), "", b64(f.CA.CertPEM())
		}
	})
	u, _ = f.NewToken("app")
	_, err = c.Pair(ctx(t), u)
	g.Expect(err).To(MatchError(connector.ErrSubjectMismatch))
	g.Expect(err.Error()).To(ContainSubstring("someone-else"))
}

func TestPairRefusesUnusableCertificates(t *testing.T) {
	other := testpki.NewCA()
	cases := []struct {
		name  string
		issue func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string)
		want  string
	}{
		{"certificate for another key", func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string) {
			leaf := f.CA.Issue(testpki.WithSubject(csr.Subject), testpki.ClientAuth())
			return b64(leaf.CertPEM()), "", b64(f.CA.CertPEM())
		}, "does not match the key"},
		{"chain from another CA", func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string) {
			leaf := other.SignCSR(csr, time.Hour)
			return b64(testpki.EncodeCerts(leaf)), "", b64(f.CA.CertPEM())
		}, "does not verify"},
		{"expired certificate", func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string) {
			leaf := f.CA.SignCSR(csr, -30*time.Second)
			return b64(testpki.EncodeCerts(leaf)), "", b64(f.CA.CertPEM())
		}, "does not verify"},
		{"crt not base64", func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string) {
			return "%%%", "", b64(f.CA.CertPEM())
		}, `"crt" is not base64`},
		{"crt not PEM", func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string) {
			return b64([]byte("hello")), "", b64(f.CA.CertPEM())
		}, `"crt": no certificate`},
		{"no certificate", func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string) {
			return "", "", b64(f.CA.CertPEM())
		}, `no "crt" and no "clientCrt"`},
		{"no CA", func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string) {
			return b64(testpki.EncodeCerts(f.CA.SignCSR(csr, time.Hour))), "", ""
		}, `no "caCrt"`},
		{"clientCrt differs from crt", func(f *fakeConnector, csr *x509.CertificateRequest) (string, string, string) {
			a, b := f.CA.SignCSR(csr, time.Hour), f.CA.SignCSR(csr, time.Hour)
			return b64(testpki.EncodeCerts(a)), b64(testpki.EncodeCerts(b)), b64(f.CA.CertPEM())
		}, `"clientCrt" is not the first certificate`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newFake()
			defer f.Close()
			f.Set(func(f *fakeConnector) {
				f.Issue = func(csr *x509.CertificateRequest) (string, string, string) { return tc.issue(f, csr) }
			})
			u, tok := f.NewToken("app")
			_, err := f.client().Pair(ctx(t), u)
			g.Expect(err).To(MatchError(connector.ErrInvalidResponse))
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
			g.Expect(err.Error()).NotTo(ContainSubstring(tok))
			g.Expect(err.Error()).NotTo(ContainSubstring("token="))
		})
	}
}

func TestPairAcceptsPlainClientCrtWithoutChain(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	f.Set(func(f *fakeConnector) {
		f.Issue = func(csr *x509.CertificateRequest) (string, string, string) {
			return "", b64(testpki.EncodeCerts(f.CA.SignCSR(csr, time.Hour))), b64(f.CA.CertPEM())
		}
	})
	u, _ := f.NewToken("app")
	p, err := f.client().Pair(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Chain).To(HaveLen(1))
}

func TestPairRetriesFailuresBeforeTheTokenWasSent(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	f.lis.Drop.Store(2) // the first two connections die in the TLS handshake
	u, _ := f.NewToken("app")
	_, err := f.client().Pair(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(f.Count("pair")).To(Equal(1))
	g.Expect(f.lis.accepted.Load()).To(BeEquivalentTo(3), "two failed connections, then one reused for GET and POST")
}

func TestPairRetriesAreBounded(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	f.lis.Drop.Store(100)
	u, tok := f.NewToken("app")
	_, err := f.client().Pair(ctx(t), u) // WithRetry(3, …)
	g.Expect(err).To(HaveOccurred())
	g.Expect(f.lis.accepted.Load()).To(BeEquivalentTo(3))
	g.Expect(err.Error()).To(HavePrefix("connector: pair " + f.URL + "/v1/applications/signingRequests/info: "))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	g.Expect(f.Count("pair")).To(Equal(0))
}

func TestPairNeverResendsATokenThatMayHaveArrived(t *testing.T) {
	for _, op := range []string{"pair", "csr"} {
		t.Run(op, func(t *testing.T) {
			g := NewWithT(t)
			f := newFake()
			defer f.Close()
			f.Set(func(f *fakeConnector) { f.Hangup[op] = true })
			logOpt, logs := debugLogger()
			u, tok := f.NewToken("app")
			_, err := f.client(logOpt).Pair(ctx(t), u)
			g.Expect(err).To(MatchError(connector.ErrTokenMaybeUsed))
			g.Expect(f.Count(op)).To(Equal(1), "sent once, never again")
			g.Expect(err.Error()).NotTo(ContainSubstring(tok))
			g.Expect(err.Error()).NotTo(ContainSubstring("token="))
			g.Expect(logs.String()).NotTo(ContainSubstring("token="))
		})
	}
}

func TestPairServerErrorIsTyped(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	f.Set(func(f *fakeConnector) {
		f.Fault = func(op string) (int, string) { return 500, `{"code":500,"error":"database unavailable"}` }
	})
	u, _ := f.NewToken("app")
	_, err := f.client().Pair(ctx(t), u)
	var ce *connector.Error
	g.Expect(errors.As(err, &ce)).To(BeTrue())
	g.Expect(ce.StatusCode).To(Equal(500))
	g.Expect(ce.Message).To(Equal("database unavailable"))
	g.Expect(ce.Temporary()).To(BeTrue())
	g.Expect(err).NotTo(MatchError(connector.ErrTokenInvalid))
	g.Expect(f.Count("pair")).To(Equal(1), "an answer means the token may be consumed: no retry")

	f.Set(func(f *fakeConnector) {
		f.Fault = func(op string) (int, string) { return 502, "<html>bad gateway</html>" }
	})
	_, err = f.client().Pair(ctx(t), u)
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
	f := newFake()
	defer f.Close()
	f.Set(func(f *fakeConnector) { f.Subject = "O=Org,CN" })
	u, _ := f.NewToken("app")
	_, err := f.client().Pair(ctx(t), u)
	g.Expect(err).To(MatchError(connector.ErrInvalidResponse))
	g.Expect(err.Error()).To(ContainSubstring("certificate.subject"))
	g.Expect(f.Count("csr")).To(Equal(0))
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
	f := newFake()
	defer f.Close()
	c, err := connector.New(connector.WithDialContext(loopbackDial()), connector.WithRetry(4, time.Millisecond)) // system roots
	g.Expect(err).NotTo(HaveOccurred())
	u, tok := f.NewToken("app")
	_, err = c.Pair(ctx(t), u)
	g.Expect(err).To(MatchError(ContainSubstring("certificate signed by unknown authority")))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	g.Expect(f.lis.accepted.Load()).To(BeEquivalentTo(1), "one handshake, no retries")
	g.Expect(f.Count("pair")).To(Equal(0))
}
