package certwatch

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/credbroker/credbroker/internal/pemx"
)

// Pair is a parsed certificate chain with the private key that matches its
// leaf, and the CA certificates it is checked against. A Pair is immutable
// and safe for concurrent use; ParsePEM is the only way to make one.
type Pair struct {
	cert    tls.Certificate // Leaf set, chain leaf first
	chain   []*x509.Certificate
	caCerts []*x509.Certificate
	pool    *x509.CertPool
	certPEM []byte
	keyPEM  []byte
	caPEM   []byte
}

// ParsePEM parses a certificate chain, a private key and (optionally, may be
// nil) CA certificates, and checks that the key belongs to one certificate
// of the chain, which becomes the leaf (the others are sent as the chain, in
// their order). It accepts PKCS#8 ("PRIVATE KEY": RSA, ECDSA, Ed25519),
// PKCS#1 ("RSA PRIVATE KEY") and SEC1 ("EC PRIVATE KEY") keys, and PEM
// whose line breaks arrived as a literal backslash-n (as in JSON bindings).
// It does not look at the time: Verify does.
func ParsePEM(certPEM, keyPEM, caPEM []byte) (*Pair, error) {
	certPEM, keyPEM, caPEM = normalize(certPEM), normalize(keyPEM), normalize(caPEM)
	certs, err := pemx.Chain(certPEM)
	if err != nil {
		if errors.Is(err, pemx.ErrNoCertificate) {
			return nil, ErrNoCertificate
		}
		return nil, fmt.Errorf("certificate: %w", pemError(err))
	}
	key, err := pemx.PrivateKey(keyPEM)
	if err != nil {
		return nil, pemError(err)
	}
	chain, ok := pemx.LeafFirst(certs, key)
	if !ok {
		return nil, fmt.Errorf("%w (leaf serial %s, subject %q)", ErrKeyMismatch, serialOf(certs[0]), certs[0].Subject.String())
	}
	p := &Pair{chain: chain, certPEM: certPEM, keyPEM: keyPEM, caPEM: caPEM}
	p.cert = tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		p.cert.Certificate = append(p.cert.Certificate, c.Raw)
	}
	if len(bytes.TrimSpace(caPEM)) > 0 {
		cas, err := pemx.Chain(caPEM)
		if err != nil {
			return nil, fmt.Errorf("CA: %w", pemError(err))
		}
		p.caCerts = cas
		p.pool = x509.NewCertPool()
		for _, c := range cas {
			p.pool.AddCert(c)
		}
	}
	return p, nil
}

// normalize repairs PEM as bindings carry it (pemx.Normalize) and keeps
// empty input empty (no CA is not a CA of one newline).
func normalize(b []byte) []byte {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return pemx.Normalize(b)
}

// pemError maps a pemx error onto this package's sentinel of the same meaning.
var pemError = pemx.Sentinels{NoCertificate: ErrNoCertificate, BadCertificate: ErrBadCertificate, NoKey: ErrNoKey, BadKey: ErrBadKey}.Wrap

func serialOf(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.String()
}

// Leaf returns the certificate the key belongs to. Do not modify it.
func (p *Pair) Leaf() *x509.Certificate { return p.chain[0] }

// Chain returns the leaf followed by the other certificates given with it.
func (p *Pair) Chain() []*x509.Certificate { return append([]*x509.Certificate(nil), p.chain...) }

// Serial returns the leaf's serial number in decimal (as connection.json and the connector's revoke API write it).
func (p *Pair) Serial() string { return serialOf(p.chain[0]) }

// SHA256 returns the SHA-256 fingerprint of the leaf (lower-case hex of its
// DER): what identifies a certificate. Serials do not — the Kyma connector
// issues every certificate with serial 2 — and the connector revokes by this.
func (p *Pair) SHA256() string {
	sum := sha256.Sum256(p.chain[0].Raw)
	return hex.EncodeToString(sum[:])
}

// TLSCertificate returns the chain and key for a tls.Config (Leaf is set).
func (p *Pair) TLSCertificate() tls.Certificate { return p.cert }

// CAPool returns a pool of the CA certificates, or nil when none were given.
func (p *Pair) CAPool() *x509.CertPool { return p.pool }

// CACertificates returns the CA certificates (nil when none were given).
func (p *Pair) CACertificates() []*x509.Certificate {
	return append([]*x509.Certificate(nil), p.caCerts...)
}

// Verify checks the leaf's validity window at now (a *ValidityError) and,
// when CA certificates were given, that the chain verifies against them
// (ErrUntrusted). Any extended key usage is accepted: the peer checks that.
func (p *Pair) Verify(now time.Time) error {
	leaf := p.chain[0]
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return &ValidityError{Serial: p.Serial(), SHA256: p.SHA256(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Now: now}
	}
	if p.pool == nil {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range p.chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         p.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: serial %s, subject %q: %v", ErrUntrusted, p.Serial(), leaf.Subject.String(), err)
	}
	return nil
}

// same reports whether q holds the same bytes as p.
func (p *Pair) same(q *Pair) bool {
	return p != nil && q != nil && bytes.Equal(p.certPEM, q.certPEM) &&
		bytes.Equal(p.keyPEM, q.keyPEM) && bytes.Equal(p.caPEM, q.caPEM)
}
