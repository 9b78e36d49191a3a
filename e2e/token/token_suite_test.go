// Package token_test drives the built credbroker binary's `token` command
// against `credbroker mock --dir`: secret and x509 bindings, tenants by
// subdomain and by zone, the user grants, exit code 2 for bad input and 1 for
// refusals, and that no planted secret (client secret, assertion, issued
// token) ever reaches stderr.
package token_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var (
	bin     string
	mockDir string
	mock    mockInfo
)

// mockInfo is the part of mock.json the specs use.
type mockInfo struct {
	URL       string `json:"url"`
	CertURL   string `json:"certurl"`
	AdminURL  string `json:"admin_url"`
	UAADomain string `json:"uaadomain"`
	Tenants   []struct {
		Subdomain string `json:"subdomain"`
		ZoneID    string `json:"zone_id"`
	} `json:"tenants"`
	SecretBinding string `json:"secret_binding"`
	X509Binding   string `json:"x509_binding"`
	IASBinding    string `json:"ias_binding"`
}

func TestToken(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker token")
}

var _ = BeforeSuite(func() {
	bin = harness.Build()
	mockDir = filepath.Join(GinkgoT().TempDir(), "mock")
	session := harness.Start(bin, nil, "mock", "--dir", mockDir, "--token-ttl", "10m")
	DeferCleanup(func() {
		session.Terminate()
		Eventually(session).WithTimeout(20 * time.Second).Should(gexec.Exit())
	})
	Eventually(func() error {
		raw, err := os.ReadFile(filepath.Join(mockDir, "mock.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, &mock)
	}).WithTimeout(60 * time.Second).Should(Succeed())
	Expect(len(mock.Tenants)).To(BeNumerically(">=", 2))
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})
