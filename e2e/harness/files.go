package harness

import (
	"os"
	"path/filepath"

	. "github.com/onsi/gomega"
)

// WriteFile writes data to dir/name, readable by the owner only (parents
// made), and returns its path: the inputs a spec hands the binary.
func WriteFile(dir, name string, data []byte) string {
	p := filepath.Join(dir, name)
	ExpectWithOffset(1, os.MkdirAll(filepath.Dir(p), 0o700)).To(Succeed())
	ExpectWithOffset(1, os.WriteFile(p, data, 0o600)).To(Succeed())
	return p
}
