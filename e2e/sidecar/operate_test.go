package sidecar_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// Issue 18: the first error message an operator sees names what to fix.
var _ = Describe("operator-facing errors and help", func() {
	runExit := func(env harness.Env, args ...string) string {
		GinkgoHelper()
		s := harness.Start(bin, env, args...)
		Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit(2))
		return string(s.Err.Contents())
	}

	It("names the environment variable and the value it wants, not the Go field", func() {
		out := runExit(harness.Env{"CREDBROKER_ALLOW_NON_LOOPBACK": "yes"}, "run")
		Expect(out).To(ContainSubstring(`CREDBROKER_ALLOW_NON_LOOPBACK: want true/false, got "yes"`))
		Expect(out).NotTo(ContainSubstring("AllowNonLoopback"))
		out = runExit(harness.Env{"CREDBROKER_POLL_INTERVAL": "20"}, "run")
		Expect(out).To(ContainSubstring(`CREDBROKER_POLL_INTERVAL: want a duration with a unit, such as 20s, got "20"`))
	})

	It("names the key of a YAML duration without a unit and shows the fix", func() {
		dir := GinkgoT().TempDir()
		cfg := filepath.Join(dir, "c.yaml")
		Expect(os.WriteFile(cfg, []byte("drain_timeout: 20\ntimeouts: {dial: 5}\n"), 0o600)).To(Succeed())
		out := runExit(nil, "run", "--config", cfg)
		Expect(out).To(ContainSubstring("line 1: drain_timeout: invalid value: want a duration with a unit: 20s, not 20"))
		Expect(out).To(ContainSubstring("line 2: timeouts.dial: invalid value: want a duration with a unit: 5s, not 5"))
	})

	It("blames a refused listen address on the variable or flag that set it, not on the config file", func() {
		dir := GinkgoT().TempDir()
		cfg := filepath.Join(dir, "c.yaml")
		Expect(os.WriteFile(cfg, []byte("listen: 127.0.0.1:8411\n"), 0o600)).To(Succeed())
		out := runExit(harness.Env{"CREDBROKER_LISTEN": "0.0.0.0:8411"}, "run", "--config", cfg)
		Expect(out).To(ContainSubstring(`sidecar: CREDBROKER_LISTEN: listen address is not loopback`))
		Expect(out).NotTo(ContainSubstring("c.yaml"))
		out = runExit(nil, "run", "--config", cfg, "--admin-listen", "0.0.0.0:9411")
		Expect(out).To(ContainSubstring(`sidecar: --admin-listen: listen address is not loopback`))
	})

	It("accepts every spelling of a grant in a route", func() {
		e := newEnv(mockauth.Options{})
		sc := e.startSidecar(fmt.Sprintf(`
routes:
  - {name: a, upstream: %s/a, auth: {type: bearer, binding: xsuaa-secret, grant: client-credentials}}
  - {name: b, upstream: %s/b, auth: {type: bearer, binding: xsuaa-secret, grant: jwt_bearer}}
  - {name: c, upstream: %s/c, auth: {type: bearer, binding: xsuaa-secret, grant: "urn:ietf:params:oauth:grant-type:jwt-bearer"}}
`, e.up.url, e.up.url, e.up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		code, body := httpGet(sc.proxy + "/a/x")
		Expect(code).To(Equal(200), body)

		// credbroker token takes the same spellings: jwt_bearer is jwt-bearer
		// (and so asks for its assertion), refresh-token is refresh_token.
		vcap := harness.Env{"CREDBROKER_VCAP_FILE": e.vcapFile}
		Expect(runExit(vcap, "token", "--grant", "jwt_bearer")).To(ContainSubstring("--grant jwt-bearer needs --assertion"))
		Expect(runExit(vcap, "token", "--grant", "refresh-token")).To(ContainSubstring("--grant refresh_token needs"))
	})

	It("shows --flag in help, lists every flag in the usage line, and completes commands and flags in bash", func() {
		s := harness.Start(bin, nil, "token", "--help")
		Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		help := string(s.Out.Contents())
		Expect(help).To(ContainSubstring("\n  --grant string\n"))
		Expect(help).NotTo(MatchRegexp(`(?m)^  -[a-z]`))
		Expect(help).To(MatchRegexp(`(?m)^Usage: credbroker token .*\[--timeout D\]`))

		bash, err := exec.LookPath("bash")
		if err != nil {
			Skip("no bash on this machine")
		}
		complete := func(words ...string) []string {
			quoted := make([]string, len(words))
			for i, w := range words {
				quoted[i] = fmt.Sprintf("%q", w)
			}
			script := fmt.Sprintf(`source <(%q completion bash) && COMP_WORDS=(%s) && COMP_CWORD=%d && _credbroker && printf '%%s\n' "${COMPREPLY[@]}"`,
				bin, strings.Join(quoted, " "), len(words)-1)
			out, err := harness.Command(bash, nil, "--norc", "-c", script).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
			return strings.Fields(string(out))
		}
		Expect(complete("credbroker", "to")).To(Equal([]string{"token"}))
		Expect(complete("credbroker", "token", "--gr")).To(Equal([]string{"--grant"}))
		Expect(complete("credbroker", "token", "--grant", "jwt")).To(Equal([]string{"jwt-bearer"}))
		Expect(complete("credbroker", "run", "--allow")).To(Equal([]string{"--allow-non-loopback"}))
		Expect(complete("credbroker", "completion", "")).To(ConsistOf("bash", "zsh", "fish"))
	})
})
