package guard

import (
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/internal/trust"
)

// A CA bundle is judged by one set of rules: the guard's mtls ca_file and
// the trust roots of every command (CREDBROKER_CA_FILE, ca_file) accept and
// refuse the same files, for the same reason, naming the file.
func TestACABundleIsJudgedTheSameByTheGuardAndByTrust(t *testing.T) {
	dir := t.TempDir()
	ca, other := testpki.NewCA(), testpki.NewCA()
	leaf := ca.Issue(testpki.ServerAuth())
	caPEM := ca.CertPEM()
	escaped := strings.ReplaceAll(strings.TrimSpace(string(caPEM)), "\n", `\n`) // as bindings carry PEM
	broken := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
	for _, tc := range []struct {
		name string
		data string
		want error // nil: accepted
	}{
		{"one CA", string(caPEM), nil},
		{"two CAs", string(caPEM) + string(other.CertPEM()), nil},
		{"a CA with a key block beside it", string(caPEM) + string(leaf.KeyPEM(testpki.PKCS8)), nil},
		{"a CA with escaped newlines", escaped, nil},
		{"empty", "", trust.ErrNoCertificate},
		{"no PEM", "not a certificate at all", trust.ErrNoCertificate},
		{"only a key", string(leaf.KeyPEM(testpki.PKCS8)), trust.ErrNoCertificate},
		{"a CA and a leaf", string(caPEM) + string(leaf.CertPEM()), trust.ErrNotCA},
		{"a CA and a block that does not parse", string(caPEM) + broken, trust.ErrBadCertificate},
		{"a block that does not parse, then a CA", broken + string(caPEM), trust.ErrBadCertificate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			file := tempFile(t, dir, strings.ReplaceAll(tc.name, " ", "_")+".pem", []byte(tc.data))
			_, guardErr := loadCAMaterial(file, "", time.Now())
			_, trustErr := trust.Roots(file)
			if tc.want == nil {
				g.Expect(guardErr).NotTo(HaveOccurred(), "the guard")
				g.Expect(trustErr).NotTo(HaveOccurred(), "trust")
				return
			}
			for who, err := range map[string]error{"the guard": guardErr, "trust": trustErr} {
				g.Expect(errors.Is(err, tc.want)).To(BeTrue(), "%s: %v", who, err)
				g.Expect(err.Error()).To(ContainSubstring(file), who)
			}
			if tc.want == trust.ErrNotCA {
				g.Expect(guardErr.Error()).To(ContainSubstring("certificate 2 ("), "the block is named")
			}
			if tc.want == trust.ErrBadCertificate {
				g.Expect(trustErr.Error()).To(MatchRegexp(`certificate [12]: `), "the block is named")
			}
		})
	}
}
