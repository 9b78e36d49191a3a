package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync"
	"time"
)

// KeyType selects the private key algorithm.
type KeyType int

// Key types. ECDSA P-256 is the default: it is fast to generate.
const (
	ECDSAP256 KeyType = iota
	RSA2048
	RSA4096
	Ed25519
	ECDSAP384
)

// KeyFormat selects how a private key is encoded in PEM.
type KeyFormat int

// Key encodings.
const (
	PKCS8 KeyFormat = iota // "PRIVATE KEY", any algorithm
	PKCS1                  // "RSA PRIVATE KEY", RSA only
	SEC1                   // "EC PRIVATE KEY", ECDSA only
)

// Option configures a certificate.
type Option func(*spec)

type spec struct {
	subject   pkix.Name
	dnsNames  []string
	ips       []net.IP
	uris      []*url.URL
	notBefore time.Time
	notAfter  time.Time
	keyType   KeyType
	key       crypto.Signer
	usages    []x509.ExtKeyUsage
	serial    *big.Int
}

// WithCommonName sets the subject's CN.
func WithCommonName(cn string) Option { return func(s *spec) { s.subject.CommonName = cn } }

// WithSubject sets the whole subject.
func WithSubject(n pkix.Name) Option { return func(s *spec) { s.subject = n } }

// WithDNSNames adds DNS subject alternative names.
func WithDNSNames(names ...string) Option {
	return func(s *spec) { s.dnsNames = append(s.dnsNames, names...) }
}

// WithIPs adds IP subject alternative names.
func WithIPs(ips ...string) Option {
	return func(s *spec) {
		for _, ip := range ips {
			s.ips = append(s.ips, net.ParseIP(ip))
		}
	}
}

// WithURIs adds URI subject alternative names.
func WithURIs(uris ...string) Option {
	return func(s *spec) {
		for _, u := range uris {
			p, err := url.Parse(u)
			if err != nil {
				panic(err)
			}
			s.uris = append(s.uris, p)
		}
	}
}

// WithValidity makes the certificate valid from one minute ago for d.
func WithValidity(d time.Duration) Option {
	return func(s *spec) {
		now := time.Now()
		s.notBefore, s.notAfter = now.Add(-time.Minute), now.Add(d)
	}
}

// WithNotBeforeAfter sets the validity window exactly (expired or
// not-yet-valid certificates are made this way).
func WithNotBeforeAfter(notBefore, notAfter time.Time) Option {
	return func(s *spec) { s.notBefore, s.notAfter = notBefore, notAfter }
}

// WithKeyType chooses the key algorithm.
func WithKeyType(k KeyType) Option { return func(s *spec) { s.keyType = k } }

// WithKey uses an existing key (to re-issue for the same key).
func WithKey(k crypto.Signer) Option { return func(s *spec) { s.key = k } }

// WithSerial sets the serial number.
func WithSerial(n int64) Option { return func(s *spec) { s.serial = big.NewInt(n) } }

// ServerAuth restricts the leaf to TLS server use; ClientAuth to client use.
// A leaf without either is valid for both.
func ServerAuth() Option {
	return func(s *spec) { s.usages = append(s.usages, x509.ExtKeyUsageServerAuth) }
}

// ClientAuth restricts the leaf to TLS client use (see ServerAuth).
func ClientAuth() Option {
	return func(s *spec) { s.usages = append(s.usages, x509.ExtKeyUsageClientAuth) }
}

// NewKey generates a private key of the given type.
func NewKey(k KeyType) crypto.Signer {
	var (
		key crypto.Signer
		err error
	)
	switch k {
	case RSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case RSA4096:
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	case Ed25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case ECDSAP384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		panic(err)
	}
	return key
}

var (
	serialMu sync.Mutex
	serialN  int64 = 1000
)

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serialN++
	return big.NewInt(serialN)
}

func build(opts []Option, isCA bool) *spec {
	now := time.Now()
	s := &spec{notBefore: now.Add(-time.Minute), notAfter: now.Add(24 * time.Hour)}
	if isCA {
		s.notAfter = now.Add(10 * 365 * 24 * time.Hour)
		s.subject = pkix.Name{CommonName: "testpki CA", Organization: []string{"credbroker tests"}}
	}
	for _, o := range opts {
		o(s)
	}
	if s.key == nil {
		s.key = NewKey(s.keyType)
	}
	if s.serial == nil {
		s.serial = nextSerial()
	}
	return s
}

// CA is a certificate authority for tests.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain holds the issuing CAs above this one (empty for a root).
	Chain []*x509.Certificate
}

