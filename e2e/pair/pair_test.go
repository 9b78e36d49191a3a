package pair_test

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

var _ = Describe("credbroker pair", func() {
	var (
		srv     *mockauth.Server
		secrets *harness.Secrets
		caFile  string
		dir     string
		tokURL  string
	)

	// newToken mints a pairing token and remembers it as a secret.
	newToken := func(app string) string {
		u, tok, err := srv.NewPairingToken(app)
		Expect(err).NotTo(HaveOccurred())
		secrets.Add("one-time token for "+app, tok)
		return u
	}

	pair := func(env harness.Env, args ...string) *gexec.Session {
		s := harness.Start(bin, env, append([]string{"pair"}, args...)...)
		Eventually(s, 60*time.Second).Should(gexec.Exit())
		secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
		return s
	}

	BeforeEach(func() {
		var err error
		srv, err = mockauth.Start(mockauth.Options{CertTTL: 30 * time.Second})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Close)
		secrets = &harness.Secrets{}
		tmp := GinkgoT().TempDir()
		caFile = filepath.Join(tmp, "ca.crt")
		Expect(os.WriteFile(caFile, srv.CACertPEM(), 0o644)).To(Succeed())
		dir = filepath.Join(tmp, "connector")
		tokURL = newToken("orders")
	})

	It("writes key, chain, CA and connection.json and prints a summary without the token", func() {
		s := pair(nil, "--token-url", tokURL, "--cert-dir", dir, "--ca-file", caFile, "--log-level", "debug")
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))

		info, err := os.Stat(filepath.Join(dir, "tls.key"))
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o600)), "the key is private")
		for _, name := range []string{"tls.crt", "ca.crt", "connection.json"} {
			info, err := os.Stat(filepath.Join(dir, name))
			Expect(err).NotTo(HaveOccurred(), name)
			Expect(info.Mode().Perm()&0o022).To(BeZero(), "%s is not writable by others", name)
		}
		certPEM, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
		keyPEM, _ := os.ReadFile(filepath.Join(dir, "tls.key"))
		pairCert, err := tls.X509KeyPair(certPEM, keyPEM)
		Expect(err).NotTo(HaveOccurred(), "the key matches the certificate")
		leaf, err := x509.ParseCertificate(pairCert.Certificate[0])
		Expect(err).NotTo(HaveOccurred())
		Expect(leaf.Subject.CommonName).To(Equal("orders"))
		caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
		Expect(caPEM).To(Equal(srv.ConnectorCAPEM()))
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		Expect(err).NotTo(HaveOccurred(), "the chain verifies against ca.crt")

		var ci map[string]any
		raw, _ := os.ReadFile(filepath.Join(dir, "connection.json"))
		Expect(json.Unmarshal(raw, &ci)).To(Succeed())
		connectorURL, gatewayURL := srv.Info().ConnectorURL, srv.Info().GatewayURL
		Expect(ci).To(HaveKeyWithValue("connector_url", connectorURL))
		// As in Kyma, the mTLS calls live on the gateway host.
		Expect(ci).To(HaveKeyWithValue("info_url", gatewayURL+"/v1/applications/management/info"))
		Expect(ci).To(HaveKeyWithValue("identity", HaveKeyWithValue("application", "orders")))
		Expect(ci).To(HaveKeyWithValue("renew_cert_url", HavePrefix(gatewayURL)))
		Expect(ci).To(HaveKeyWithValue("revoke_cert_url", HavePrefix(gatewayURL)))
		Expect(ci).To(HaveKeyWithValue("events_url", Not(BeEmpty())))
		Expect(ci).To(HaveKeyWithValue("metadata_url", Not(BeEmpty())))
		Expect(ci).To(HaveKeyWithValue("subject", "O="+leaf.Subject.Organization[0]+",OU="+leaf.Subject.OrganizationalUnit[0]+
			",L="+leaf.Subject.Locality[0]+",ST="+leaf.Subject.Province[0]+",C="+leaf.Subject.Country[0]+",CN=orders"))
		Expect(ci).To(HaveKeyWithValue("serial", leaf.SerialNumber.String()))
		sum := sha256.Sum256(leaf.Raw)
		fp := hex.EncodeToString(sum[:])
		Expect(ci).To(HaveKeyWithValue("sha256", fp), "serials repeat (the connector issues serial 2); the fingerprint identifies")
		Expect(ci).To(HaveKeyWithValue("not_after", leaf.NotAfter.UTC().Format(time.RFC3339)))
		issued := srv.Issued()
		Expect(issued).To(HaveLen(1))
		Expect(issued[0].Serial).To(Equal(leaf.SerialNumber.String()))
		Expect(issued[0].SHA256).To(Equal(fp))

		out := string(s.Out.Contents())
		Expect(out).To(ContainSubstring("Paired with " + connectorURL))
		Expect(out).To(ContainSubstring("orders"))
		Expect(out).To(MatchRegexp(`(?m)^  serial: +` + leaf.SerialNumber.String() + `$`))
		Expect(out).To(MatchRegexp(`(?m)^  sha256: +` + fp + `$`))
		Expect(out).To(MatchRegexp(`(?m)^  application: +orders$`))
		Expect(out).To(ContainSubstring(leaf.NotAfter.UTC().Format(time.RFC3339)))
		Expect(out).To(ContainSubstring(gatewayURL + "/v1/applications/management/info"))
		secrets.ExpectNotIn(harness.ReadTree(dir, "tls.key")...)
	})

	It("reads the token URL from a file or the environment, and makes an RSA 2048 key by default", func() {
		urlFile := filepath.Join(GinkgoT().TempDir(), "pairing-url")
		Expect(os.WriteFile(urlFile, []byte(tokURL+"\n"), 0o600)).To(Succeed())
		s := pair(nil, "--token-url-file", urlFile, "--cert-dir", dir, "--ca-file", caFile)
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		keyPEM, _ := os.ReadFile(filepath.Join(dir, "tls.key"))
		certPEM, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		Expect(err).NotTo(HaveOccurred())
		Expect(kp.PrivateKey).To(BeAssignableToTypeOf(&rsa.PrivateKey{}))
		Expect(kp.PrivateKey.(*rsa.PrivateKey).N.BitLen()).To(Equal(2048))

		dir2 := filepath.Join(GinkgoT().TempDir(), "second")
		s = pair(harness.Env{"CREDBROKER_TOKEN_URL": newToken("billing"), "CREDBROKER_CA_FILE": caFile, "CREDBROKER_KEY_TYPE": "ecdsa-p256", "CREDBROKER_RSA_FALLBACK": "true"}, "--cert-dir", dir2)
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		Expect(string(s.Out.Contents())).To(ContainSubstring("CN=billing"))
		Expect(string(s.Err.Contents())).To(ContainSubstring("key_type=ecdsa-p256"), "the key type came from the environment")
	})

	It("warns when the key type differs from the connector's key-algorithm, explains a refused ECDSA CSR, and falls back to RSA with --rsa-fallback", func() {
		// The connector's CA signs with RSA and copies the CSR's signature
		// algorithm: an ECDSA CSR fails with 500, as in Kyma.
		s := pair(nil, "--token-url", tokURL, "--cert-dir", dir, "--ca-file", caFile, "--key-type", "ecdsa-p256")
		Expect(s.ExitCode()).To(Equal(1))
		errOut := string(s.Err.Contents())
		Expect(errOut).To(ContainSubstring("the key type differs from the connector's key-algorithm"), "warned before sending")
		Expect(errOut).To(ContainSubstring("requested SignatureAlgorithm does not match private key type"))
		Expect(errOut).To(ContainSubstring("did not spend the CSR token"), "says what a retry can still do")
		Expect(errOut).To(ContainSubstring("--key-type rsa2048, or --rsa-fallback"))
		Expect(filepath.Join(dir, "tls.key")).NotTo(BeAnExistingFile())

		s = pair(nil, "--token-url", newToken("orders"), "--cert-dir", dir, "--ca-file", caFile, "--key-type", "ecdsa-p256", "--rsa-fallback")
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		Expect(string(s.Out.Contents())).To(ContainSubstring("RSA 2048"))
		Expect(srv.Stats().CSRSigned).To(Equal(1))
	})

	It("refuses a used token with exit 1 and says a new one-time token is needed", func() {
		s := pair(nil, "--token-url", tokURL, "--cert-dir", dir, "--ca-file", caFile)
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		before, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))

		s = pair(nil, "--token-url", tokURL, "--cert-dir", dir, "--ca-file", caFile)
		Expect(s.ExitCode()).To(Equal(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("a new one-time token is needed"))
		Expect(string(s.Err.Contents())).To(ContainSubstring("Invalid token."))
		after, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
		Expect(after).To(Equal(before), "the paired certificate is left alone")
	})

	It("reports the connector's refusal with exit 1", func() {
		Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetConnector, Status: 503})).To(Succeed())
		s := pair(nil, "--token-url", tokURL, "--cert-dir", dir, "--ca-file", caFile, "--key-type", "ecdsa-p256")
		Expect(s.ExitCode()).To(Equal(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("HTTP 503"))
		Expect(filepath.Join(dir, "tls.key")).NotTo(BeAnExistingFile())
	})

	// The connector's malformed answers (mockauth's Answer faults, which
	// replaced the connector package's own fake): each is refused with
	// exit 1 and the reason, nothing is written, the token is not printed.
	DescribeTable("refuses a malformed certificate answer with exit 1 and writes nothing",
		func(answer, want string) {
			Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetCSR, Answer: answer, Count: 1})).To(Succeed())
			s := pair(nil, "--token-url", tokURL, "--cert-dir", dir, "--ca-file", caFile)
			Expect(s.ExitCode()).To(Equal(1), string(s.Err.Contents()))
			Expect(string(s.Err.Contents())).To(ContainSubstring(want))
			Expect(filepath.Join(dir, "tls.key")).NotTo(BeAnExistingFile())
		},
		Entry("a certificate for another key", mockauth.AnswerOtherKey, "does not match the key"),
		Entry("a certificate from another CA", mockauth.AnswerOtherCA, "does not verify"),
		Entry("an expired certificate", mockauth.AnswerExpired, "does not verify"),
		Entry("a certificate for another subject", mockauth.AnswerOtherSubject, "someone-else"),
		Entry("no CA", mockauth.AnswerNoCA, `no "caCrt"`),
	)

	It("says the token may be spent when the connector hangs up after the CSR arrived (exit 1)", func() {
		Expect(srv.AddFault(mockauth.Fault{Target: mockauth.TargetCSR, Hangup: true, Count: 1})).To(Succeed())
		s := pair(nil, "--token-url", tokURL, "--cert-dir", dir, "--ca-file", caFile)
		Expect(s.ExitCode()).To(Equal(1), string(s.Err.Contents()))
		Expect(string(s.Err.Contents())).To(ContainSubstring("the token may be used up"))
		Expect(filepath.Join(dir, "tls.key")).NotTo(BeAnExistingFile())
	})

	It("fails TLS verification without the mock's CA (exit 1) and never switches it off", func() {
		s := pair(nil, "--token-url", tokURL, "--cert-dir", dir, "--key-type", "ecdsa-p256")
		Expect(s.ExitCode()).To(Equal(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("certificate"))
		Expect(srv.Stats().PairingInfoRequests).To(Equal(0), "the token never left the process")
	})

	DescribeTable("exits 2 on bad input, without spending or printing the token",
		func(args func() []string) {
			s := pair(nil, args()...)
			Expect(s.ExitCode()).To(Equal(2), string(s.Err.Contents()))
			Expect(string(s.Err.Contents())).To(ContainSubstring("credbroker pair: "))
			Expect(srv.Stats().PairingInfoRequests).To(Equal(0))
		},
		Entry("no scheme", func() []string {
			return []string{"--token-url", "connector.localhost/info?token=" + tokenOf(tokURL), "--cert-dir", dir}
		}),
		Entry("plain http beyond loopback", func() []string {
			return []string{"--token-url", "http://connector.example.com/info?token=" + tokenOf(tokURL), "--cert-dir", dir}
		}),
		Entry("garbage", func() []string { return []string{"--token-url", "::%%?token=" + tokenOf(tokURL), "--cert-dir", dir} }),
		Entry("cert dir is a file", func() []string { return []string{"--token-url", tokURL, "--cert-dir", caFile} }),
		Entry("no cert dir", func() []string { return []string{"--token-url", tokURL} }),
	)
})

// tokenOf returns the token query value of a pairing URL.
func tokenOf(u string) string {
	p, err := url.Parse(u)
	Expect(err).NotTo(HaveOccurred())
	return p.Query().Get("token")
}
