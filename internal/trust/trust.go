// Package trust builds the certificate pool that verifies the servers
// credbroker calls (token services, connectors, upstreams, key sets). It is
// the one home of that rule for every command: `pair`, `token`, `run` and
// the proxy all trust the system roots plus the CA file they are given.
//
// A CA bundle is judged by Bundle, with one set of rules for every reader
// (this package's Roots and the inbound guard's mtls ca_file): the file is
// parsed by internal/pemx (the same PEM repair and certificate parser as
// everywhere else), every CERTIFICATE block must parse, every certificate
// must be a CA, and there must be at least one. Errors name the file and the
// block, never the content.
//
// To trust the CA file alone, point the standard SSL_CERT_FILE variable at
// it (and SSL_CERT_DIR at an empty directory): Go reads the system roots
// from there on Linux, and the file is then both.
package trust

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/pemx"
)

// The errors of a CA bundle Bundle refuses; the error wraps one of them.
var (
	// ErrNoCertificate: the bundle holds no PEM CERTIFICATE block.
	ErrNoCertificate = errors.New("holds no PEM certificate")
	// ErrBadCertificate: a CERTIFICATE block does not parse.
	ErrBadCertificate = errors.New("holds a certificate that does not parse")
	// ErrNotCA: a certificate of the bundle is not a CA.
	ErrNotCA = errors.New("holds a certificate that is not a CA")
)

// Roots returns the system roots plus every certificate of caFile, read
// once with inputfile.Read and judged by Bundle. With caFile "" it returns
// nil, which crypto/tls reads as the system roots. Errors name the file,
// never its content.
func Roots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pemData, err := inputfile.Read(caFile)
	if err != nil {
		return nil, err
	}
	return RootsFromPEM(caFile, pemData)
}

// RootsFromPEM is Roots for a bundle already read; name is for errors
// ("" leaves it out).
// The system pool is a copy: adding to it changes no other pool.
func RootsFromPEM(name string, pemData []byte) (*x509.CertPool, error) {
	cas, err := Bundle(name, pemData)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, c := range cas {
		pool.AddCert(c)
	}
	return pool, nil
}

// Bundle parses a CA bundle: every CERTIFICATE block, in order, each of
// which must parse and be a CA (basic constraints CA:TRUE); at least one.
// Blocks of other types are skipped. name (the file, "" to leave it out)
// starts every error, and a certificate's error names its position
// (1-based) and subject.
func Bundle(name string, pemData []byte) ([]*x509.Certificate, error) {
	prefix := ""
	if name != "" {
		prefix = name + " "
	}
	certs, err := pemx.Certificates(pemData)
	if err != nil {
		var pe *pemx.Error
		detail := err.Error()
		if errors.As(err, &pe) {
			detail = pe.Detail
		}
		return nil, fmt.Errorf("%s%w: %s", prefix, ErrBadCertificate, detail)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s%w", prefix, ErrNoCertificate)
	}
	for i, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("%s%w: certificate %d (%s)", prefix, ErrNotCA, i+1, c.Subject)
		}
	}
	return certs, nil
}
