package certwatch_test

import (
	"bytes"
	"crypto"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/testpki"
)

func TestParsePEMKeyFormats(t *testing.T) {
	ca := testpki.NewCA()
	ec := ca.Issue(testpki.WithCommonName("ec"))
	rsa := ca.Issue(testpki.WithCommonName("rsa"), testpki.WithKeyType(testpki.RSA2048))
	ed := ca.Issue(testpki.WithCommonName("ed"), testpki.WithKeyType(testpki.Ed25519))
	tests := []struct {
		name string
		leaf *testpki.Leaf
		key  []byte
	}{
		{"EC in PKCS#8", ec, ec.KeyPEM(testpki.PKCS8)},
		{"EC in SEC1", ec, ec.KeyPEM(testpki.SEC1)},
		{"RSA in PKCS#8", rsa, rsa.KeyPEM(testpki.PKCS8)},
		{"RSA in PKCS#1", rsa, rsa.KeyPEM(testpki.PKCS1)},
		{"Ed25519 in PKCS#8", ed, ed.KeyPEM(testpki.PKCS8)},
		{"literal \\n as in JSON bindings", ec, []byte(strings.ReplaceAll(string(ec.KeyPEM(testpki.SEC1)), "\n", `\n`))},
		{"EC PARAMETERS block before the key", ec, append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), ec.KeyPEM(testpki.SEC1)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p, err := certwatch.ParsePEM(tc.leaf.CertPEM(), tc.key, ca.CertPEM())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Leaf().Subject.CommonName).To(Equal(tc.leaf.Cert.Subject.CommonName))
			g.Expect(p.Serial()).To(Equal(tc.leaf.Cert.SerialNumber.String()))
			g.Expect(p.Verify(time.Now())).To(Succeed())
		})
	}
}

func TestParsePEMChainOrderAndIntermediates(t *testing.T) {
	g := NewWithT(t)
	root := testpki.NewCA()
	inter := root.NewIntermediate()
	leaf := inter.Issue(testpki.WithCommonName("leaf"))
	// The chain given CA-first still finds the leaf by its key.
	chain := append(testpki.EncodeCerts(inter.Cert), testpki.EncodeCerts(leaf.Cert)...)
	p, err := certwatch.ParsePEM(chain, leaf.KeyPEM(testpki.PKCS8), root.CertPEM())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Leaf().Subject.CommonName).To(Equal("leaf"))
	g.Expect(p.TLSCertificate().Certificate).To(HaveLen(2))
	g.Expect(p.TLSCertificate().Certificate[0]).To(Equal(leaf.Cert.Raw))
	g.Expect(p.Verify(time.Now())).To(Succeed())

	// Without the intermediate the chain does not verify against the root.
	p, err = certwatch.ParsePEM(testpki.EncodeCerts(leaf.Cert), leaf.KeyPEM(testpki.PKCS8), root.CertPEM())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Verify(time.Now())).To(MatchError(certwatch.ErrUntrusted))
}

