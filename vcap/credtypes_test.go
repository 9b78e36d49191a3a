package vcap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/pemx"
	"github.com/credbroker/credbroker/internal/testpki"
)

const plantedSecret = "planted-secret-3c9e1f0a"

func TestCredentialTypes(t *testing.T) {
	p := testPKI
	certPEM, keyPEM := string(p.valid.CertPEM()), string(p.valid.KeyPEM(testpki.PKCS8))
	extKey := WithKeyPEM(p.valid.KeyPEM(testpki.SEC1), "--key-file /etc/key.pem")
	extBoth := WithKeyPEM(append(p.valid.CertPEM(), p.valid.KeyPEM(testpki.PKCS8)...), "--key-file /etc/both.pem")
	xs, ias := baseXSUAACreds(), baseIASCreds()
	xsURL := "https://provider.authentication.eu10.hana.ondemand.com"
	xsCertURL := "https://provider.authentication.cert.eu10.hana.ondemand.com"

	type want struct {
		ct, auth, tokenURL string
		key                bool   // a key is attached
		keySource          string // PrivateKey.Source
		errs               []error
		problemHas         []string
	}
	cases := []struct {
		name  string
		entry map[string]any
		opts  []Option
		want  want
	}{
		{"instance-secret", xsuaa("b", merge(xs, map[string]any{"credential-type": "instance-secret", "clientsecret": plantedSecret})), nil,
			want{ct: "instance-secret", auth: "secret", tokenURL: xsURL + "/oauth/token"}},
		{"binding-secret upper-case", xsuaa("b", merge(xs, map[string]any{"credential-type": "Binding-Secret", "clientsecret": plantedSecret})), nil,
			want{ct: "binding-secret", auth: "secret", tokenURL: xsURL + "/oauth/token"}},
		{"no credential-type, secret", xsuaa("b", merge(xs, map[string]any{"clientsecret": plantedSecret})), nil,
			want{ct: "", auth: "secret", tokenURL: xsURL + "/oauth/token"}},
		{"x509 with certurl", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": certPEM, "key": keyPEM, "certurl": "https://custom.cert.example/"})), nil,
			want{ct: "x509", auth: "mtls", tokenURL: "https://custom.cert.example/oauth/token", key: true, keySource: "binding"}},
		{"x509 certurl derived the way SAP's libraries do", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": escaped(p.valid.CertPEM()), "key": escaped(p.valid.KeyPEM(testpki.SEC1))})), nil,
			want{ct: "x509", auth: "mtls", tokenURL: xsCertURL + "/oauth/token", key: true, keySource: "binding"}},
		{"x509 without certurl on a host certurl cannot be derived for", xsuaa("b", merge(xs, map[string]any{"url": "https://uaa.example.com", "credential-type": "x509", "certificate": certPEM, "key": keyPEM})), nil,
			want{ct: "x509", auth: "none", key: true, errs: []error{ErrMissingField}, problemHas: []string{`field "certurl"`}}},
		{"x509 and a secret: the certificate wins", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "clientsecret": plantedSecret, "certificate": certPEM, "key": keyPEM})), nil,
			want{ct: "x509", auth: "mtls", tokenURL: xsCertURL + "/oauth/token", key: true, keySource: "binding"}},
		{"binding-secret and a certificate: the secret wins", xsuaa("b", merge(xs, map[string]any{"credential-type": "binding-secret", "clientsecret": plantedSecret, "certificate": certPEM, "key": keyPEM})), nil,
			want{ct: "binding-secret", auth: "secret", tokenURL: xsURL + "/oauth/token", key: true, keySource: "binding"}},
		{"no credential-type, no secret, certificate and key", xsuaa("b", merge(xs, map[string]any{"certificate": certPEM, "key": keyPEM})), nil,
			want{ct: "", auth: "mtls", tokenURL: xsCertURL + "/oauth/token", key: true, keySource: "binding"}},
		{"self-managed x509 without a key", xsuaa("my-xsuaa", merge(xs, map[string]any{"credential-type": "x509", "certificate": certPEM})), nil,
			want{ct: "x509", auth: "none", errs: []error{ErrNoKey}, problemHas: []string{`binding "my-xsuaa": field "key": no private key: credential-type x509 but no "key" and no --key-file`}}},
		{"self-managed x509 with --key-file", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": certPEM})), []Option{extKey},
			want{ct: "x509", auth: "mtls", tokenURL: xsCertURL + "/oauth/token", key: true, keySource: "--key-file /etc/key.pem"}},
		{"self-managed x509 with a --key-file for another certificate", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": string(p.other.CertPEM())})), []Option{extKey},
			want{ct: "x509", auth: "none", errs: []error{ErrKeyMismatch}, problemHas: []string{"--key-file /etc/key.pem belongs to another certificate"}}},
		{"key in the binding for another certificate", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": string(p.other.CertPEM()), "key": keyPEM})), nil,
			want{ct: "x509", auth: "none", key: true, keySource: "binding", errs: []error{ErrKeyMismatch}, problemHas: []string{`subject "CN=other"`}}},
		{"expired certificate", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": string(p.expired.CertPEM()), "key": string(p.expired.KeyPEM(testpki.PKCS8))})), nil,
			want{ct: "x509", auth: "none", key: true, keySource: "binding", errs: []error{ErrCertificateExpired},
				problemHas: []string{"not after " + p.expired.Cert.NotAfter.UTC().Format(time.RFC3339), "now 2026-06-01T12:00:00Z"}}},
		{"not yet valid certificate", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": string(p.notYet.CertPEM()), "key": string(p.notYet.KeyPEM(testpki.PKCS8))})), nil,
			want{ct: "x509", auth: "none", key: true, keySource: "binding", errs: []error{ErrCertificateNotValid},
				problemHas: []string{"not before " + p.notYet.Cert.NotBefore.UTC().Format(time.RFC3339)}}},
		{"certificate that does not parse", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", "key": keyPEM})), nil,
			want{ct: "x509", auth: "none", key: true, keySource: "binding", errs: []error{ErrBadCertificate}, problemHas: []string{`field "certificate"`}}},
		{"key that does not parse", xsuaa("b", merge(xs, map[string]any{"credential-type": "x509", "certificate": certPEM, "key": "-----BEGIN PRIVATE KEY-----\n" + "cGxhbnRlZC1zZWNyZXQtM2M5ZTFmMGE=" + "\n-----END PRIVATE KEY-----\n"})), nil,
			want{ct: "x509", auth: "none", errs: []error{ErrBadKey}, problemHas: []string{`field "key"`}}},
		{"hide-secret: no secret, no certificate", xsuaa("b", xs), nil,
			want{ct: "", auth: "none", errs: []error{ErrNoSecret}, problemHas: []string{"hide-secret"}}},
		{"binding-secret with the secret hidden", xsuaa("b", merge(xs, map[string]any{"credential-type": "binding-secret"})), nil,
			want{ct: "binding-secret", auth: "none", errs: []error{ErrNoSecret}}},
		{"credential-type NONE is deliberate, not a problem", identity("b", merge(ias, map[string]any{"credential-type": "NONE"})), nil,
			want{ct: "none", auth: "none"}},
		{"unknown credential-type", xsuaa("b", merge(xs, map[string]any{"credential-type": "kerberos", "clientsecret": plantedSecret})), nil,
			want{ct: "kerberos", auth: "none", errs: []error{ErrUnknownCredential}, problemHas: []string{`field "credential-type"`}}},
		{"missing clientid", xsuaa("b", merge(xs, map[string]any{"clientid": nil, "clientsecret": plantedSecret})), nil,
			want{ct: "", auth: "secret", tokenURL: xsURL + "/oauth/token", errs: []error{ErrMissingField}, problemHas: []string{`field "clientid"`}}},
		{"IAS secret", identity("b", merge(ias, map[string]any{"clientsecret": plantedSecret})), nil,
			want{ct: "", auth: "secret", tokenURL: "https://tenant.accounts.ondemand.com/oauth2/token"}},
		{"IAS X509_GENERATED", identity("b", merge(ias, map[string]any{"credential-type": "X509_GENERATED", "certificate": escaped(p.valid.CertPEM()), "key": escaped(p.valid.KeyPEM(testpki.PKCS8))})), nil,
			want{ct: "x509_generated", auth: "mtls", tokenURL: "https://tenant.accounts.ondemand.com/oauth2/token", key: true, keySource: "binding"}},
		{"IAS X509_GENERATED with a certurl: IAS takes mTLS on url", identity("b", merge(ias, map[string]any{"credential-type": "X509_GENERATED", "certurl": "https://cert.tenant.accounts.ondemand.com", "certificate": certPEM, "key": keyPEM})), nil,
			want{ct: "x509_generated", auth: "mtls", tokenURL: "https://tenant.accounts.ondemand.com/oauth2/token", key: true, keySource: "binding"}},
		{"IAS SECRET", identity("b", merge(ias, map[string]any{"credential-type": "SECRET", "clientsecret": plantedSecret})), nil,
			want{ct: "secret", auth: "secret", tokenURL: "https://tenant.accounts.ondemand.com/oauth2/token"}},
		{"IAS X509_PROVIDED with the key from outside", identity("b", merge(ias, map[string]any{"credential-type": "X509_PROVIDED", "certificate": certPEM})), []Option{extKey},
			want{ct: "x509_provided", auth: "mtls", tokenURL: "https://tenant.accounts.ondemand.com/oauth2/token", key: true, keySource: "--key-file /etc/key.pem"}},
		{"IAS X509_PROVIDED without a key", identity("b", merge(ias, map[string]any{"credential-type": "X509_PROVIDED", "certificate": certPEM})), nil,
			want{ct: "x509_provided", auth: "none", errs: []error{ErrNoKey}}},
		{"IAS X509_ATTESTED: certificate and key from outside", identity("b", merge(ias, map[string]any{"credential-type": "X509_ATTESTED"})), []Option{extBoth},
			want{ct: "x509_attested", auth: "mtls", tokenURL: "https://tenant.accounts.ondemand.com/oauth2/token", key: true, keySource: "--key-file /etc/both.pem"}},
		{"IAS X509_ATTESTED with nothing supplied", identity("b", merge(ias, map[string]any{"credential-type": "X509_ATTESTED"})), nil,
			want{ct: "x509_attested", auth: "none", errs: []error{ErrNoCertificate}}},
		{"IAS without url", identity("b", merge(ias, map[string]any{"url": nil, "clientsecret": plantedSecret})), nil,
			want{ct: "", auth: "none", errs: []error{ErrMissingField}, problemHas: []string{`field "url"`}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			b := only(t, mustSet(t, vcapJSON(t, tc.entry), tc.opts...))
			g.Expect(b.Auth).NotTo(BeNil())
			a := b.Auth
			g.Expect(a.CredentialType).To(Equal(tc.want.ct))
			g.Expect(string(a.Auth)).To(Equal(tc.want.auth), "problems: %v", b.Problems)
			g.Expect(a.TokenURL).To(Equal(tc.want.tokenURL))
			g.Expect(a.Key != nil).To(Equal(tc.want.key), "key attached")
			if tc.want.keySource != "" {
				g.Expect(a.Key.Source()).To(Equal(tc.want.keySource))
			}
			if len(tc.want.errs) == 0 {
				g.Expect(b.Problems).To(BeEmpty())
				g.Expect(b.Err()).NotTo(HaveOccurred())
			}
			for _, e := range tc.want.errs {
				g.Expect(errors.Is(b.Err(), e)).To(BeTrue(), "want %v in %v", e, b.Err())
			}
			joined := strings.Join(b.Problems, "\n")
			for _, s := range tc.want.problemHas {
				g.Expect(joined).To(ContainSubstring(s))
			}
			if b.Err() != nil {
				var ve *Error
				g.Expect(errors.As(b.Err(), &ve)).To(BeTrue())
				g.Expect(ve.Source).To(Equal(SourceVCAPServices))
				g.Expect(ve.Binding).To(Equal(b.Name))
				g.Expect(ve.Field).NotTo(BeEmpty())
				g.Expect(b.Err().Error()).To(HavePrefix("vcap: VCAP_SERVICES: binding "))
			}
			// Nothing secret in any rendering of the binding.
			for _, s := range []string{joined, fmt.Sprint(b.Err()), fmt.Sprintf("%+v %#v %+v", b, b, *a)} {
				g.Expect(s).NotTo(ContainSubstring(plantedSecret))
				g.Expect(s).NotTo(ContainSubstring("PRIVATE KEY"))
				g.Expect(s).NotTo(ContainSubstring("cGxhbnRlZC1zZWNyZXQtM2M5ZTFmMGE="))
			}
			if a.Auth == AuthMTLS && b.Err() == nil {
				c, err := a.TLSCertificate()
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(c.Leaf.NotAfter).To(Equal(a.CertificateExpiresAt))
				g.Expect(c.PrivateKey).NotTo(BeNil())
				g.Expect(a.CertificatePEM).To(ContainSubstring("BEGIN CERTIFICATE"))
			}
			if a.Auth == AuthSecret {
				g.Expect(a.ClientSecret.Reveal()).To(Equal(plantedSecret))
			}
		})
	}
}

