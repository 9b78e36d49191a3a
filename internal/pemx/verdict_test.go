package pemx_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/vcap"
)

// verdict is what a parser concluded about a certificate and key, reduced to
// the cases a user sees: usable, or which part is wrong.
type verdict string

const (
	usable   verdict = "usable"
	badCert  verdict = "bad certificate"
	badKey   verdict = "bad key"
	mismatch verdict = "key does not match"
)

// bindingVerdict is how `bindings` and `token` judge the pair: through an
// x509 binding loaded by vcap.
func bindingVerdict(t *testing.T, certPEM, keyPEM []byte) verdict {
	t.Helper()
	creds := map[string]any{
		"clientid": "c", "url": "https://a.auth.example", "certurl": "https://a.authentication.cert.example",
		"uaadomain": "auth.example", "credential-type": "x509",
		"certificate": string(certPEM), "key": string(keyPEM),
	}
	raw, err := json.Marshal(map[string]any{"xsuaa": []any{map[string]any{
		"name": "b", "label": "xsuaa", "plan": "application", "credentials": creds,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := vcap.Load(context.Background(), vcap.Sources{VCAPServices: string(raw)})
	if err != nil {
		t.Fatal(err)
	}
	b := set.Bindings[0]
	err = b.Err()
	switch {
	case err == nil && b.Auth != nil && b.Auth.Auth == vcap.AuthMTLS:
		return usable
	case errors.Is(err, vcap.ErrKeyMismatch):
		return mismatch
	case errors.Is(err, vcap.ErrBadKey), errors.Is(err, vcap.ErrNoKey):
		return badKey
	case errors.Is(err, vcap.ErrBadCertificate), errors.Is(err, vcap.ErrNoCertificate):
		return badCert
	}
	t.Fatalf("unexpected binding outcome: %v", err)
	return ""
}

// watchVerdict is how `run` and `validate` judge the same pair in a
// certificate directory (certwatch).
func watchVerdict(t *testing.T, certPEM, keyPEM []byte) verdict {
	t.Helper()
	_, err := certwatch.ParsePEM(certPEM, keyPEM, nil)
	switch {
	case err == nil:
		return usable
	case errors.Is(err, certwatch.ErrKeyMismatch):
		return mismatch
	case errors.Is(err, certwatch.ErrBadKey), errors.Is(err, certwatch.ErrNoKey):
		return badKey
	case errors.Is(err, certwatch.ErrBadCertificate), errors.Is(err, certwatch.ErrNoCertificate):
		return badCert
	}
	t.Fatalf("unexpected certwatch outcome: %v", err)
	return ""
}

// withHeaders re-encodes the first block of p with the given PEM headers.
func withHeaders(p []byte, h map[string]string) []byte {
	b, _ := pem.Decode(p)
	b.Headers = h
	return pem.EncodeToMemory(b)
}

// TestSameVerdictEverywhere feeds the inputs the two former parsers (vcap's
// and certwatch's) judged differently to both consumers: the verdicts must
// now agree, and be the one stated.
func TestSameVerdictEverywhere(t *testing.T) {
	root := testpki.NewCA()
	inter := root.NewIntermediate()
	leaf := inter.Issue(testpki.WithCommonName("leaf"), testpki.ClientAuth())
	rsaLeaf := root.Issue(testpki.WithKeyType(testpki.RSA2048), testpki.ClientAuth())
	other := root.Issue()
	cert, key := leaf.CertPEM(), leaf.KeyPEM(testpki.PKCS8)
	rsaKey := rsaLeaf.KeyPEM(testpki.PKCS1)
	escaped := func(p []byte) []byte { return []byte(strings.ReplaceAll(string(p), "\n", `\r\n`)) }
	oneLine := func(p []byte) []byte { return []byte(strings.ReplaceAll(strings.TrimSpace(string(p)), "\n", " ")) }

	tests := []struct {
		name      string
		cert, key []byte
		want      verdict
	}{
		{"plain PEM", cert, key, usable},
		// vcap wanted the leaf first; certwatch looked for the key's certificate.
		{"chain given intermediate first", append(testpki.EncodeCerts(inter.Cert), cert...), key, usable},
		// vcap refused by Proc-Type, certwatch by DEK-Info: a key with only
		// one of them was accepted by the other.
		{"PKCS#1 key with only Proc-Type", rsaLeaf.CertPEM(), withHeaders(rsaKey, map[string]string{"Proc-Type": "4,ENCRYPTED"}), badKey},
		{"PKCS#1 key with only DEK-Info", rsaLeaf.CertPEM(), withHeaders(rsaKey, map[string]string{"DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}), badKey},
		{"SEC1 key with only DEK-Info", cert, withHeaders(leaf.KeyPEM(testpki.SEC1), map[string]string{"DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}), badKey},
		// certwatch repaired only a literal \n.
		{"literal \\r\\n line breaks", escaped(cert), escaped(key), usable},
		{"PEM flattened onto one line", oneLine(cert), oneLine(key), usable},
		{"quoted PEM", []byte(`"` + string(cert) + `"`), []byte(`"` + string(key) + `"`), usable},
		// certwatch said "no certificate"/"no key" for the wrong block type.
		{"a key where the certificate belongs", key, key, badCert},
		{"a certificate where the key belongs", cert, cert, badKey},
		{"key of another certificate", cert, other.KeyPEM(testpki.PKCS8), mismatch},
		{"encrypted PKCS#8", cert, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), badKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(bindingVerdict(t, tc.cert, tc.key)).To(Equal(tc.want), "bindings/token")
			g.Expect(watchVerdict(t, tc.cert, tc.key)).To(Equal(tc.want), "run/validate")
		})
	}
}
