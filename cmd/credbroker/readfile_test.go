package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/testenv"
)

// Flags that name a file refuse a FIFO at once (opening it would block until
// a writer appears, past SIGTERM) and a file larger than inputfile.MaxSize, with
// exit 2 and the flag named.
func TestInputFilesRefuseFIFOsAndHugeFiles(t *testing.T) {
	g := NewWithT(t)
	clearBindingsEnv(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		testenv.SkipOrFail(t, "mkfifo: %v", err)
	}
	huge := filepath.Join(dir, "huge")
	g.Expect(os.WriteFile(huge, make([]byte, inputfile.MaxSize+1), 0o600)).To(Succeed())
	tokURL := "https://connector.localhost:1/v1/applications/signingRequests/info?token=abcdefgh"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pair", "--token-url-file", fifo, "--cert-dir", dir}, "--token-url-file"},
		{[]string{"pair", "--token-url", tokURL, "--cert-dir", filepath.Join(dir, "c"), "--ca-file", fifo}, "--ca-file"},
		{[]string{"pair", "--token-url", tokURL, "--cert-dir", filepath.Join(dir, "c"), "--ca-file", huge}, "larger than"},
		{[]string{"token", "--vcap-file", bindingsExampleVCAP, "--ca-file", fifo}, "--ca-file " + fifo},
		{[]string{"token", "--vcap-file", bindingsExampleVCAP, "--grant", "jwt-bearer", "--assertion-file", fifo}, "--assertion-file " + fifo},
		{[]string{"token", "--vcap-file", bindingsExampleVCAP, "--grant", "jwt-bearer", "--assertion-file", huge}, "larger than"},
	} {
		type result struct {
			code     int
			out, err string
		}
		done := make(chan result, 1)
		go func() {
			code, out, errOut := runCmd(tc.args...)
			done <- result{code, out, errOut}
		}()
		var r result
		g.Eventually(done, 10*time.Second).Should(Receive(&r), "%v must not block", tc.args)
		g.Expect(r.code).To(Equal(2), "%v: %s", tc.args, r.err)
		g.Expect(r.err).To(ContainSubstring(tc.want), "%v", tc.args)
		g.Expect(r.out).To(BeEmpty())
	}
}

// A binding name with control bytes cannot forge table lines or drive the
// terminal: the table escapes it (the JSON output escapes it anyway).
func TestBindingsTableEscapesControlBytes(t *testing.T) {
	g := NewWithT(t)
	clearBindingsEnv(t)
	f := filepath.Join(t.TempDir(), "vcap.json")
	g.Expect(os.WriteFile(f, []byte(`{"xsuaa":[{"name":"evil\u001b[31m\r\nFORGED","label":"xsuaa\u0007","plan":"application",`+
		`"credentials":{"clientid":"c","clientsecret":"s3cret-value","url":"https://p.authentication.localhost"}}]}`), 0o600)).To(Succeed())
	code, out, _ := runCmd("bindings", "--vcap-file", f)
	g.Expect(code).To(Equal(0))
	g.Expect(out).NotTo(ContainSubstring("\x1b"))
	g.Expect(out).NotTo(ContainSubstring("\a"))
	g.Expect(out).NotTo(ContainSubstring("\r"))
	g.Expect(out).To(ContainSubstring(`evil\x1b[31m\r\nFORGED`))
	g.Expect(out).To(ContainSubstring(`xsuaa\a`))
	for _, line := range strings.Split(out, "\n") {
		g.Expect(line).NotTo(HavePrefix("FORGED"))
	}
}

// `run` refuses a FIFO as --config at once (it used to block in open,
// past SIGTERM) and a config file over inputfile.MaxSize.
func TestRunConfigMustBeASmallRegularFile(t *testing.T) {
	g := NewWithT(t)
	clearBindingsEnv(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		testenv.SkipOrFail(t, "mkfifo: %v", err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	g.Expect(os.WriteFile(huge, append([]byte("routes: []\n#"), make([]byte, inputfile.MaxSize)...), 0o600)).To(Succeed())
	for _, cfg := range []string{fifo, huge} {
		done := make(chan int, 1)
		var errOut string
		go func() {
			code, _, e := runCmd("run", "--config", cfg, "--vcap-file", bindingsExampleVCAP, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
			errOut = e
			done <- code
		}()
		var code int
		g.Eventually(done, 10*time.Second).Should(Receive(&code), "%s must not block", cfg)
		g.Expect(code).To(Equal(2), errOut)
		g.Expect(errOut).To(ContainSubstring("--config " + cfg))
	}
}
