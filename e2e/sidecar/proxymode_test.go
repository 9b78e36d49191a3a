package sidecar_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// docBlock is one fenced code block of a document: its info string and text.
type docBlock struct{ info, text string }

var reFence = regexp.MustCompile("(?ms)^```([^\\n]*)\\n(.*?)^```\\s*$")

func docBlocks(path string) []docBlock {
	GinkgoHelper()
	raw, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	var out []docBlock
	for _, m := range reFence.FindAllStringSubmatch(string(raw), -1) {
		out = append(out, docBlock{info: strings.TrimSpace(m[1]), text: m[2]})
	}
	return out
}

// nodeAtLeast reports whether the node on PATH is at least major.minor.
func nodeAtLeast(major, minor int) bool {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "v%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// Issue 18: docs/proxy-mode.md says per runtime how to point an unmodified
// app at credbroker. Every `sh e2e` block of it runs here verbatim, but for
// the listener address and the upstream host, against credbroker run, the
// mock and the recording upstream, which must see the route's bearer token.
var _ = Describe("proxy-mode docs", func() {
	It("every documented command reaches the upstream through credbroker with the credential", func() {
		e := newEnv(mockauth.Options{})
		sc := e.startSidecar(fmt.Sprintf("routes:\n  - {name: orders, upstream: %s, auth: {type: bearer, binding: xsuaa-secret}}\n", e.up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))

		dir := GinkgoT().TempDir()
		port := sc.proxyHP[strings.LastIndexByte(sc.proxyHP, ':')+1:]
		subst := strings.NewReplacer(
			"127.0.0.1:8411", sc.proxyHP,
			"-Dhttp.proxyPort=8411", "-Dhttp.proxyPort="+port,
			"port: 8411", "port: "+port,
			"orders.example.com", e.up.host,
		)
		blocks := docBlocks("../../docs/proxy-mode.md")
		for _, b := range blocks {
			if name, ok := strings.CutPrefix(strings.Join(strings.Fields(b.info)[1:], " "), "file="); ok {
				Expect(os.WriteFile(filepath.Join(dir, name), []byte(b.text), 0o644)).To(Succeed())
			}
		}
		// python3 with requests: the one on PATH, else Debian's (python3-requests).
		path := os.Getenv("PATH")
		hasRequests := exec.Command("python3", "-c", "import requests").Run() == nil
		if !hasRequests && exec.Command("python3", "-c", "import requests").Run() != nil && exec.Command("/usr/bin/python3", "-c", "import requests").Run() == nil {
			bindir := GinkgoT().TempDir()
			Expect(os.Symlink("/usr/bin/python3", filepath.Join(bindir, "python3"))).To(Succeed())
			path = bindir + string(os.PathListSeparator) + path
			hasRequests = true
		}
		ran := 0
		for _, b := range blocks {
			kind := strings.Fields(b.info + " x")[0]
			rest := strings.Fields(b.info + " x")[1]
			if kind != "sh" || !strings.HasPrefix(rest, "e2e") {
				continue
			}
			from := regexp.MustCompile(`from=([a-z0-9-]+)`).FindStringSubmatch(b.text)
			Expect(from).NotTo(BeNil(), "a tested block names its caller with ?from=: %s", b.text)
			runtime := map[string]string{"curl": "curl", "java": "java", "node": "node", "python": "python3", "go": "go"}[strings.SplitN(from[1], "-", 2)[0]]
			if _, err := exec.LookPath(runtime); err != nil {
				AddReportEntry("skipped (no " + runtime + " on this machine): " + from[1])
				continue
			}
			if strings.Contains(b.text, "import requests") && !hasRequests {
				AddReportEntry("skipped (no python3 with requests on this machine): " + from[1])
				continue
			}
			if rest == "e2e-node22" && !nodeAtLeast(22, 21) {
				AddReportEntry("skipped (node older than 22.21 on this machine): " + from[1])
				continue
			}
			before := e.up.count("/api/items")
			cmd := harness.Command("bash", harness.Env{"PATH": path}, "-euc", subst.Replace(b.text))
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%s\n%s", b.text, out)
			Expect(e.up.count("/api/items")).To(Equal(before+1), "the upstream saw the call of %s", from[1])
			r := e.up.last("/api/items")
			Expect(r.Query).To(Equal("from=" + from[1]))
			Expect(claims(r.Header.Get("Authorization"))["client_id"]).To(Equal(e.mock.Info().SecretClientID), "%s: the route's bearer token arrived", from[1])
			ran++
		}
		AddReportEntry("documented proxy-mode commands run: " + strconv.Itoa(ran))
		Expect(ran).To(BeNumerically(">=", 6))
	})
})
