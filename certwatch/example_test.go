package certwatch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/testpki"
)

func Example() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "certwatch-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "connector")

	// What `credbroker pair` does after the connector issued a certificate.
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.WithCommonName("app1"))
	err = certwatch.Persist(ctx, dir, certwatch.Files{
		CertPEM: leaf.CertPEM(),
		KeyPEM:  leaf.KeyPEM(testpki.PKCS8),
		CAPEM:   ca.CertPEM(),
		Extra:   map[string][]byte{certwatch.ConnectionFile: []byte(`{"application":"app1"}`)},
	})
	if err != nil {
		panic(err)
	}

	w, err := certwatch.New(ctx, certwatch.WithDir(dir))
	if err != nil {
		panic(err)
	}
	defer w.Close()
	cert, err := w.GetClientCertificate(nil)
	if err != nil {
		panic(err)
	}
	st := w.Status()
	fmt.Println(cert.Leaf.Subject, st.Ready, st.NeedsToken)
	// Output: CN=app1 true false
}
