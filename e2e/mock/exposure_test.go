package mock_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

// Issue 15 item 14: the mock gives credentials away, so it says so and
// stays on loopback unless told otherwise.
var _ = Describe("credbroker mock exposure", func() {
	It("prints a loud test-server warning before anything else", func() {
		dir := filepath.Join(GinkgoT().TempDir(), "mock")
		s := harness.Start(bin, nil, "mock", "--dir", dir)
		DeferCleanup(func() {
			s.Terminate()
			Eventually(s).WithTimeout(20 * time.Second).Should(gexec.Exit())
		})
		Eventually(func() error { _, err := os.Stat(filepath.Join(dir, "mock.json")); return err }).WithTimeout(60 * time.Second).Should(Succeed())
		Eventually(s.Out).Should(gbytes.Say("running"))
		first, _, _ := strings.Cut(string(s.Out.Contents()), "\n")
		Expect(first).To(ContainSubstring("TEST SERVER — NEVER EXPOSE"), "the first line of stdout")
		Expect(string(s.Err.Contents())).To(ContainSubstring("never expose"), "and the log says it too")
		var info struct {
			AdminURL string `json:"admin_url"`
		}
		raw, err := os.ReadFile(filepath.Join(dir, "mock.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(raw, &info)).To(Succeed())
		Expect(info.AdminURL).To(HavePrefix("http://127.0.0.1:"), "loopback by default")
	})

	DescribeTable("refuses a listen address beyond loopback without --allow-non-loopback (exit 2)",
		func(host string) {
			dir := filepath.Join(GinkgoT().TempDir(), "mock")
			s := harness.Start(bin, nil, "mock", "--dir", dir, "--listen-host", host)
			Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit(2))
			Expect(string(s.Err.Contents())).To(And(ContainSubstring("not loopback"), ContainSubstring("--allow-non-loopback")))
			_, err := os.Stat(filepath.Join(dir, "mock.json"))
			Expect(os.IsNotExist(err)).To(BeTrue(), "nothing was served or written")
		},
		Entry("all interfaces", "0.0.0.0"),
		Entry("all IPv6 interfaces", "::"),
		Entry("a LAN address", "192.0.2.10"),
	)

	It("listens on another loopback address when asked", func() {
		dir := filepath.Join(GinkgoT().TempDir(), "mock")
		s := harness.Start(bin, nil, "mock", "--dir", dir, "--listen-host", "127.0.0.1")
		DeferCleanup(func() {
			s.Terminate()
			Eventually(s).WithTimeout(20 * time.Second).Should(gexec.Exit())
		})
		Eventually(func() error { _, err := os.Stat(filepath.Join(dir, "mock.json")); return err }).WithTimeout(60 * time.Second).Should(Succeed())
	})
})
