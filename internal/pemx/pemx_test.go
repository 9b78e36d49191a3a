package pemx

import (
	"encoding/pem"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestBlocksAndCertificates(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.WithDNSNames("a.example"))
	data := append([]byte("junk before\n"), leaf.CertPEM()...)
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})...)
	data = append(data, ca.CertPEM()...)

	g.Expect(Blocks(data, "PRIVATE KEY")).To(Equal([][]byte{{1, 2, 3}}))
	g.Expect(Blocks(data, "X509 CRL")).To(BeEmpty())

	certs, err := Certificates(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(certs).To(HaveLen(2))
	g.Expect(certs[0].DNSNames).To(Equal([]string{"a.example"}))
	g.Expect(certs[1].IsCA).To(BeTrue())

	none, err := Certificates([]byte("no pem here"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(none).To(BeEmpty())

	bad := append(ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})...)
	_, err = Certificates(bad)
	g.Expect(err).To(MatchError(ErrBadCertificate))
	g.Expect(err.Error()).To(ContainSubstring("certificate 2: "))
}
