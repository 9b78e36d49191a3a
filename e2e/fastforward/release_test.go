package fastforward_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/clock/testclock"
)

// mockTokenIAT starts `credbroker mock` of binary b with the test clock at
// path, fetches a token with `credbroker token` and returns its iat.
func mockTokenIAT(b, path string) time.Time {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	m := harness.Start(b, harness.Env{testclock.Env: path}, "mock", "--dir", dir)
	DeferCleanup(func() { m.Terminate(); Eventually(m).WithTimeout(30 * time.Second).Should(gexec.Exit()) })
	Eventually(func() error { _, err := os.Stat(filepath.Join(dir, "mock.json")); return err }).WithTimeout(60 * time.Second).Should(Succeed())
	t := harness.Start(b, harness.Env{"CREDBROKER_VCAP_FILE": filepath.Join(dir, "vcap.json")}, "token", "--ca-file", filepath.Join(dir, "ca.crt"))
	Eventually(t).WithTimeout(60 * time.Second).Should(gexec.Exit(0))
	parts := strings.Split(strings.TrimSpace(string(t.Out.Contents())), ".")
	Expect(parts).To(HaveLen(3))
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	Expect(err).NotTo(HaveOccurred())
	var c struct {
		IAT int64 `json:"iat"`
	}
	Expect(json.Unmarshal(raw, &c)).To(Succeed())
	return time.Unix(c.IAT, 0)
}

func nm(b string) []byte {
	GinkgoHelper()
	out, err := exec.Command("go", "tool", "nm", b).Output()
	Expect(err).NotTo(HaveOccurred())
	return out
}

// The test clock is selected by a build tag: the suites' binary has it and
// obeys it (here `credbroker mock`), a build without the tag has no trace
// of it and ignores the variable. make dist is checked the same way by the
// release test (internal/tools/release/dist: no tag, no package, no name).
var _ = Describe("the test clock build tag", func() {
	It("is in the test build only: symbols, the variable's name and behaviour", func() {
		plain := harness.Build() // the suites' binary without the tag ($CREDBROKER_E2E_BIN)
		const pkg = "internal/clock/testclock."
		Expect(bytes.Contains(nm(bin), []byte(pkg))).To(BeTrue(), "the tagged binary links the test clock")
		Expect(bytes.Contains(nm(plain), []byte(pkg))).To(BeFalse(), "a build without the tag links the test clock")
		tagged, err := os.ReadFile(bin)
		Expect(err).NotTo(HaveOccurred())
		untagged, err := os.ReadFile(plain)
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Contains(tagged, []byte(testclock.Env))).To(BeTrue())
		Expect(bytes.Contains(untagged, []byte(testclock.Env))).To(BeFalse(), "a build without the tag knows the variable")

		ctl, err := testclock.Create(filepath.Join(GinkgoT().TempDir(), "clock"))
		Expect(err).NotTo(HaveOccurred())
		ctl.Jump(48 * time.Hour)
		Expect(mockTokenIAT(bin, ctl.Path())).To(BeTemporally("~", ctl.Now(), time.Minute), "the test build's mock issues on the test clock")
		Expect(mockTokenIAT(plain, ctl.Path())).To(BeTemporally("~", time.Now(), time.Minute), "a build without the tag ignores it")
	})
})

var _ = Describe("credbroker mock --connector-ca-rotation", func() {
	It("serves the rotation control only when asked to", func() {
		for _, on := range []bool{false, true} {
			dir := GinkgoT().TempDir()
			args := []string{"mock", "--dir", dir}
			if on {
				args = append(args, "--connector-ca-rotation")
			}
			m := harness.Start(bin, nil, args...)
			DeferCleanup(func() { m.Terminate(); Eventually(m).WithTimeout(30 * time.Second).Should(gexec.Exit()) })
			var info struct {
				AdminURL string `json:"admin_url"`
			}
			Eventually(func() error {
				b, err := os.ReadFile(filepath.Join(dir, "mock.json"))
				if err != nil {
					return err
				}
				return json.Unmarshal(b, &info)
			}).WithTimeout(60 * time.Second).Should(Succeed())
			resp, err := client.Post(info.AdminURL+"/mock/connector-ca", "application/json", strings.NewReader(`{"step":"add"}`))
			Expect(err).NotTo(HaveOccurred())
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !on {
				Expect(resp.StatusCode).To(Equal(http.StatusNotFound))
				continue
			}
			Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
			Expect(bytes.Count(body, []byte("BEGIN CERTIFICATE"))).To(Equal(2), "old and new CA trusted")
		}
	})
})