// caTemplate is the certificate of a CA made from s.
func (s *spec) caTemplate() *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          s.serial,
		Subject:               s.subject,
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// NewCA makes a self-signed root CA.
func NewCA(opts ...Option) *CA {
	s := build(opts, true)
	tmpl := s.caTemplate()
	cert := sign(tmpl, tmpl, s.key.Public(), s.key)
	return &CA{Cert: cert, Key: s.key}
}

// NewIntermediate makes a CA signed by ca.
func (ca *CA) NewIntermediate(opts ...Option) *CA {
	s := build(opts, true)
	if s.subject.CommonName == "testpki CA" {
		s.subject.CommonName = "testpki intermediate"
	}
	tmpl := s.caTemplate()
	cert := sign(tmpl, ca.Cert, s.key.Public(), ca.Key)
	return &CA{Cert: cert, Key: s.key, Chain: append([]*x509.Certificate{ca.Cert}, ca.Chain...)}
}

// Leaf is an end-entity certificate with its key and the chain up to (but
// excluding) the root.
type Leaf struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // intermediates, closest first; not the root
}

// Issue makes a leaf certificate signed by ca. Without ServerAuth or
// ClientAuth it is valid for both. Without a subject its CN is "test".
func (ca *CA) Issue(opts ...Option) *Leaf {
	s := build(opts, false)
	if s.subject.CommonName == "" && len(s.subject.Organization) == 0 {
		s.subject.CommonName = "test"
	}
	usages := s.usages
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: s.serial,
		Subject:      s.subject,
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usages,
		DNSNames:     s.dnsNames,
		IPAddresses:  s.ips,
		URIs:         s.uris,
	}
	if _, ok := s.key.(*rsa.PrivateKey); !ok {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	cert := sign(tmpl, ca.Cert, s.key.Public(), ca.Key)
	var chain []*x509.Certificate
	if len(ca.Chain) > 0 { // ca is an intermediate: include it and those above, but not the root
		chain = append(chain, ca.Cert)
		chain = append(chain, ca.Chain[:len(ca.Chain)-1]...)
	}
	return &Leaf{Cert: cert, Key: s.key, Chain: chain}
}

// SignCSR issues a certificate for a CSR's public key and subject.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, validity time.Duration) *x509.Certificate {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      csr.Subject,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return sign(tmpl, ca.Cert, csr.PublicKey, ca.Key)
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		panic(fmt.Sprintf("testpki: sign %q: %v", tmpl.Subject.CommonName, err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return cert
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return EncodeCerts(ca.Cert) }

// Pool returns a pool holding the root of ca's chain.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	if len(ca.Chain) > 0 {
		p.AddCert(ca.Chain[len(ca.Chain)-1])
	} else {
		p.AddCert(ca.Cert)
	}
	return p
}

// CertPEM returns the leaf followed by its chain, in PEM.
func (l *Leaf) CertPEM() []byte {
	return EncodeCerts(append([]*x509.Certificate{l.Cert}, l.Chain...)...)
}

// KeyPEM returns the private key in the chosen encoding. It panics when the
// encoding does not fit the key type (PKCS1 needs RSA, SEC1 needs ECDSA).
func (l *Leaf) KeyPEM(f KeyFormat) []byte { return EncodeKey(l.Key, f) }

// TLSCertificate returns the leaf, chain and key for a tls.Config.
func (l *Leaf) TLSCertificate() tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
	for _, ch := range l.Chain {
		c.Certificate = append(c.Certificate, ch.Raw)
	}
	return c
}

// EncodeCerts PEM-encodes certificates in order.
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey PEM-encodes a private key.
func EncodeKey(key crypto.Signer, f KeyFormat) []byte {
	switch f {
	case PKCS1:
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			panic("testpki: PKCS1 needs an RSA key")
		}
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case SEC1:
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			panic("testpki: SEC1 needs an ECDSA key")
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			panic(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	default:
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			panic(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
}

// ServerTLSConfig returns a server config presenting leaf. When clientCAs is
// not nil, client certificates are required and verified against it.
func ServerTLSConfig(leaf *Leaf, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		c.ClientCAs = clientCAs
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// ClientTLSConfig returns a client config trusting roots and, when leaf is
// not nil, presenting it.
func ClientTLSConfig(roots *x509.CertPool, leaf *Leaf) *tls.Config {
	c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if leaf != nil {
		c.Certificates = []tls.Certificate{leaf.TLSCertificate()}
	}
	return c
}
