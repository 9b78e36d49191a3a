package sidecar_test

import (
	"fmt"
	"regexp"
	"runtime"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// The values a release build stamps with -ldflags -X (make build, make dist,
// make image and the Dockerfile do this from git).
const (
	stampVersion = "v9.8.7-e2e"
	stampCommit  = "0123456789abcdef0123456789abcdef01234567"
	stampDate    = "2026-01-02T03:04:05Z"
)

var _ = Describe("the version", Ordered, func() {
	var stamped string
	BeforeAll(func() {
		const pkg = "github.com/credbroker/credbroker/internal/buildinfo"
		var err error
		stamped, err = gexec.Build("github.com/credbroker/credbroker/cmd/credbroker", "-race", "-ldflags",
			fmt.Sprintf("-X %s.version=%s -X %s.commit=%s -X %s.date=%s", pkg, stampVersion, pkg, stampCommit, pkg, stampDate))
		Expect(err).NotTo(HaveOccurred(), "building a stamped credbroker")
	})

	It("prints the stamped version, commit and build time on one line, for `version` and `--version`", func() {
		want := fmt.Sprintf("credbroker %s (commit %s, built %s, %s)\n", stampVersion, stampCommit, stampDate, runtime.Version())
		for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
			s := harness.Start(stamped, nil, args...)
			Eventually(s).WithTimeout(30*time.Second).Should(gexec.Exit(0), "%v", args)
			Expect(string(s.Out.Contents())).To(Equal(want), "%v", args)
		}
	})

	It("says what it knows without stamping (a build in a worktree: no VCS data)", func() {
		s := harness.Start(bin, nil, "--version")
		Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		Expect(string(s.Out.Contents())).To(MatchRegexp(`^credbroker \S+ \(commit \S+, built \S+, go\S+\)\n$`))
	})

	It("exports credbroker_build_info with the stamped labels", func() {
		e := newEnv(mockauth.Options{})
		r := harness.StartSidecar(stamped, harness.SidecarOptions{Dir: e.dir, CAFile: e.caFile, VCAPFile: e.vcapFile},
			fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", e.up.url))
		line := regexp.MustCompile(`(?m)^credbroker_build_info\{.*\} 1$`)
		Eventually(func() string {
			_, body := httpGet(r.Admin + "/metrics")
			return line.FindString(body)
		}).WithTimeout(60*time.Second).Should(Equal(fmt.Sprintf(
			`credbroker_build_info{commit="%s",goversion="%s",version="%s"} 1`, stampCommit, runtime.Version(), stampVersion)),
			func() string { return string(r.Session.Err.Contents()) })
	})
})
