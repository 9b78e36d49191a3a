// Package interop_test proves that `credbroker mock` serves clients in other
// languages the way the real XSUAA does: a Node client (jose) and a Python
// client (PyJWT, Debian's python3-jwt, run with /usr/bin/python3) follow
// docs/testing.md — the mock on port 443 with --hosts-file, names resolved
// from that file inside the client's own process — fetch a token with the
// client secret and one with the x509 binding, and validate signature,
// issuer and audience through the JWKS at https://{uaadomain}/token_keys,
// checking that the token's jku host lies under uaadomain.
//
// The clients come from scripts/interop-deps.sh (make interop-deps). `make
// unit` runs it and sets CREDBROKER_INTEROP=1: then missing clients or a
// process that may not bind port 443 fail the suite; without it they skip
// it.
package interop_test

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestInterop(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "interop: Node and Python clients of credbroker mock")
}

var _ = BeforeSuite(func() {
	required := os.Getenv("CREDBROKER_INTEROP") == "1"
	skipOrFail := func(why string) {
		if required {
			Fail(why + " (CREDBROKER_INTEROP=1)")
		}
		Skip(why + "; set CREDBROKER_INTEROP=1 to require it")
	}
	if _, err := os.Stat("node/node_modules/jose/package.json"); err != nil {
		skipOrFail("jose is not installed: run scripts/interop-deps.sh")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import jwt, requests").Run(); err != nil {
		skipOrFail("/usr/bin/python3 cannot import jwt and requests: run scripts/interop-deps.sh")
	}
	if _, err := exec.LookPath("node"); err != nil {
		skipOrFail("node is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.6:443")
	if err == nil {
		ln.Close()
	} else if !errors.Is(err, syscall.EADDRINUSE) { // in use: by another mock, the permission is there
		skipOrFail("this process may not bind port 443 (root or CAP_NET_BIND_SERVICE): " + err.Error())
	}
	bin = harness.Build()
})

// startMock runs `credbroker mock --port443 on` as docs/testing.md says,
// again while a mock of a parallel suite holds port 443 (it then exits).
func startMock(dir string) {
	GinkgoHelper()
	Eventually(func() error {
		os.RemoveAll(dir)
		s := harness.Start(bin, nil, "mock", "--dir", dir, "--hosts-file", filepath.Join(dir, "hosts"), "--port443", "on")
		DeferCleanup(func() {
			s.Terminate()
			Eventually(s).WithTimeout(20 * time.Second).Should(gexec.Exit())
		})
		// hosts is written after mock.json: both are there once it is.
		Eventually(func() bool {
			_, err := os.Stat(filepath.Join(dir, "hosts"))
			return err == nil || s.ExitCode() != -1
		}).WithTimeout(60 * time.Second).Should(BeTrue())
		if s.ExitCode() == 2 {
			return StopTrying("credbroker mock refused its arguments: " + string(s.Err.Contents()))
		}
		if s.ExitCode() != -1 {
			return errors.New("credbroker mock --port443 on exited: " + string(s.Err.Contents()))
		}
		return nil
	}).WithTimeout(2 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
}

var _ = Describe("a token of credbroker mock on port 443", Ordered, func() {
	// One mock for every spec: they only read from it (the one-time
	// pairing URL is used once).
	var dir string
	BeforeAll(func() {
		dir = filepath.Join(GinkgoT().TempDir(), "mock")
		startMock(dir)
	})

	DescribeTable("validates in a client of another language through the JWKS uaadomain points to",
		func(prefix string, cmd ...string) {
			c := exec.Command(cmd[0], append(cmd[1:], dir)...)
			out, err := c.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
			for _, b := range []string{"xsuaa-secret", "xsuaa-x509"} {
				Expect(string(out)).To(ContainSubstring(prefix+": "+b+": valid RS256 token from https://authentication.localhost: iss=https://provider.authentication.localhost/oauth/token"), string(out))
			}
			By("printing neither a secret nor a token")
			raw, err := os.ReadFile(filepath.Join(dir, "vcap.json"))
			Expect(err).NotTo(HaveOccurred())
			var vcap map[string][]struct {
				Credentials map[string]any `json:"credentials"`
			}
			Expect(json.Unmarshal(raw, &vcap)).To(Succeed())
			var secrets harness.Secrets
			for _, b := range vcap["xsuaa"] {
				for _, k := range []string{"clientsecret", "key"} {
					if v, ok := b.Credentials[k].(string); ok {
						secrets.Add(k, v)
					}
				}
			}
			secrets.ExpectNotIn(out)
			Expect(string(out)).NotTo(ContainSubstring("eyJ"), "no JWT in the output")
		},
		Entry("Node, jose", "node jose", "node", "node/validate.mjs"),
		Entry("Python, PyJWT", "python pyjwt", "/usr/bin/python3", "python/validate.py"),
	)

	It("serves credbroker's own clients, which dial its names on port 443 to the role addresses", func() {
		ca := filepath.Join(dir, "ca.crt")
		for _, b := range []string{"xsuaa-secret", "xsuaa-x509"} {
			t := harness.Start(bin, nil, "token", "--vcap-file", filepath.Join(dir, "vcap.json"), "--binding", b, "--ca-file", ca, "--json")
			Eventually(t).WithTimeout(60*time.Second).Should(gexec.Exit(0), b)
			var o map[string]any
			Expect(json.Unmarshal(t.Out.Contents(), &o)).To(Succeed())
			Expect(o["token_url"]).To(MatchRegexp(`^https://provider\.authentication(\.cert)?\.localhost/oauth/token$`), b)
		}
		certDir := filepath.Join(GinkgoT().TempDir(), "pair")
		p := harness.Start(bin, nil, "pair", "--token-url-file", filepath.Join(dir, "pairing-url"), "--cert-dir", certDir, "--ca-file", ca)
		Eventually(p).WithTimeout(60 * time.Second).Should(gexec.Exit(0))
		raw, err := os.ReadFile(filepath.Join(certDir, "connection.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(raw)).To(ContainSubstring(`"https://gateway.localhost/`), "the gateway URLs carry no port")
	})
})
