// Package pemx is the one home of PEM handling in this module: it repairs
// PEM as bindings carry it (Normalize), parses certificates and private keys
// with one set of rules (Chain, PrivateKey), decides which certificate a key
// belongs to (LeafFirst) and encodes both back (EncodeCertificates,
// EncodeKey). vcap (the `bindings` and `token` commands), certwatch (`run`,
// `validate`), connector and the inbound guard all go through it, so one
// binding or one certificate directory is judged the same way by every
// command.
//
// Errors wrap one of the sentinels below (as a *Error whose Detail names a
// block's kind or position) and never quote the input.
package pemx

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
)

var armour = regexp.MustCompile(`(-----(?:BEGIN|END) [A-Z0-9 ]+-----)`)

// Normalize turns PEM as bindings and mounted secrets carry it into standard
// PEM: surrounding quotes and whitespace go; literal "\n" and "\r\n" escape
// sequences and Windows line endings become newlines; PEM flattened onto one
// line (spaces for newlines) gets its armour lines back on lines of their
// own. Standard PEM comes out unchanged apart from blank lines and
// indentation. Every parser of this package normalises its input first.
func Normalize(in []byte) []byte {
	s := strings.TrimSpace(string(in))
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	s = strings.ReplaceAll(s, `\r\n`, "\n")
	s = strings.ReplaceAll(s, `\n`, "\n")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	// pem.Decode ignores spaces inside the body, not around the armour.
	s = armour.ReplaceAllString(s, "\n$1\n")
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// Blocks returns the DER bytes of every PEM block of type typ in data, in
// order; blocks of other types are skipped. data is taken as it is (not
// normalised).
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

// Certificates parses every CERTIFICATE block of the normalised data, in
// order. It returns no error and no certificate when there is none; the
// error for one that does not parse (ErrBadCertificate) names its position
// among the certificates (1-based).
func Certificates(data []byte) ([]*x509.Certificate, error) {
	ders := Blocks(Normalize(data), "CERTIFICATE")
	out := make([]*x509.Certificate, 0, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			// The parser's message describes the DER, not the input's secrets,
			// but a certificate is public anyway; keep it for diagnosis.
			return nil, fail(ErrBadCertificate, "certificate %d: %v", i+1, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Chain is Certificates for input that must hold at least one certificate:
// ErrNoCertificate when data has no PEM at all, ErrBadCertificate when it
// has PEM but no CERTIFICATE block decodes.
func Chain(data []byte) ([]*x509.Certificate, error) {
	certs, err := Certificates(data)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		if strings.Contains(string(data), "-----BEGIN") {
			return nil, fail(ErrBadCertificate, "no CERTIFICATE PEM block decodes")
		}
		return nil, &Error{Kind: ErrNoCertificate}
	}
	return certs, nil
}

// PrivateKey parses the first private-key block of the normalised data:
// "PRIVATE KEY" (PKCS#8: RSA, ECDSA, Ed25519), "RSA PRIVATE KEY" (PKCS#1)
// or "EC PRIVATE KEY" (SEC1); blocks of other types (certificates, EC
// PARAMETERS) are skipped. Encrypted keys are refused, whether the block
// says so with a Proc-Type or a DEK-Info header or is an "ENCRYPTED PRIVATE
// KEY". RSA keys must pass rsa.PrivateKey.Validate. ErrNoKey when data has no
// PEM at all; ErrBadKey otherwise.
func PrivateKey(data []byte) (crypto.Signer, error) {
	rest := Normalize(data)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		var (
			k   any
			err error
		)
		switch blk.Type {
		case "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
			if encrypted(blk) {
				return nil, fail(ErrBadKey, "encrypted PEM keys are not supported")
			}
		case "ENCRYPTED PRIVATE KEY":
			return nil, fail(ErrBadKey, "encrypted PKCS#8 keys are not supported")
		default:
			continue
		}
		switch blk.Type {
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		default:
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		}
		if err != nil {
			// The parser's own message is dropped: nothing about a key
			// belongs in an error.
			return nil, fail(ErrBadKey, "the %s block does not decode", formatName(blk.Type))
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			if k.Validate() != nil {
				return nil, fail(ErrBadKey, "inconsistent RSA key")
			}
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fail(ErrBadKey, "unsupported key type %T", k)
		}
	}
	if strings.Contains(string(data), "-----BEGIN") {
		return nil, fail(ErrBadKey, "no private-key PEM block decodes")
	}
	return nil, &Error{Kind: ErrNoKey}
}

// encrypted reports whether a legacy PEM block carries the headers of RFC
// 1421 encryption; either header is enough to refuse it.
func encrypted(b *pem.Block) bool {
	_, procType := b.Headers["Proc-Type"]
	_, dekInfo := b.Headers["DEK-Info"]
	return procType || dekInfo
}

func formatName(blockType string) string {
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
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// LeafFirst finds the certificate of chain that key belongs to and returns
// the chain with it first and the others after it in their order; false
// when key belongs to none. This is the one rule for "the key matches the
// certificate": a chain given intermediate-first is accepted everywhere, and
// used leaf-first.
func LeafFirst(chain []*x509.Certificate, key crypto.Signer) ([]*x509.Certificate, bool) {
	for i, c := range chain {
		if KeyMatches(c, key) {
			out := make([]*x509.Certificate, 0, len(chain))
			out = append(out, c)
			out = append(out, chain[:i]...)
			return append(out, chain[i+1:]...), true
		}
	}
	return nil, false
}

// EncodeCertificates returns certs as PEM, in order.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey returns key as PKCS#8 PEM ("PRIVATE KEY"). It accepts RSA,
// ECDSA and Ed25519 keys; the error never includes key material.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	switch key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