// TestMTLSHandshake proves the parsed material works: a client built from
// the binding completes a mutual-TLS handshake with a server that requires
// certificates from the test CA.
func TestMTLSHandshake(t *testing.T) {
	g := NewWithT(t)
	p := testPKI
	srvLeaf := p.ca.Issue(testpki.ServerAuth(), testpki.WithDNSNames("localhost"), testpki.WithIPs("127.0.0.1"))
	cli := p.ca.NewIntermediate().Issue(testpki.ClientAuth(), testpki.WithCommonName("chained"))
	set, err := ParseVCAP(vcapJSON(t, xsuaa("b", merge(baseXSUAACreds(), map[string]any{
		"credential-type": "x509", "certificate": escaped(cli.CertPEM()), "key": escaped(cli.KeyPEM(testpki.PKCS8)),
	}))), SourceVCAPServices, WithClock(func() time.Time { return cli.Cert.NotBefore.Add(time.Minute) }))
	g.Expect(err).NotTo(HaveOccurred())
	b := only(t, set)
	g.Expect(b.Problems).To(BeEmpty())
	g.Expect(b.Auth.Certificates).To(HaveLen(2), "leaf and intermediate")
	cert, err := b.Auth.TLSCertificate()
	g.Expect(err).NotTo(HaveOccurred())

	ln, err := tls.Listen("tcp", "127.0.0.1:0", testpki.ServerTLSConfig(srvLeaf, p.ca.Pool()))
	g.Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		peer <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()
	cfg := testpki.ClientTLSConfig(p.ca.Pool(), nil)
	cfg.Certificates = []tls.Certificate{cert}
	conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	g.Expect(conn.Handshake()).To(Succeed())
	g.Expect(<-peer).To(Equal("chained"))
}

