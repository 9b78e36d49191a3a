package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/sidecar"
)

// cfExample is the Cloud Foundry recipe of docs/cloudfoundry.md.
const cfExample = "../../examples/cloudfoundry"

// TestCloudFoundryManifest checks the example manifest against the real
// command line: its sidecar command is parsed by the CLI's own flag set, the
// files it names exist in the example, the config parses, and the ports the
// app is given (JAVA_OPTS, the .profile readiness wait) are the config's.
func TestCloudFoundryManifest(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join(cfExample, "manifest.yml"))
	g.Expect(err).NotTo(HaveOccurred())
	var m struct {
		Applications []struct {
			Name       string            `yaml:"name"`
			Path       string            `yaml:"path"`
			Memory     string            `yaml:"memory"`
			Services   []string          `yaml:"services"`
			Buildpacks []string          `yaml:"buildpacks"`
			Env        map[string]string `yaml:"env"`
			Sidecars   []struct {
				Name         string   `yaml:"name"`
				ProcessTypes []string `yaml:"process_types"`
				Memory       string   `yaml:"memory"`
				Command      string   `yaml:"command"`
			} `yaml:"sidecars"`
		} `yaml:"applications"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	g.Expect(dec.Decode(&m)).To(Succeed())
	g.Expect(m.Applications).To(HaveLen(1))
	app := m.Applications[0]
	g.Expect(app.Sidecars).To(HaveLen(1))
	sc := app.Sidecars[0]
	g.Expect(sc.ProcessTypes).To(ContainElement("web"))
	g.Expect(megabytes(t, sc.Memory)).To(BeNumerically(">", 0), "the sidecar has its own memory")
	g.Expect(megabytes(t, sc.Memory)).To(BeNumerically("<", megabytes(t, app.Memory)))

	// The command, through the CLI's flag parser.
	args := strings.Fields(sc.Command)
	g.Expect(len(args)).To(BeNumerically(">=", 2))
	g.Expect(args[0]).To(Equal("./credbroker/credbroker"), "the binary is in the pushed bits")
	g.Expect(string(raw)).To(ContainSubstring("./credbroker/credbroker "), "the manifest says where to put the binary")
	c, ok := commands[args[1]]
	g.Expect(ok).To(BeTrue(), "credbroker has a %q command", args[1])
	g.Expect(c.name).To(Equal("run"))
	fs, opts, _ := newFlagSet(c, io.Discard)
	g.Expect(fs.Parse(args[2:])).To(Succeed(), "flags of %q", sc.Command)
	g.Expect(fs.Args()).To(BeEmpty())
	ro := opts.(*RunOptions)
	g.Expect(ro.VCAPFile).To(BeEmpty(), "bindings come from VCAP_SERVICES")
	g.Expect(ro.Config).NotTo(BeEmpty())

	// The files it names exist in the example, relative to the app's root.
	root := filepath.Join(cfExample, app.Path)
	cfgData, err := os.ReadFile(filepath.Join(root, ro.Config))
	g.Expect(err).NotTo(HaveOccurred(), "--config %s is in the example", ro.Config)
	cfg, err := sidecar.ParseConfig(cfgData, "config "+ro.Config)
	g.Expect(err).NotTo(HaveOccurred())
	for _, r := range cfg.Routes {
		if r.Auth.Binding != "" {
			g.Expect(app.Services).To(ContainElement(r.Auth.Binding), "route %s's binding is bound to the app", r.Name)
		}
	}

	// The app's proxy setting and the readiness wait use the config's ports.
	_, proxyPort, err := net.SplitHostPort(cfg.Listen)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(app.Env["JAVA_OPTS"]).To(ContainSubstring("-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=" + proxyPort))
	profile, err := os.ReadFile(filepath.Join(root, ".profile"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(profile)).To(ContainSubstring("http://" + cfg.AdminListen + "/readyz"))
	if sh, err := exec.LookPath("sh"); err == nil {
		out, err := exec.Command(sh, "-n", filepath.Join(root, ".profile")).CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "sh -n .profile: %s", out)
	}
}

func megabytes(t *testing.T, s string) int {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)(M|MB|G|GB)$`).FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil {
		t.Fatalf("memory %q: want a number with M or G", s)
	}
	n := 0
	for _, c := range m[1] {
		n = n*10 + int(c-'0')
	}
	if strings.HasPrefix(m[2], "G") {
		n *= 1024
	}
	return n
}
