package sidecar_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// Issue 18: the Cloud Foundry recipe (examples/cloudfoundry, docs/cloudfoundry.md)
// run as Cloud Foundry would run it: the manifest's sidecar command verbatim in
// an app directory, bindings in VCAP_SERVICES, and the app's .profile waiting
// for readiness. Only the ports, the upstream and the binding name are this
// machine's.
var _ = Describe("the Cloud Foundry recipe", func() {
	It("answers 503 with the reason before it is ready, and .profile waits until it is", func() {
		e := newEnv(mockauth.Options{})
		Expect(e.mock.AddFault(mockauth.Fault{Target: "token", Status: http.StatusServiceUnavailable})).To(Succeed())

		example := "../../examples/cloudfoundry"
		raw, err := os.ReadFile(filepath.Join(example, "manifest.yml"))
		Expect(err).NotTo(HaveOccurred())
		var m struct {
			Applications []struct {
				Sidecars []struct {
					Command string `yaml:"command"`
				} `yaml:"sidecars"`
			} `yaml:"applications"`
		}
		Expect(yaml.Unmarshal(raw, &m)).To(Succeed())
		command := m.Applications[0].Sidecars[0].Command

		// Ports picked again when one was taken before credbroker bound it.
		var proxy, admin, app string
		harness.RetryTakenPort(func() *gexec.Session {
			lp, ap := harness.FreePort(), harness.FreePort()
			proxy, admin = fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap)
			subst := strings.NewReplacer("127.0.0.1:8411", proxy, "127.0.0.1:9411", admin,
				"https://orders.example.com", e.up.url, "binding: my-xsuaa", "binding: xsuaa-secret")
			app = GinkgoT().TempDir()
			Expect(os.MkdirAll(filepath.Join(app, "credbroker"), 0o755)).To(Succeed())
			Expect(os.Symlink(bin, filepath.Join(app, "credbroker", "credbroker"))).To(Succeed())
			for _, f := range []string{"credbroker/credbroker.yaml", ".profile"} {
				b, err := os.ReadFile(filepath.Join(example, f))
				Expect(err).NotTo(HaveOccurred())
				Expect(os.WriteFile(filepath.Join(app, f), []byte(subst.Replace(string(b))), 0o644)).To(Succeed())
			}

			// bash runs a simple command by exec, so SIGTERM reaches credbroker.
			sidecarCmd := harness.Command("bash", harness.Env{
				"VCAP_SERVICES":      string(e.mock.VCAPServices()),
				"CREDBROKER_CA_FILE": e.caFile, // Cloud Foundry: the system roots
			}, "-c", command)
			sidecarCmd.Dir = app
			s, err := gexec.Start(sidecarCmd, GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() {
				s.Terminate()
				Eventually(s).WithTimeout(40 * time.Second).Should(gexec.Exit())
				e.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
			})
			return s
		})

		// Listening but not ready: the route answers 503 with the reason.
		var resp *http.Response
		var body string
		Eventually(func() int {
			code, _ := httpGet("http://" + admin + "/healthz")
			return code
		}).WithTimeout(30 * time.Second).Should(Equal(200))
		resp, body = call("GET", "http://"+proxy+"/orders/items", nil, nil)
		Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
		Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("token-unavailable"))
		Expect(body).To(ContainSubstring("route orders: no valid token for binding xsuaa-secret"))
		code, ready := httpGet("http://" + admin + "/readyz")
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		Expect(ready).To(HavePrefix("not ready:"))

		// The app's .profile waits while credbroker is not ready ...
		profile := harness.Command("sh", nil, "-c", ". ./.profile && echo app-starts")
		profile.Dir = app
		ps, err := gexec.Start(profile, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { ps.Kill() })
		Consistently(ps).WithTimeout(2 * time.Second).ShouldNot(gexec.Exit())

		// ... and lets the app start once it is.
		e.mock.ClearFaults()
		Eventually(ps).WithTimeout(60 * time.Second).Should(gexec.Exit(0))
		Expect(string(ps.Out.Contents())).To(ContainSubstring("app-starts"))
		Expect(string(ps.Err.Contents())).NotTo(ContainSubstring("not ready after"))
		code, _ = httpGet("http://" + admin + "/readyz")
		Expect(code).To(Equal(200))
		resp, body = call("GET", "http://"+proxy+"/orders/items", nil, nil)
		Expect(resp.StatusCode).To(Equal(200), body)
		Expect(claims(e.up.last("/items").Header.Get("Authorization"))["client_id"]).To(Equal(e.mock.Info().SecretClientID))
	})
})
