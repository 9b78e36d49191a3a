package vcap

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"

	"github.com/credbroker/credbroker/internal/pemx"
)

var armour = regexp.MustCompile(`(-----(?:BEGIN|END) [A-Z0-9 ]+-----)`)

// NormalizePEM turns PEM as bindings carry it into standard PEM: literal
// "\n" (and "\r\n") escape sequences become newlines, surrounding quotes and
// whitespace go, Windows line endings become "\n".
func NormalizePEM(in []byte) []byte {
	s := strings.TrimSpace(string(in))
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	s = strings.ReplaceAll(s, `\r\n`, "\n")
	s = strings.ReplaceAll(s, `\n`, "\n")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	// PEM flattened onto one line (spaces for newlines): put the armour
	// lines back on lines of their own; pem.Decode ignores spaces in the body.
	s = armour.ReplaceAllString(s, "\n$1\n")
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// ParseCertificates parses every CERTIFICATE block of a (normalised) PEM
// input, leaf first as given. Other blocks are ignored. It fails with
// ErrNoCertificate when there is none and ErrBadCertificate when one does not
// parse. The error never quotes the input.
func ParseCertificates(in []byte) ([]*x509.Certificate, error) {
	out, err := pemx.Certificates(NormalizePEM(in))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	if len(out) == 0 {
		if bytes.Contains(in, []byte("-----BEGIN")) {
			return nil, fmt.Errorf("%w: no CERTIFICATE PEM block decodes", ErrBadCertificate)
		}
		return nil, ErrNoCertificate
	}
	return out, nil
}

// ParsePrivateKey parses the first private key block of a (normalised) PEM
// input: "RSA PRIVATE KEY" (PKCS#1), "PRIVATE KEY" (PKCS#8: RSA, ECDSA,
// Ed25519) or "EC PRIVATE KEY" (SEC1). Encrypted keys are refused. The
// error never quotes the input.
func ParsePrivateKey(in []byte) (crypto.Signer, error) {
	rest := NormalizePEM(in)
	sawBlock := false
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		sawBlock = true
		var (
			k   any
			err error
		)
		switch blk.Type {
		case "RSA PRIVATE KEY":
			if blk.Headers["Proc-Type"] != "" {
				return nil, fmt.Errorf("%w: encrypted PEM keys are not supported", ErrBadKey)
			}
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			if blk.Headers["Proc-Type"] != "" {
				return nil, fmt.Errorf("%w: encrypted PEM keys are not supported", ErrBadKey)
			}
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: encrypted PKCS#8 keys are not supported", ErrBadKey)
		default:
			continue
		}
		if err != nil {
			// The parser's own message is dropped: it describes the DER
			// structure, and nothing about the key belongs in an error.
			return nil, fmt.Errorf("%w: the %s block does not decode", ErrBadKey, keyFormatName(blk.Type))
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: unsupported key type %T", ErrBadKey, k)
		}
		return s, nil
	}
	if sawBlock || bytes.Contains(in, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: no private-key PEM block decodes", ErrBadKey)
	}
	return nil, ErrNoKey
}

func keyFormatName(blockType string) string {
	switch blockType {
	case "RSA PRIVATE KEY":
		return "PKCS#1 RSA"
	case "EC PRIVATE KEY":
		return "SEC1 EC"
	}
	return "PKCS#8"
}

// KeyMatches reports whether key is the private half of cert's public key.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	if cert == nil || key == nil {
		return false
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}

func encodePKCS8(k crypto.Signer) ([]byte, error) {
	switch k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCertificates returns the chain as PEM.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}
