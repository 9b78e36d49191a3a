package vcap

import (
	"crypto"
	"crypto/x509"

	"github.com/credbroker/credbroker/internal/pemx"
)

// PEM parsing lives in internal/pemx (one set of rules for every command);
// these map its errors onto vcap's sentinels.

// parseCertificates parses every CERTIFICATE block of a binding's PEM
// (repaired by pemx.Normalize), leaf first as given. ErrNoCertificate when
// there is none, ErrBadCertificate when one does not parse.
func parseCertificates(in []byte) ([]*x509.Certificate, error) {
	certs, err := pemx.Chain(in)
	if err != nil {
		return nil, pemError(err)
	}
	return certs, nil
}

// parsePrivateKey parses the first private key of a binding's PEM with
// pemx.PrivateKey's rules. ErrNoKey when there is none, ErrBadKey otherwise.
func parsePrivateKey(in []byte) (crypto.Signer, error) {
	k, err := pemx.PrivateKey(in)
	if err != nil {
		return nil, pemError(err)
	}
	return k, nil
}

// pemError maps a pemx error onto this package's sentinel of the same meaning.
var pemError = pemx.Sentinels{NoCertificate: ErrNoCertificate, BadCertificate: ErrBadCertificate, NoKey: ErrNoKey, BadKey: ErrBadKey}.Wrap