func TestParsePEMErrors(t *testing.T) {
	ca, other := testpki.NewCA(), testpki.NewCA()
	a, b := ca.Issue(), ca.Issue()
	keyA := a.KeyPEM(testpki.PKCS8)
	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		ca      []byte
		want    error
		mention string
	}{
		{"no certificate", nil, keyA, nil, certwatch.ErrNoCertificate, ""},
		{"only a key where the certificate belongs", keyA, keyA, nil, certwatch.ErrBadCertificate, "no CERTIFICATE"},
		{"no key", a.CertPEM(), nil, nil, certwatch.ErrNoKey, ""},
		{"a certificate where the key belongs", a.CertPEM(), a.CertPEM(), nil, certwatch.ErrBadKey, "no private-key"},
		{"key of another certificate", a.CertPEM(), b.KeyPEM(testpki.PKCS8), nil, certwatch.ErrKeyMismatch, "serial"},
		{"garbage certificate block", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), keyA, nil, certwatch.ErrBadCertificate, "certificate 1"},
		{"garbage key block", a.CertPEM(), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), nil, certwatch.ErrBadKey, "PKCS#8"},
		{"PKCS#1 label on an EC key", a.CertPEM(), bytes.Replace(a.KeyPEM(testpki.SEC1), []byte("EC PRIVATE"), []byte("RSA PRIVATE"), 2), nil, certwatch.ErrBadKey, "PKCS#1"},
		{"encrypted PKCS#8", a.CertPEM(), []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), nil, certwatch.ErrBadKey, "encrypted"},
		{"CA file without a certificate", a.CertPEM(), keyA, []byte("not pem"), certwatch.ErrNoCertificate, "CA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := certwatch.ParsePEM(tc.cert, tc.key, tc.ca)
			g.Expect(err).To(MatchError(tc.want))
			g.Expect(err.Error()).To(ContainSubstring(tc.mention))
			g.Expect(err.Error()).NotTo(ContainSubstring(keyBody(keyA)), "no key material in errors")
		})
	}

	t.Run("untrusted", func(t *testing.T) {
		g := NewWithT(t)
		p, err := certwatch.ParsePEM(a.CertPEM(), keyA, other.CertPEM())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Verify(time.Now())).To(MatchError(certwatch.ErrUntrusted))
	})
	t.Run("expired and not yet valid name the dates", func(t *testing.T) {
		g := NewWithT(t)
		nb := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		na := time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)
		oldCA := testpki.NewCA(testpki.WithNotBeforeAfter(nb.AddDate(-1, 0, 0), na.AddDate(1, 0, 0)))
		leaf := oldCA.Issue(testpki.WithNotBeforeAfter(nb, na))
		p, err := certwatch.ParsePEM(leaf.CertPEM(), leaf.KeyPEM(testpki.PKCS8), oldCA.CertPEM())
		g.Expect(err).NotTo(HaveOccurred())
		err = p.Verify(na.Add(time.Hour))
		g.Expect(err).To(MatchError(certwatch.ErrExpired))
		g.Expect(err).NotTo(MatchError(certwatch.ErrNotYetValid))
		g.Expect(err.Error()).To(ContainSubstring("expired at 2026-03-08T00:00:00Z"))
		var ve *certwatch.ValidityError
		g.Expect(err).To(BeAssignableToTypeOf(ve))
		err = p.Verify(nb.Add(-time.Hour))
		g.Expect(err).To(MatchError(certwatch.ErrNotYetValid))
		g.Expect(err.Error()).To(ContainSubstring("valid from 2026-03-01T00:00:00Z"))
		g.Expect(p.Verify(nb.Add(time.Hour))).To(Succeed())
	})
}

// keyBody returns a distinctive line of a PEM key, to look for leaks.
func keyBody(keyPEM []byte) string {
	lines := strings.Split(string(keyPEM), "\n")
	return lines[1]
}

func FuzzParsePEM(f *testing.F) {
	ca := testpki.NewCA()
	leaf := ca.Issue()
	f.Add(leaf.CertPEM(), leaf.KeyPEM(testpki.PKCS8), ca.CertPEM())
	f.Add(leaf.CertPEM(), leaf.KeyPEM(testpki.SEC1), []byte(nil))
	f.Add([]byte(strings.ReplaceAll(string(leaf.CertPEM()), "\n", `\n`)), leaf.KeyPEM(testpki.SEC1), []byte("junk"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----\n"), []byte{})
	f.Fuzz(func(t *testing.T, certPEM, keyPEM, caPEM []byte) {
		p, err := certwatch.ParsePEM(certPEM, keyPEM, caPEM)
		if err != nil {
			if p != nil {
				t.Fatal("pair and error both returned")
			}
			return
		}
		c := p.TLSCertificate()
		if c.Leaf == nil || len(c.Certificate) == 0 || c.PrivateKey == nil {
			t.Fatalf("incomplete pair: %+v", c)
		}
		signer, ok := c.PrivateKey.(crypto.Signer)
		if !ok {
			t.Fatalf("key is a %T", c.PrivateKey)
		}
		pub, ok := c.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(signer.Public()) {
			t.Fatal("accepted a key that does not match the leaf")
		}
		_ = p.Verify(time.Now()) // must not panic
	})
}
