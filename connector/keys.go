package connector

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/credbroker/credbroker/internal/pemx"
)

// KeyType is the algorithm of a new private key.
type KeyType string

// Key types.
const (
	RSA2048   KeyType = "rsa2048"
	RSA4096   KeyType = "rsa4096"
	ECDSAP256 KeyType = "ecdsa-p256"
)

// ParseKeyType accepts "rsa2048", "rsa4096" and "ecdsa-p256" (case and the
// dash are not significant; "rsa" means rsa2048, "ecdsa" and "p256" mean
// ecdsa-p256).
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "") {
	case "rsa2048", "rsa":
		return RSA2048, nil
	case "rsa4096":
		return RSA4096, nil
	case "ecdsap256", "ecdsa", "p256", "ec":
		return ECDSAP256, nil
	}
	return "", fmt.Errorf("%w: key type %q: want rsa2048, rsa4096 or ecdsa-p256", ErrInvalidInput, s)
}

// newKey generates a private key.
func newKey(k KeyType) (crypto.Signer, error) {
	switch k {
	case RSA2048, "":
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("%w: key type %q", ErrInvalidInput, k)
}

// keyTypeOf returns the KeyType of an existing key, and false for others.
func keyTypeOf(k crypto.PrivateKey) (KeyType, bool) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() > 2048 {
			return RSA4096, true
		}
		return RSA2048, true
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256, true
		}
	}
	return "", false
}

// newCSR returns a PEM certificate signing request for key whose subject is
// exactly subject, RDNs in its order.
func newCSR(subject Subject, key crypto.Signer) ([]byte, error) {
	raw, err := subject.DER()
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: raw}, key)
	if err != nil {
		return nil, fmt.Errorf("connector: creating the CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// parseCerts decodes every CERTIFICATE block of PEM data; there must be one.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	return pemx.Chain(data)
}
