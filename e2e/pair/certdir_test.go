package pair_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// Issue 15 items 8 and 10: the certificate directory and the connector's
// URLs.
var _ = Describe("credbroker pair: certificate directories and connector URLs", func() {
	var (
		srv     *mockauth.Server
		secrets *harness.Secrets
		caFile  string
		tmp     string
	)
	newToken := func() string {
		u, tok, err := srv.NewPairingToken("orders")
		Expect(err).NotTo(HaveOccurred())
		secrets.Add("one-time token", tok)
		return u
	}
	pair := func(args ...string) *gexec.Session {
		s := harness.Start(bin, nil, append([]string{"pair"}, args...)...)
		Eventually(s, 60*time.Second).Should(gexec.Exit())
		secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
		return s
	}
	// namesUnder lists every name below dir (following no link).
	namesUnder := func(dir string) []string {
		var out []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				out = append(out, d.Name())
			}
			return nil
		})
		return out
	}

	BeforeEach(func() {
		var err error
		srv, err = mockauth.Start(mockauth.Options{CertTTL: time.Hour})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Close)
		secrets = &harness.Secrets{}
		tmp = GinkgoT().TempDir()
		caFile = filepath.Join(tmp, "ca.crt")
		Expect(os.WriteFile(caFile, srv.CACertPEM(), 0o644)).To(Succeed())
	})

	It("creates the directory and its generations 0700 and keeps DIR/tls.crt readable", func() {
		dir := filepath.Join(tmp, "new", "connector")
		s := pair("--token-url", newToken(), "--cert-dir", dir, "--ca-file", caFile)
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		fi, err := os.Stat(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o700)), "pair creates the directory 0700")
		gen, err := os.Stat(filepath.Join(dir, "..data"))
		Expect(err).NotTo(HaveOccurred())
		Expect(gen.Mode().Perm()).To(Equal(os.FileMode(0o700)), "the generation holding the files is 0700")
		link, err := os.Readlink(filepath.Join(dir, "tls.crt"))
		Expect(err).NotTo(HaveOccurred())
		Expect(link).To(Equal(filepath.Join("..data", "tls.crt")), "DIR/tls.crt is a link into the generation")
		_, err = tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		Expect(err).NotTo(HaveOccurred(), "readers of DIR/tls.crt and DIR/tls.key keep working")
	})

	It("uses a directory others can write (an emptyDir is 0777) and warns", func() {
		dir := filepath.Join(tmp, "shared")
		Expect(os.Mkdir(dir, 0o700)).To(Succeed())
		Expect(os.Chmod(dir, 0o777)).To(Succeed())
		s := pair("--token-url", newToken(), "--cert-dir", dir, "--ca-file", caFile)
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		Expect(string(s.Err.Contents())).To(ContainSubstring("writable by group or others"))
		gen, err := os.Stat(filepath.Join(dir, "..data"))
		Expect(err).NotTo(HaveOccurred())
		Expect(gen.Mode().Perm()).To(Equal(os.FileMode(0o700)))
	})

	It("never follows a planted ..data link out of the directory and spends no token", func() {
		elsewhere := filepath.Join(tmp, "elsewhere")
		Expect(os.Mkdir(elsewhere, 0o700)).To(Succeed())
		secret := secrets.Plant("a file the planted link points at")
		Expect(os.WriteFile(filepath.Join(elsewhere, "db-password"), []byte(secret), 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(elsewhere, "connection.json"), []byte(`{"version":1}`), 0o600)).To(Succeed())
		dir := filepath.Join(tmp, "connector")
		Expect(os.Mkdir(dir, 0o700)).To(Succeed())
		Expect(os.Symlink(elsewhere, filepath.Join(dir, "..data"))).To(Succeed())

		s := pair("--token-url", newToken(), "--cert-dir", dir, "--ca-file", caFile)
		Expect(s.ExitCode()).To(Equal(2), string(s.Err.Contents()))
		Expect(string(s.Err.Contents())).To(ContainSubstring("..data"))
		Expect(srv.Stats().PairingInfoRequests).To(BeZero(), "the one-time token is not spent")
		Expect(namesUnder(dir)).NotTo(ContainElement("db-password"), "nothing of the link's target was copied")
		secrets.ExpectNotIn(harness.ReadTree(dir)...)
	})

	It("refuses a connector that answers with a plain http csrUrl beyond loopback, sending it nothing", func() {
		var plainHits atomic.Int64
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			plainHits.Add(1)
			w.WriteHeader(http.StatusForbidden)
		}))
		DeferCleanup(plain.Close)
		plainPort := plain.Listener.Addr().(*net.TCPAddr).Port
		csrToken := secrets.Plant("the csrUrl's one-time token")

		ca := testpki.NewCA()
		leaf := ca.Issue(testpki.WithDNSNames("connector.example.test"), testpki.ServerAuth())
		fake := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"csrUrl":      fmt.Sprintf("http://csr.example.test:%d/v1/applications/certificates?token=%s", plainPort, csrToken),
				"api":         map[string]string{"infoUrl": "https://connector.example.test/v1/applications/management/info"},
				"certificate": map[string]string{"subject": "OU=Test,O=Test,L=Waldorf,ST=Waldorf,C=DE,CN=orders", "extensions": "", "key-algorithm": "rsa2048"},
			})
		}))
		fake.TLS = testpki.ServerTLSConfig(leaf, nil)
		fake.StartTLS()
		DeferCleanup(fake.Close)
		fakeCA := filepath.Join(tmp, "fake-ca.crt")
		Expect(os.WriteFile(fakeCA, ca.CertPEM(), 0o644)).To(Succeed())
		port := fake.Listener.Addr().(*net.TCPAddr).Port
		tokenURL := fmt.Sprintf("https://connector.example.test:%d/v1/applications/signingRequests/info?token=%s", port, secrets.Plant("the info one-time token"))

		dir := filepath.Join(tmp, "connector")
		s := pair("--token-url", tokenURL, "--cert-dir", dir, "--ca-file", fakeCA, "--resolve", "*.example.test=127.0.0.1")
		// The URL came from the connector's answer, not from the user: a
		// runtime failure (exit 1), reported as such.
		Expect(s.ExitCode()).To(Equal(1), string(s.Err.Contents()))
		Expect(string(s.Err.Contents())).To(And(ContainSubstring("csrUrl"), ContainSubstring("in clear")))
		Expect(plainHits.Load()).To(BeZero(), "nothing went over plain http")
		Expect(strings.Join(namesUnder(dir), " ")).NotTo(ContainSubstring("tls.key"))
	})
})
