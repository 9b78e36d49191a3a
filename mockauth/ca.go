package mockauth

import (
	"crypto"
	"crypto/ecdsa"
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
	"time"
)

// authority is the mock's own small certificate authority. mockauth does not
// share code with the module's test PKI on purpose: a fake must not share
// code with what it tests.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newAuthority(cn string, now time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mockauth: CA key: %w", err)
	}
	return newAuthorityWithKey(cn, now, key)
}

// newRSAAuthority is a CA with an RSA 2048 key, as the Kyma connector's.
func newRSAAuthority(cn string, now time.Time) (*authority, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("mockauth: CA key: %w", err)
	}
	return newAuthorityWithKey(cn, now, key)
}

func newAuthorityWithKey(cn string, now time.Time, key crypto.Signer) (*authority, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"credbroker mockauth"}},
		NotBefore:             earliest(now).Add(-24 * time.Hour),
		NotAfter:              latest(now).Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("mockauth: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mockauth: CA certificate: %w", err)
	}
	return &authority{cert: cert, key: key, pem: pemCert(der)}, nil
}

// newSerial returns a random 128-bit positive serial number, unique in
// practice.
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("mockauth: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// sign issues a certificate for pub from tmpl (a random serial filled in
// unless tmpl has one).
func (a *authority) sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	if tmpl.SerialNumber == nil {
		serial, err := newSerial()
		if err != nil {
			return nil, err
		}
		tmpl.SerialNumber = serial
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		// x509's own message, unwrapped: the connector shows it as the
		// real service does ("x509: requested SignatureAlgorithm does not
		// match private key type").
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// serverCert issues a TLS server certificate for the given names.
func (a *authority) serverCert(now time.Time, dnsNames []string, ips []net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("mockauth: server key: %w", err)
	}
	cert, err := a.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: dnsNames[0], Organization: []string{"credbroker mockauth"}},
		NotBefore:   earliest(now).Add(-time.Hour),
		NotAfter:    latest(now).Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, key.Public())
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// clientCert issues a client certificate and returns it with its PEM
// encodings (certificate chain, PKCS#8 key).
func (a *authority) clientCert(subject pkix.Name, notBefore, notAfter time.Time) (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("mockauth: client key: %w", err)
	}
	cert, err := a.sign(&x509.Certificate{
		Subject:     subject,
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, key.Public())
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("mockauth: client key: %w", err)
	}
	chain := append(pemCert(cert.Raw), a.pem...)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{cert.Raw, a.cert.Raw}, PrivateKey: key, Leaf: cert}, chain, keyPEM, nil
}

// pool returns a pool holding only this CA.
func (a *authority) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.cert)
	return p
}

// earliest and latest span the injected clock and the wall clock: CA and
// server certificates must verify both on the mock's side (which checks
// client certificates with the injected clock) and on real clients (which
// check the server with the wall clock).
func earliest(now time.Time) time.Time {
	if wall := time.Now(); wall.Before(now) {
		return wall
	}
	return now
}

func latest(now time.Time) time.Time {
	if wall := time.Now(); wall.After(now) {
		return wall
	}
	return now
}
