package harness

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

// Sidecar is a `credbroker run` process started by StartSidecar.
type Sidecar struct {
	Session *gexec.Session
	Config  string // the config file
	ProxyHP string // 127.0.0.1:PORT of the proxy listener
	Proxy   string // http://ProxyHP
	Admin   string // http://127.0.0.1:PORT of the admin listener
}

// SidecarOptions say how StartSidecar runs `credbroker run`.
type SidecarOptions struct {
	Dir      string   // where the config file is written
	CAFile   string   // the ca_file: of the config
	VCAPFile string   // --vcap-file
	Args     []string // more arguments
	Env      Env      // more environment
	// AfterExit runs at the end of the spec once the process has exited
	// (for example to scan everything it printed).
	AfterExit func(*Sidecar)
}

// StartSidecar writes config with listen and admin_listen (free loopback
// ports) and ca_file prepended, and starts `credbroker run` on it with the
// bindings of o.VCAPFile, JSON logs at debug level (the most there is to
// leak) and a 1 s poll interval. It does not wait for the listeners. When
// the spec ends the process gets SIGTERM and must exit within 40 s; then
// o.AfterExit runs.
func StartSidecar(bin string, o SidecarOptions, config string) *Sidecar {
	GinkgoHelper()
	return StartSidecarWith(bin, o, func() string { return config })
}

// StartSidecarWith is StartSidecar for a config that has ports of its own
// (an inbound listener, say): config picks them with FreePort, and is
// called again for new ones whenever the start is made again on new ports.
func StartSidecarWith(bin string, o SidecarOptions, config func() string) *Sidecar {
	GinkgoHelper()
	var sc *Sidecar
	RetryTakenPort(func() *gexec.Session {
		sc = startSidecarOnce(bin, o, config())
		return sc.Session
	})
	DeferCleanup(func() {
		sc.Session.Terminate()
		Eventually(sc.Session).WithTimeout(40 * time.Second).Should(gexec.Exit())
		if o.AfterExit != nil {
			o.AfterExit(sc)
		}
	})
	return sc
}

// RetryTakenPort calls start, which picks its ports with FreePort and
// starts `credbroker run` on them, and calls it again (five times at most)
// when the process exited saying "address already in use": FreePort's
// ports are free when it picks them, not for sure when the process binds
// them (another package's test may take one in between). It returns the
// last session. Anything else is the spec's to see: the look is short (3 s,
// until the process listens or exits) and never fails the spec, so a
// process that binds later (after pairing, or waiting for an API server) is
// left to the spec as it is.
func RetryTakenPort(start func() *gexec.Session) *gexec.Session {
	GinkgoHelper()
	for attempt := 1; ; attempt++ {
		s := start()
		_ = InterceptGomegaFailures(func() {
			Eventually(func() bool {
				return s.ExitCode() != -1 || bytes.Contains(s.Err.Contents(), []byte("credbroker sidecar listening"))
			}).WithTimeout(3 * time.Second).Should(BeTrue())
		})
		if attempt < 5 && s.ExitCode() != -1 && bytes.Contains(s.Err.Contents(), []byte("address already in use")) {
			fmt.Fprintf(GinkgoWriter, "harness: a port was taken before credbroker bound it (attempt %d); starting again on new ports\n", attempt)
			continue
		}
		return s
	}
}
func startSidecarOnce(bin string, o SidecarOptions, config string) *Sidecar {
	GinkgoHelper()
	lp, ap := FreePort(), FreePort()
	sc := &Sidecar{ProxyHP: fmt.Sprintf("127.0.0.1:%d", lp), Admin: fmt.Sprintf("http://127.0.0.1:%d", ap)}
	sc.Proxy = "http://" + sc.ProxyHP
	sc.Config = filepath.Join(o.Dir, fmt.Sprintf("credbroker-%d.yaml", lp))
	full := fmt.Sprintf("listen: 127.0.0.1:%d\nadmin_listen: 127.0.0.1:%d\nca_file: %s\n%s", lp, ap, o.CAFile, config)
	Expect(os.WriteFile(sc.Config, []byte(full), 0o600)).To(Succeed())
	args := []string{"run", "--config", sc.Config, "--vcap-file", o.VCAPFile, "--log-format", "json", "--log-level", "debug"}
	env := Env{"CREDBROKER_POLL_INTERVAL": "1s"}
	for k, v := range o.Env {
		env[k] = v
	}
	sc.Session = Start(bin, env, append(args, o.Args...)...)
	return sc
}
