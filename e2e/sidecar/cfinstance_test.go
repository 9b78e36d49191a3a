package sidecar_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// Issue 18: the instance identity recipe of docs/cloudfoundry.md, run as
// Diego would run it: CF_INSTANCE_CERT and CF_INSTANCE_KEY name the files
// of an instance certificate (chain: instance, Diego's intermediate), the
// sidecar command from the doc verbatim links them into a certificate
// directory, and Diego's rotation (new files renamed over the old ones) is
// picked up without a restart.
var _ = Describe("the Cloud Foundry instance identity recipe", func() {
	It("presents CF_INSTANCE_CERT on an mtls route and follows Diego's rotation", func() {
		doc, err := os.ReadFile("../../docs/cloudfoundry.md")
		Expect(err).NotTo(HaveOccurred())
		section := string(doc)
		i := strings.Index(section, "## The instance identity certificate")
		Expect(i).To(BeNumerically(">=", 0), "docs/cloudfoundry.md has the section")
		section = section[i:]
		command := regexp.MustCompile("(?m)^\\s*command: (mkdir -p /tmp/cf-id .*)$").FindStringSubmatch(section)
		Expect(command).To(HaveLen(2), "the recipe's sidecar command")
		config := regexp.MustCompile("(?s)```yaml\n(certificates:.*?)```").FindStringSubmatch(section)
		Expect(config).To(HaveLen(2), "the recipe's config")

		// Diego: a root, an intermediate that issues instance certificates.
		root := testpki.NewCA(testpki.WithCommonName("Diego Instance Identity Root CA"))
		diego := root.NewIntermediate(testpki.WithCommonName("Diego Instance Identity Intermediate CA"))
		e := newEnv(mockauth.Options{})
		up := newUpstream(e.upCA, root.CertPEM(), e.oauthSec, e.secrets)

		creds := GinkgoT().TempDir() // /etc/cf-instance-credentials
		crt, key := filepath.Join(creds, "instance.crt"), filepath.Join(creds, "instance.key")
		issue := func(cn string) {
			l := diego.Issue(testpki.WithCommonName(cn), testpki.ClientAuth(), testpki.WithValidity(24*time.Hour))
			e.secrets.Add("instance key "+cn, string(l.KeyPEM(testpki.PKCS8)))
			// Diego writes new files and renames them over the old ones.
			for path, data := range map[string][]byte{crt: l.CertPEM(), key: l.KeyPEM(testpki.PKCS8)} {
				Expect(os.WriteFile(path+".new", data, 0o600)).To(Succeed())
				Expect(os.Rename(path+".new", path)).To(Succeed())
			}
		}
		issue("app-instance-1")

		app := GinkgoT().TempDir()
		idDir := filepath.Join(app, "cf-id") // the recipe's /tmp/cf-id, private to this spec
		Expect(os.MkdirAll(filepath.Join(app, "credbroker"), 0o755)).To(Succeed())
		Expect(os.Symlink(bin, filepath.Join(app, "credbroker", "credbroker"))).To(Succeed())
		// Ports picked again when one was taken before credbroker bound it.
		var proxy, admin string
		sc := harness.RetryTakenPort(func() *gexec.Session {
			lp, ap := harness.FreePort(), harness.FreePort()
			proxy, admin = fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap)
			cfg := fmt.Sprintf("listen: %s\nadmin_listen: %s\nca_file: %s\n", proxy, admin, e.caFile) +
				strings.NewReplacer("/tmp/cf-id", idDir, "https://platform.example.com", up.url).Replace(config[1])
			Expect(os.WriteFile(filepath.Join(app, "credbroker", "credbroker.yaml"), []byte(cfg), 0o644)).To(Succeed())

			cmd := harness.Command("bash", harness.Env{
				"CF_INSTANCE_CERT": crt,
				"CF_INSTANCE_KEY":  key,
				// The poll that catches a rotation behind the links, quicker
				// than the default 30 s so that the spec is short.
				"CREDBROKER_POLL_INTERVAL": "1s",
			}, "-c", strings.ReplaceAll(command[1], "/tmp/cf-id", idDir))
			cmd.Dir = app
			s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() {
				s.Terminate()
				Eventually(s).WithTimeout(40 * time.Second).Should(gexec.Exit())
				e.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
			})
			return s
		})
		Eventually(func() int {
			code, _ := httpGet("http://" + admin + "/readyz")
			return code
		}).WithTimeout(60*time.Second).Should(Equal(200), func() string { return string(sc.Err.Contents()) })

		resp, body := call("GET", "http://"+proxy+"/platform/whoami", nil, nil)
		Expect(resp.StatusCode).To(Equal(http.StatusOK), body)
		Expect(up.last("/whoami").ClientCN).To(Equal("app-instance-1"))
		Expect(up.last("/whoami").Issuer).To(ContainSubstring("Diego Instance Identity Intermediate CA"))

		By("Diego rotating the instance identity")
		issue("app-instance-2")
		Eventually(func() string {
			resp, body := call("GET", "http://"+proxy+"/platform/whoami", nil, nil)
			Expect(resp.StatusCode).To(Equal(http.StatusOK), body)
			return up.last("/whoami").ClientCN
		}).WithTimeout(30 * time.Second).Should(Equal("app-instance-2"))
	})
})
