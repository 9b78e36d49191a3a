package harness

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

// BinEnv names a credbroker binary built with the race detector that the
// suites use instead of building their own: `make unit` and `make e2e` build
// it once for all suites.
const BinEnv = "CREDBROKER_E2E_BIN"

// Build returns the binary named by $CREDBROKER_E2E_BIN, or else compiles
// cmd/credbroker with the race detector and returns its path. Call it once
// per suite (BeforeSuite) and gexec.CleanupBuildArtifacts in AfterSuite.
func Build() string {
	if p := os.Getenv(BinEnv); p != "" {
		fi, err := os.Stat(p)
		Expect(err).NotTo(HaveOccurred(), "%s names a binary that is not there", BinEnv)
		Expect(fi.Mode().IsRegular()).To(BeTrue(), "%s=%s is not a file", BinEnv, p)
		return p
	}
	bin, err := gexec.Build("github.com/credbroker/credbroker/cmd/credbroker", "-race")
	Expect(err).NotTo(HaveOccurred(), "building credbroker")
	return bin
}

// Env is extra environment for a process. The process does not inherit
// CREDBROKER_*, VCAP_*, OTEL_* or SERVICE_BINDING_ROOT from the test's environment.
type Env map[string]string

// Command prepares the binary with args and env, output captured by Start.
func Command(bin string, env Env, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		k := kv[:strings.IndexByte(kv, '=')]
		if strings.HasPrefix(k, "CREDBROKER_") || strings.HasPrefix(k, "VCAP_") || strings.HasPrefix(k, "OTEL_") || k == "SERVICE_BINDING_ROOT" {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// Start runs the binary; output goes to the session buffers and the Ginkgo
// writer (shown for failed specs).
func Start(bin string, env Env, args ...string) *gexec.Session {
	s, err := gexec.Start(Command(bin, env, args...), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	return s
}

// FreePort returns a loopback TCP port that was free a moment ago, and
// never one it returned before in this process: a port picked and
// released can come back from the next pick (the proxy's and the admin's
// ports of one sidecar were the same, say). Another process may still take
// it before it is bound: start `credbroker run` through StartSidecar,
// StartSidecarWith or RetryTakenPort, which start again on new ports then.
func FreePort() int {
	freePorts.Lock()
	defer freePorts.Unlock()
	if freePorts.issued == nil {
		freePorts.issued = map[int]bool{}
	}
	var held []net.Listener // ports issued before: held so the next pick differs
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		port := l.Addr().(*net.TCPAddr).Port
		if !freePorts.issued[port] || len(held) >= 100 {
			l.Close()
			freePorts.issued[port] = true
			return port
		}
		held = append(held, l)
	}
}

var freePorts struct {
	sync.Mutex
	issued map[int]bool
}

// Secrets remembers every secret a spec planted so that all output can be
// checked for them. Safe for concurrent use.
type Secrets struct {
	mu   sync.Mutex
	vals map[string]string // value -> what it is
}

// Plant makes a unique, recognisable secret value, remembers it and returns it.
func (s *Secrets) Plant(what string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	v := "planted-" + strings.ReplaceAll(what, " ", "-") + "-" + hex.EncodeToString(b)
	s.Add(what, v)
	return v
}

// Add remembers a secret value that was made elsewhere (a key, an issued
// token). Values shorter than 8 bytes are refused: they would match by chance.
func (s *Secrets) Add(what, value string) {
	Expect(len(value)).To(BeNumerically(">=", 8), "secret %q too short to search for", what)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vals == nil {
		s.vals = map[string]string{}
	}
	s.vals[value] = what
}

// Found returns a description of every planted secret that occurs in any of
// outputs, also in escaped forms (JSON-escaped newlines, base64url-free
// substrings of long values).
func (s *Secrets) Found(outputs ...[]byte) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []string
	for v, what := range s.vals {
		needles := [][]byte{[]byte(v)}
		// A PEM key or long token may be printed partly or with escaped
		// newlines: search for a distinctive inner line as well.
		if lines := strings.Split(strings.TrimSpace(v), "\n"); len(lines) > 2 {
			needles = append(needles, []byte(lines[1]))
		}
		for i, out := range outputs {
			for _, n := range needles {
				if bytes.Contains(out, n) {
					found = append(found, fmt.Sprintf("%s found in output #%d", what, i))
				}
			}
		}
	}
	return found
}

// ExpectNotIn fails the spec when any planted secret occurs in outputs.
func (s *Secrets) ExpectNotIn(outputs ...[]byte) {
	GinkgoHelper()
	Expect(s.Found(outputs...)).To(BeEmpty(), "planted secrets leaked into output")
}

// ReadTree returns the contents of every regular file under dir except those
// whose base name is in skip (for example the private key file).
func ReadTree(dir string, skip ...string) [][]byte {
	var out [][]byte
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return nil
		}
		for _, s := range skip {
			if filepath.Base(path) == s {
				return nil
			}
		}
		if b, err := os.ReadFile(path); err == nil {
			out = append(out, b)
		}
		return nil
	})
	return out
}

// TestClockBinEnv names a credbroker binary built with the race detector
// and the build tag credbroker_testclock (`make e2e-bin` builds it beside
// the plain one) for the suites that move the clock of the binary.
const TestClockBinEnv = "CREDBROKER_E2E_TESTCLOCK_BIN"

// BuildTestClock returns the binary named by $CREDBROKER_E2E_TESTCLOCK_BIN,
// or else compiles cmd/credbroker with the race detector and the
// credbroker_testclock tag (internal/clock/testclock, docs/testing.md).
func BuildTestClock() string {
	if p := os.Getenv(TestClockBinEnv); p != "" {
		fi, err := os.Stat(p)
		Expect(err).NotTo(HaveOccurred(), "%s names a binary that is not there", TestClockBinEnv)
		Expect(fi.Mode().IsRegular()).To(BeTrue(), "%s=%s is not a file", TestClockBinEnv, p)
		return p
	}
	bin, err := gexec.Build("github.com/credbroker/credbroker/cmd/credbroker", "-race", "-tags", "credbroker_testclock")
	Expect(err).NotTo(HaveOccurred(), "building credbroker with the test clock")
	return bin
}
