package vcap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/internal/pemx"
	"github.com/credbroker/credbroker/internal/testpki"
)

// fuzzSecret is planted in the seed inputs; no problem text or error may
// ever contain it.
const fuzzSecret = "fuzz-planted-secret-q8z"

func addJSONFixtures(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"xsuaa":[{"name":"a","plan":"application","credentials":{"clientid":"c","clientsecret":"` + fuzzSecret + `","url":"https://a.authentication.x","credential-type":"x509","certificate":"x","key":"` + fuzzSecret + `"}}]}`))
	f.Add([]byte(`{"identity":[{"name":"i","credentials":{"clientid":"c","clientsecret":"` + fuzzSecret + `","credential-type":"` + fuzzSecret + `"}}]}`))
}

// FuzzParseVCAP: any input either fails with an *Error or yields bindings;
// it never panics and never puts the planted secret into an error or problem.
func FuzzParseVCAP(f *testing.F) {
	addJSONFixtures(f)
	leaf := testPKI.valid
	f.Add(vcapJSON(f, xsuaa("x", merge(baseXSUAACreds(), map[string]any{
		"credential-type": "x509", "certificate": escaped(leaf.CertPEM()), "key": escaped(leaf.KeyPEM(testpki.SEC1)), "clientsecret": fuzzSecret,
	}))))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseVCAP(data, SourceVCAPServices, WithClock(clock()))
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if strings.Contains(err.Error(), fuzzSecret) {
				t.Fatalf("secret in error: %v", err)
			}
			return
		}
		for _, b := range set.Bindings {
			for _, p := range b.Problems {
				if strings.Contains(p, fuzzSecret) {
					t.Fatalf("secret in problem: %q", p)
				}
			}
			if b.Auth == nil {
				continue
			}
			switch b.Auth.Auth {
			case AuthSecret:
				if b.Auth.ClientSecret.IsZero() || b.Auth.TokenURL == "" {
					t.Fatalf("secret auth without secret or token URL")
				}
			case AuthMTLS:
				if b.Auth.Key == nil || b.Auth.Leaf() == nil || b.Auth.TokenURL == "" {
					t.Fatalf("mtls auth without key, certificate or token URL")
				}
			case AuthNone:
				if b.Auth.TokenURL != "" {
					t.Fatalf("auth none with a token URL")
				}
			default:
				t.Fatalf("auth %q", b.Auth.Auth)
			}
		}
	})
}

// FuzzPEM: the PEM loader never panics, never echoes its input in an error,
// and a key it accepts re-encodes and parses again.
func FuzzPEM(f *testing.F) {
	p := testPKI
	for _, b := range [][]byte{
		p.valid.CertPEM(), p.valid.KeyPEM(testpki.PKCS8), p.valid.KeyPEM(testpki.SEC1),
		p.rsa.KeyPEM(testpki.PKCS1), p.inter.CertPEM(),
		[]byte(escaped(p.valid.KeyPEM(testpki.PKCS8))),
		[]byte("-----BEGIN PRIVATE KEY-----\n" + fuzzSecret + "\n-----END PRIVATE KEY-----\n"),
		[]byte("-----BEGIN CERTIFICATE----- " + fuzzSecret + " -----END CERTIFICATE-----"),
	} {
		f.Add(b)
	}
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	for _, fp := range files {
		if b, err := os.ReadFile(fp); err == nil && len(b) < 8000 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parsePrivateKey(data)
		if err != nil && strings.Contains(err.Error(), fuzzSecret) {
			t.Fatalf("secret in error: %v", err)
		}
		if err == nil {
			pk, err := NewPrivateKey(k, "fuzz")
			if err == nil {
				if _, err := parsePrivateKey([]byte(pk.PEM().Reveal())); err != nil {
					t.Fatalf("re-encoded key does not parse: %v", err)
				}
			}
		}
		certs, err := parseCertificates(data)
		if err != nil && strings.Contains(err.Error(), fuzzSecret) {
			t.Fatalf("secret in error: %v", err)
		}
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
		_ = pemx.Normalize(data)
	})
}
