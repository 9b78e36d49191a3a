package testpki_test

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/credbroker/credbroker/internal/testpki"
)

func Example() {
	ca := testpki.NewCA()
	client := ca.Issue(testpki.WithCommonName("my-app"), testpki.ClientAuth(), testpki.WithValidity(time.Hour))
	_, err := tls.X509KeyPair(client.CertPEM(), client.KeyPEM(testpki.PKCS8))
	fmt.Println(client.Cert.Subject.CommonName, err == nil)
	// Output: my-app true
}
