package certwatch

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"time"
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
	certPEM, keyPEM, caPEM = unescape(certPEM), unescape(keyPEM), unescape(caPEM)
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	leaf := -1
	for i, c := range certs {
		if publicKeyMatches(c.PublicKey, key.Public()) {
			leaf = i
			break
		}
	}
	if leaf < 0 {
		return nil, fmt.Errorf("%w (leaf serial %s, subject %q)", ErrKeyMismatch, serialOf(certs[0]), certs[0].Subject.String())
	}
	chain := append([]*x509.Certificate{certs[leaf]}, certs[:leaf]...)
	chain = append(chain, certs[leaf+1:]...)
	p := &Pair{chain: chain, certPEM: certPEM, keyPEM: keyPEM, caPEM: caPEM}
	p.cert = tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		p.cert.Certificate = append(p.cert.Certificate, c.Raw)
	}
	if len(bytes.TrimSpace(caPEM)) > 0 {
		cas, err := parseCerts(caPEM)
		if err != nil {
			return nil, fmt.Errorf("CA: %w", err)
		}
		if len(cas) == 0 {
			return nil, fmt.Errorf("CA: %w", ErrNoCertificate)
		}
		p.caCerts = cas
		p.pool = x509.NewCertPool()
		for _, c := range cas {
			p.pool.AddCert(c)
		}
	}
	return p, nil
}

// unescape turns PEM whose newlines are the two characters `\n` (a common
// way bindings carry it in JSON or environment variables) into real PEM.
func unescape(b []byte) []byte {
	if bytes.Contains(b, []byte(`\n`)) && bytes.Contains(b, []byte("-----BEGIN")) {
		return bytes.ReplaceAll(b, []byte(`\n`), []byte("\n"))
	}
	return b
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PEM block %d: %v", ErrBadCertificate, n, err)
		}
		out = append(out, c)
	}
}

// parseKey returns the first private key in b. Its errors never include the
// parser's own message, which could quote key bytes.
func parseKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, ErrNoKey
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			if _, enc := block.Headers["DEK-Info"]; enc {
				return nil, fmt.Errorf("%w: encrypted PEM keys are not supported", ErrBadKey)
			}
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			if _, enc := block.Headers["DEK-Info"]; enc {
				return nil, fmt.Errorf("%w: encrypted PEM keys are not supported", ErrBadKey)
			}
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: encrypted PKCS#8 keys are not supported", ErrBadKey)
		default:
			continue // EC PARAMETERS, certificates in the same file, …
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %q block is not valid %s", ErrBadKey, block.Type, encodingName(block.Type))
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			if err := k.Validate(); err != nil {
				return nil, fmt.Errorf("%w: inconsistent RSA key", ErrBadKey)
			}
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("%w: unsupported key type %T", ErrBadKey, key)
		}
	}
}

func encodingName(pemType string) string {
	switch pemType {
	case "RSA PRIVATE KEY":
		return "PKCS#1"
	case "EC PRIVATE KEY":
		return "SEC1"
	default:
		return "PKCS#8"
	}
}

func publicKeyMatches(certKey, key crypto.PublicKey) bool {
	k, ok := certKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(key)
}

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
