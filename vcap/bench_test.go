package vcap

import (
	"testing"

	"github.com/credbroker/credbroker/internal/testpki"
)

// BenchmarkParseVCAP parses a realistic VCAP_SERVICES document: a secret
// xsuaa binding, an x509 xsuaa binding (certificate chain and key in
// escaped PEM) and an IAS binding.
func BenchmarkParseVCAP(b *testing.B) {
	p := testPKI
	doc := vcapJSON(b,
		xsuaa("secret", merge(baseXSUAACreds(), map[string]any{"clientsecret": plantedSecret})),
		xsuaa("x509", merge(baseXSUAACreds(), map[string]any{"credential-type": "x509",
			"certificate": escaped(p.inter.CertPEM()), "key": escaped(p.inter.KeyPEM(testpki.PKCS8))})),
		identity("ias", merge(baseIASCreds(), map[string]any{"clientsecret": plantedSecret})),
	)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		set, err := ParseVCAP(doc, SourceVCAPServices, WithClock(clock()))
		if err != nil || set.Err() != nil {
			b.Fatal(err, set.Err())
		}
	}
}
