package dirwatch

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

// The sidecar watches its config file, binding directories and CA files
// with these rules.
func TestConcernsOfTheSidecarsPaths(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	g.Expect(os.WriteFile(cfg, []byte("routes: []\n"), 0o600)).To(Succeed())
	bindings := filepath.Join(dir, "bindings")
	g.Expect(os.Mkdir(bindings, 0o700)).To(Succeed())
	// A config that is a symlink to a file elsewhere (the target's events
	// count too).
	other := t.TempDir()
	target := filepath.Join(other, "real.yaml")
	g.Expect(os.WriteFile(target, []byte("routes: []\n"), 0o600)).To(Succeed())
	link := filepath.Join(dir, "linked.yaml")
	g.Expect(os.Symlink(target, link)).To(Succeed())
	paths := []string{cfg, bindings, link}

	for name, want := range map[string]bool{
		cfg:                                             true,
		filepath.Join(dir, ".", "config.yaml"):          true,
		filepath.Join(bindings, "xsuaa"):                true,
		filepath.Join(bindings, "xsuaa", "url"):         true,
		filepath.Join(dir, "..data"):                    true, // Kubernetes swaps the mounted files through it
		filepath.Join(dir, "..2026_12_04_21_00_00.123"): true,
		target:                                true,
		filepath.Join(dir, "credbroker.log"):  false, // a log file beside the config
		filepath.Join(dir, "config.yaml.swp"): false,
		filepath.Join(dir, "bindings-old"):    false,
		filepath.Join(other, "unrelated"):     false,
	} {
		g.Expect(Concerns(paths, name)).To(Equal(want), name)
	}
	// The target of a symlinked file is watched in its own directory.
	g.Expect(Dirs(paths)).To(ConsistOf(dir, bindings, other))
}
