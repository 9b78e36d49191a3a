// Package pemx reads the blocks of PEM data that the packages of this module
// need: every block of one type, and every certificate parsed. Errors name a
// block's position, never its content.
package pemx

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// Blocks returns the DER bytes of every PEM block of type typ in data, in
// order; blocks of other types are skipped.
func Blocks(data []byte, typ string) [][]byte {
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type == typ {
			out = append(out, b.Bytes)
		}
	}
}

// Certificates parses every CERTIFICATE block of data, in order. It returns
// no error and no certificate when there is none; the error for one that
// does not parse names its position among the certificates (1-based).
func Certificates(data []byte) ([]*x509.Certificate, error) {
	ders := Blocks(data, "CERTIFICATE")
	out := make([]*x509.Certificate, 0, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i+1, err)
		}
		out = append(out, c)
	}
	return out, nil
}
