package testpki_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestLeafVerifiesAgainstCAAndMatchesKey(t *testing.T) {
	g := NewWithT(t)
	root := testpki.NewCA()
	inter := root.NewIntermediate()
	for _, kt := range []testpki.KeyType{testpki.ECDSAP256, testpki.RSA2048, testpki.Ed25519} {
		leaf := inter.Issue(testpki.WithCommonName("app"), testpki.WithKeyType(kt), testpki.WithValidity(time.Hour))
		pool := x509.NewCertPool()
		pool.AddCert(inter.Cert)
		_, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		g.Expect(err).NotTo(HaveOccurred())
		pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM(testpki.PKCS8))
		g.Expect(err).NotTo(HaveOccurred(), "key must match certificate")
		g.Expect(pair.Certificate).To(HaveLen(2), "leaf plus intermediate")
	}
}

func TestKeyFormats(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	rsaLeaf := ca.Issue(testpki.WithKeyType(testpki.RSA2048))
	ecLeaf := ca.Issue()
	for _, tc := range []struct {
		pem  []byte
		want string
	}{
		{rsaLeaf.KeyPEM(testpki.PKCS1), "RSA PRIVATE KEY"},
		{rsaLeaf.KeyPEM(testpki.PKCS8), "PRIVATE KEY"},
		{ecLeaf.KeyPEM(testpki.SEC1), "EC PRIVATE KEY"},
		{ecLeaf.KeyPEM(testpki.PKCS8), "PRIVATE KEY"},
	} {
		b, _ := pem.Decode(tc.pem)
		g.Expect(b).NotTo(BeNil())
		g.Expect(b.Type).To(Equal(tc.want))
	}
	g.Expect(func() { ecLeaf.KeyPEM(testpki.PKCS1) }).To(Panic())
}

func TestValidityWindow(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	nb := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(time.Hour)
	leaf := ca.Issue(testpki.WithNotBeforeAfter(nb, na))
	g.Expect(leaf.Cert.NotBefore).To(BeTemporally("==", nb))
	g.Expect(leaf.Cert.NotAfter).To(BeTemporally("==", na))
	g.Expect(ca.Issue().Cert.SerialNumber).NotTo(Equal(ca.Issue().Cert.SerialNumber))
}

func TestKubernetesDirRotation(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	g.Expect(testpki.WriteKubernetesDir(dir, map[string][]byte{"tls.crt": []byte("one"), "old": []byte("x")})).To(Succeed())
	b, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(Equal("one"))
	fi, err := os.Lstat(filepath.Join(dir, "tls.crt"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode() & os.ModeSymlink).NotTo(BeZero())
	first, _ := os.Readlink(filepath.Join(dir, "..data"))

	g.Expect(testpki.WriteKubernetesDir(dir, map[string][]byte{"tls.crt": []byte("two")})).To(Succeed())
	b, err = os.ReadFile(filepath.Join(dir, "tls.crt"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(Equal("two"))
	second, _ := os.Readlink(filepath.Join(dir, "..data"))
	g.Expect(second).NotTo(Equal(first))
	_, err = os.Stat(filepath.Join(dir, first))
	g.Expect(os.IsNotExist(err)).To(BeTrue(), "old generation removed")
	_, err = os.Lstat(filepath.Join(dir, "old"))
	g.Expect(os.IsNotExist(err)).To(BeTrue(), "dropped key's symlink removed")
}
