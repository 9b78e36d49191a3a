package certwatch_test

import (
	"context"
	"testing"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/testpki"
)

// BenchmarkGetClientCertificate measures the per-handshake cost of handing
// out the live pair (an atomic load and a struct copy).
func BenchmarkGetClientCertificate(b *testing.B) {
	ca := testpki.NewCA()
	leaf := ca.Issue()
	dir := b.TempDir()
	if err := certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: leaf.CertPEM(), KeyPEM: leaf.KeyPEM(testpki.PKCS8), CAPEM: ca.CertPEM()}); err != nil {
		b.Fatal(err)
	}
	w, err := certwatch.New(context.Background(), certwatch.WithDir(dir))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.GetClientCertificate(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLoadDir measures one re-read and validation of a directory.
func BenchmarkLoadDir(b *testing.B) {
	ca := testpki.NewCA()
	leaf := ca.Issue()
	dir := b.TempDir()
	if err := certwatch.Persist(context.Background(), dir, certwatch.Files{CertPEM: leaf.CertPEM(), KeyPEM: leaf.KeyPEM(testpki.PKCS8), CAPEM: ca.CertPEM()}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := certwatch.LoadDir(context.Background(), dir); err != nil {
			b.Fatal(err)
		}
	}
}
