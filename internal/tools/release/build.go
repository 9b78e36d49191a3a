// Package release builds credbroker's release artefacts: reproducible
// binaries and their archives (cmd/dist) and the OCI image (cmd/mkimage).
package release

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/credbroker/credbroker/internal/tools/release/stamp"
)

// Target is one platform.
type Target struct{ OS, Arch string }

func (t Target) String() string { return t.OS + "/" + t.Arch }

// ParseTargets reads "linux/amd64,darwin/arm64"; "host" is the machine's own.
func ParseTargets(s, hostOS, hostArch string) ([]Target, error) {
	var ts []Target
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "host" {
			ts = append(ts, Target{hostOS, hostArch})
			continue
		}
		o, a, ok := strings.Cut(f, "/")
		if !ok || o == "" || a == "" {
			return nil, fmt.Errorf("target %q: want os/arch, e.g. linux/amd64, or host", f)
		}
		ts = append(ts, Target{o, a})
	}
	return ts, nil
}

// Build compiles cmd/credbroker of the module at root for t into out, the
// reproducible way: CGO off (a static binary), -trimpath (no build paths), no
// toolchain switch, and the stamp's version, commit and commit time linked in.
// Go's own VCS stamping is off: it works in a clone but not in a worktree or
// a tarball, so with it the same commit would build to different bytes
// depending on how it was checked out.
func Build(root string, t Target, s stamp.Stamp, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w "+s.LDFlags(), "-o", out, "./cmd/credbroker")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+t.OS, "GOARCH="+t.Arch, "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s: %v\n%s", t, err, stderr.String())
	}
	return nil
}
