package mockauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"testing"
)

// FuzzParseCSRBody: the connector's CSR body parser answers 500 (as Kyma) to anything
// malformed and never panics.
func FuzzParseCSRBody(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: wantSubject("Organization", "app1")}, key)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	f.Add(good)
	f.Add([]byte(`{"csr":""}`))
	f.Add([]byte(`{"csr":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K"}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		csr, e := parseCSRBody(raw)
		if (csr == nil) == (e == nil) {
			t.Fatalf("want exactly one of csr and error, got %v and %v", csr, e)
		}
		if e != nil && e.status != 500 {
			t.Fatalf("status %d, want 500 (as the Kyma connector)", e.status)
		}
	})
}

// FuzzFlexDuration: the control API's duration fields accept "30s" or a
// number of seconds and reject the rest without panicking.
func FuzzFlexDuration(f *testing.F) {
	for _, s := range []string{`"30s"`, `2`, `0.5`, `null`, `"soon"`, `true`, `[]`, `1e309`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var d flexDuration
		_ = d.UnmarshalJSON(raw)
	})
}
