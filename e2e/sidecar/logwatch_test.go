package sidecar_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

var _ = Describe("credbroker run with its log file beside the config", func() {
	It("does not take its own log writes for config changes", func() {
		e := newEnv(mockauth.Options{})
		lp, ap := harness.FreePort(), harness.FreePort()
		cfg := e.write("config.yaml", []byte(fmt.Sprintf(
			"listen: 127.0.0.1:%d\nadmin_listen: 127.0.0.1:%d\nca_file: %s\nroutes:\n  - {name: public, upstream: %s/public, auth: {type: none}}\n",
			lp, ap, e.caFile, e.up.url)))
		logPath := filepath.Join(filepath.Dir(cfg), "credbroker.log")
		logFile, err := os.Create(logPath)
		Expect(err).NotTo(HaveOccurred())
		defer logFile.Close()
		cmd := harness.Command(bin, harness.Env{"CREDBROKER_POLL_INTERVAL": "1s"},
			"run", "--config", cfg, "--vcap-file", e.vcapFile, "--log-format", "json", "--log-level", "debug")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		admin := fmt.Sprintf("http://127.0.0.1:%d", ap)
		Eventually(func() int { c, _ := httpGet(admin + "/readyz"); return c }).WithTimeout(60 * time.Second).Should(Equal(200))

		changes := func() int {
			data, _ := os.ReadFile(logPath)
			return bytes.Count(data, []byte("watched file changed"))
		}
		// Each log write is an event in the config's directory; before the
		// fix each event was logged at debug level, which was another event:
		// a loop of thousands of lines a second.
		Consistently(changes).WithTimeout(3 * time.Second).WithPolling(250 * time.Millisecond).Should(BeZero())

		// A change to the config itself is still seen.
		data, err := os.ReadFile(cfg)
		Expect(err).NotTo(HaveOccurred())
		tmp := cfg + ".tmp"
		Expect(os.WriteFile(tmp, append(data, []byte("# touched\n")...), 0o600)).To(Succeed())
		Expect(os.Rename(tmp, cfg)).To(Succeed())
		Eventually(changes).WithTimeout(30 * time.Second).Should(BeNumerically(">", 0))
		Consistently(changes).WithTimeout(2 * time.Second).WithPolling(250 * time.Millisecond).Should(BeNumerically("<", 20))
	})
})