func TestPEMVariants(t *testing.T) {
	p := testPKI
	ed := p.ca.Issue(testpki.WithKeyType(testpki.Ed25519), testpki.WithNotBeforeAfter(testNow.Add(-time.Hour), testNow.Add(time.Hour)))
	type variant struct {
		name      string
		cert, key string
		chainLen  int
	}
	flat := func(b []byte) string { return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", " ") }
	crlf := func(b []byte) string { return strings.ReplaceAll(string(b), "\n", "\r\n") }
	variants := []variant{
		{"PKCS#8 EC", string(p.valid.CertPEM()), string(p.valid.KeyPEM(testpki.PKCS8)), 1},
		{"SEC1 EC", string(p.valid.CertPEM()), string(p.valid.KeyPEM(testpki.SEC1)), 1},
		{"PKCS#1 RSA", string(p.rsa.CertPEM()), string(p.rsa.KeyPEM(testpki.PKCS1)), 1},
		{"PKCS#8 RSA", string(p.rsa.CertPEM()), string(p.rsa.KeyPEM(testpki.PKCS8)), 1},
		{"PKCS#8 Ed25519", string(ed.CertPEM()), string(ed.KeyPEM(testpki.PKCS8)), 1},
		{"literal \\n escapes", escaped(p.valid.CertPEM()), escaped(p.valid.KeyPEM(testpki.SEC1)), 1},
		{"literal \\r\\n escapes", strings.ReplaceAll(string(p.valid.CertPEM()), "\n", `\r\n`), strings.ReplaceAll(string(p.valid.KeyPEM(testpki.PKCS8)), "\n", `\r\n`), 1},
		{"CRLF line ends", crlf(p.rsa.CertPEM()), crlf(p.rsa.KeyPEM(testpki.PKCS1)), 1},
		{"flattened onto one line", flat(p.valid.CertPEM()), flat(p.valid.KeyPEM(testpki.PKCS8)), 1},
		{"quoted and indented", `"  ` + escaped(p.valid.CertPEM()) + `  "`, "\n\n" + string(p.valid.KeyPEM(testpki.PKCS8)) + "\n  ", 1},
		{"chain leaf + intermediate", string(p.inter.CertPEM()), string(p.inter.KeyPEM(testpki.PKCS8)), 2},
		{"key and certificate in one field order", string(p.valid.KeyPEM(testpki.PKCS8)) + string(p.valid.CertPEM()), string(p.valid.CertPEM()) + string(p.valid.KeyPEM(testpki.PKCS8)), 1},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			g := NewWithT(t)
			b := only(t, mustSet(t, vcapJSON(t, xsuaa("b", merge(baseXSUAACreds(), map[string]any{
				"credential-type": "x509", "certificate": v.cert, "key": v.key,
			})))))
			g.Expect(b.Problems).To(BeEmpty())
			g.Expect(b.Auth.Auth).To(Equal(AuthMTLS))
			g.Expect(b.Auth.Certificates).To(HaveLen(v.chainLen))
			g.Expect(pemx.KeyMatches(b.Auth.Leaf(), b.Auth.Key.Signer())).To(BeTrue())
			// The normalised key round-trips through PKCS#8.
			k2, err := parsePrivateKey([]byte(b.Auth.Key.PEM().Reveal()))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pemx.KeyMatches(b.Auth.Leaf(), k2)).To(BeTrue())
		})
	}
}

