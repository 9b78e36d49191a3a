// Package trust builds the certificate pool that verifies the servers
// credbroker calls (token services, connectors, upstreams, key sets). It is
// the one home of that rule for every command: `pair`, `token`, `run` and
// the proxy all trust the system roots plus the CA file they are given.
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
)

// ErrNoCertificate is the error of a CA file that holds no PEM certificate.
var ErrNoCertificate = errors.New("holds no PEM certificate")

// Roots returns the system roots plus every certificate of caFile, read
// once with inputfile.Read. With caFile "" it returns nil, which crypto/tls
// reads as the system roots. Errors name the file, never its content.
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
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemData) {
		if name == "" {
			return nil, ErrNoCertificate
		}
		return nil, fmt.Errorf("%s %w", name, ErrNoCertificate)
	}
	return pool, nil
}
