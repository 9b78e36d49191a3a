package mock_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// dial maps *.localhost to loopback, as any client of the mock must: on
// port 443 a name of the mock to the address of its role (the mock serves on
// 443 when it may), every other one to 127.0.0.1.
var dial = mockauth.DialContext

func httpClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}},
		Timeout:   20 * time.Second,
	}
}

func readJSON(resp *http.Response) map[string]any {
	GinkgoHelper()
	defer resp.Body.Close()
	var v map[string]any
	raw, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	Expect(json.Unmarshal(raw, &v)).To(Succeed(), string(raw))
	return v
}

var _ = Describe("credbroker mock", func() {
	var (
		dir     string
		session *gexec.Session
		info    map[string]any
		roots   *x509.CertPool
		secrets harness.Secrets
	)

	BeforeEach(func() {
		dir = filepath.Join(GinkgoT().TempDir(), "mock")
		session = harness.Start(bin, nil, "mock", "--dir", dir, "--token-ttl", "90s", "--cert-ttl", "45s", "--two-phase")
		DeferCleanup(func() {
			session.Kill()
		})
		Eventually(func() error {
			raw, err := os.ReadFile(filepath.Join(dir, "mock.json"))
			if err != nil {
				return err
			}
			return json.Unmarshal(raw, &info)
		}).WithTimeout(60 * time.Second).Should(Succeed())
		caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		Expect(err).NotTo(HaveOccurred())
		roots = x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(caPEM)).To(BeTrue())
	})

	It("serves the bindings it writes to vcap.json, pairs with pairing-url, and exits 0 on SIGTERM", func() {
		vcapRaw, err := os.ReadFile(filepath.Join(dir, "vcap.json"))
		Expect(err).NotTo(HaveOccurred())
		var vcap map[string][]struct {
			Name        string
			Credentials map[string]any
		}
		Expect(json.Unmarshal(vcapRaw, &vcap)).To(Succeed())
		var secretCreds, x509Creds map[string]any
		for _, b := range vcap["xsuaa"] {
			switch b.Name {
			case "xsuaa-secret":
				secretCreds = b.Credentials
			case "xsuaa-x509":
				x509Creds = b.Credentials
			}
		}
		Expect(secretCreds).NotTo(BeNil())
		Expect(x509Creds).NotTo(BeNil())
		secrets.Add("client secret", secretCreds["clientsecret"].(string))
		secrets.Add("x509 binding key", x509Creds["key"].(string))

		By("getting a client_credentials token with the secret binding and a plain client")
		resp, err := httpClient(roots).PostForm(secretCreds["url"].(string)+"/oauth/token", url.Values{
			"grant_type":    {"client_credentials"},
			"client_id":     {secretCreds["clientid"].(string)},
			"client_secret": {secretCreds["clientsecret"].(string)},
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		tok := readJSON(resp)
		Expect(tok).To(HaveKeyWithValue("expires_in", BeNumerically("==", 90)))
		secrets.Add("access token", tok["access_token"].(string))

		By("getting a token for a subscriber over mTLS with the x509 binding")
		pair, err := tls.X509KeyPair([]byte(x509Creds["certificate"].(string)), []byte(x509Creds["key"].(string)))
		Expect(err).NotTo(HaveOccurred())
		certURL, err := url.Parse(x509Creds["certurl"].(string))
		Expect(err).NotTo(HaveOccurred())
		port := certURL.Port() // "" on port 443
		certURL.Host = "subscriber1." + info["cert_uaadomain"].(string)
		if port != "" {
			certURL.Host += ":" + port
		}
		resp, err = httpClient(roots, pair).PostForm(certURL.String()+"/oauth/token", url.Values{
			"grant_type": {"client_credentials"}, "client_id": {x509Creds["clientid"].(string)},
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		readJSON(resp)

		By("pairing with the one-time token URL in pairing-url")
		raw, err := os.ReadFile(filepath.Join(dir, "pairing-url"))
		Expect(err).NotTo(HaveOccurred())
		pairingURL := strings.TrimSpace(string(raw))
		secrets.Add("pairing token", pairingURL[strings.Index(pairingURL, "token=")+6:])
		resp, err = httpClient(roots).Get(pairingURL)
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		csrInfo := readJSON(resp)
		subject := csrInfo["certificate"].(map[string]any)["subject"].(string)
		Expect(subject).To(Equal("O=Organization,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app1"))
		// RSA: the connector's CA is RSA and signs with the CSR's
		// algorithm, as Kyma's (an ECDSA CSR fails with 500).
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		Expect(err).NotTo(HaveOccurred())
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{
			Organization: []string{"Organization"}, OrganizationalUnit: []string{"OrgUnit"}, Locality: []string{"Waldorf"},
			Province: []string{"Waldorf"}, Country: []string{"DE"}, CommonName: "app1",
		}}, key)
		Expect(err).NotTo(HaveOccurred())
		body, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
		resp, err = httpClient(roots).Post(csrInfo["csrUrl"].(string), "application/json", bytes.NewReader(body))
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusCreated))
		issued := readJSON(resp)
		clientPEM, err := base64.StdEncoding.DecodeString(issued["clientCrt"].(string))
		Expect(err).NotTo(HaveOccurred())
		block, _ := pem.Decode(clientPEM)
		leaf, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		Expect(leaf.NotAfter.Sub(leaf.NotBefore)).To(BeNumerically("<=", 45*time.Second+5*time.Second))

		By("calling management info over mTLS: two-phase mode offers a runtime token URL")
		mtls := httpClient(roots, tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key})
		resp, err = mtls.Get(csrInfo["api"].(map[string]any)["infoUrl"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		mgmt := readJSON(resp)
		Expect(mgmt["runtime"]).To(HaveKeyWithValue("tokenUrl", HavePrefix(info["runtime_connector_url"].(string))))

		By("reading the counters from the control API")
		resp, err = http.Get(info["admin_url"].(string) + "/mock/stats")
		Expect(err).NotTo(HaveOccurred())
		stats := readJSON(resp)
		Expect(stats).To(HaveKeyWithValue("token_requests", BeNumerically("==", 2)))
		Expect(stats).To(HaveKeyWithValue("csr_signed", BeNumerically("==", 1)))
		Expect(stats).To(HaveKeyWithValue("info_requests", BeNumerically("==", 1)))

		By("stopping on SIGTERM with exit code 0")
		session.Signal(syscall.SIGTERM)
		Eventually(session).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		secrets.ExpectNotIn(session.Out.Contents(), session.Err.Contents())
		Expect(string(session.Out.Contents())).To(ContainSubstring(filepath.Join(dir, "pairing-url")))
	})

	It("breaks on purpose through the control API", func() {
		admin := info["admin_url"].(string) + "/mock"
		resp, err := http.Post(admin+"/faults", "application/json", strings.NewReader(`{"target":"token","status":503,"retry_after":3,"count":1}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusCreated))
		resp.Body.Close()

		resp, err = httpClient(roots).Get(info["token_keys_url"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
		Expect(resp.Header.Get("Retry-After")).To(Equal("3"))
		resp.Body.Close()
		resp, err = httpClient(roots).Get(info["token_keys_url"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		keys := readJSON(resp)["keys"].([]any)

		resp, err = http.Post(admin+"/rotate-keys", "application/json", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		kid := readJSON(resp)["kid"]
		resp, err = httpClient(roots).Get(info["token_keys_url"].(string))
		Expect(err).NotTo(HaveOccurred())
		rotated := readJSON(resp)["keys"].([]any)
		Expect(rotated).To(HaveLen(len(keys) + 1))
		Expect(rotated[0]).To(HaveKeyWithValue("kid", kid))

		session.Interrupt()
		Eventually(session).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	})
})