func TestPEMErrors(t *testing.T) {
	g := NewWithT(t)
	_, err := parsePrivateKey([]byte("no pem here"))
	g.Expect(err).To(MatchError(ErrNoKey))
	_, err = parsePrivateKey([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	g.Expect(errors.Is(err, ErrBadKey)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring("encrypted"))
	_, err = parsePrivateKey(testPKI.valid.CertPEM())
	g.Expect(errors.Is(err, ErrBadKey)).To(BeTrue(), "a certificate is not a key")
	_, err = parseCertificates([]byte(""))
	g.Expect(err).To(MatchError(ErrNoCertificate))
	_, err = parseCertificates(testPKI.valid.KeyPEM(testpki.PKCS8))
	g.Expect(errors.Is(err, ErrBadCertificate)).To(BeTrue())
	// A key that does not decode must not echo its bytes.
	_, err = parsePrivateKey([]byte("-----BEGIN RSA PRIVATE KEY-----\ncGxhbnRlZC1rZXktbWF0ZXJpYWwtMTIzNDU2Nzg=\n-----END RSA PRIVATE KEY-----\n"))
	g.Expect(errors.Is(err, ErrBadKey)).To(BeTrue())
	g.Expect(err.Error()).NotTo(ContainSubstring("cGxhbnRlZC1rZXkt"))
	g.Expect(err.Error()).NotTo(ContainSubstring("planted-key-material"))
}

func TestCertificateValidity(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(7 * 24 * time.Hour)
	for _, tc := range []struct {
		now  time.Time
		want Validity
	}{
		{nb.Add(-time.Second), NotYetValid},
		{nb, Valid},
		{nb.Add(time.Hour), Valid},
		{na, Valid},
		{na.Add(time.Nanosecond), Expired},
	} {
		NewWithT(t).Expect(CertificateValidity(nb, na, tc.now)).To(Equal(tc.want), "now %s", tc.now)
	}
}

func TestDeriveCertURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://sub.authentication.eu10.hana.ondemand.com":      "https://sub.authentication.cert.eu10.hana.ondemand.com",
		"https://sub.authentication.eu10.hana.ondemand.com/":     "https://sub.authentication.cert.eu10.hana.ondemand.com",
		"https://authentication.eu10.hana.ondemand.com":          "https://authentication.cert.eu10.hana.ondemand.com",
		"https://p.authentication.localhost:8443":                "https://p.authentication.cert.localhost:8443",
		"https://sub.authentication.cert.eu10.hana.ondemand.com": "",
		"https://uaa.example.com":                                "",
		"not a url":                                              "",
	} {
		NewWithT(t).Expect(deriveCertURL(in)).To(Equal(want), in)
	}
}
