package atomicfile_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/atomicfile"
	"github.com/credbroker/credbroker/internal/testenv"
)

// mountTinyTmpfs mounts a 16 KiB tmpfs (root only). The test is skipped
// where mounting is not allowed, except under CI=true (CI runs as root: a
// skip there would hide that nothing was tested).
func mountTinyTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16k"); err != nil {
		testenv.SkipOrFail(t, "a tmpfs cannot be mounted here (%v): a full disk is not simulated", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// On a full disk WriteDir fails with ENOSPC, keeps the live generation and
// removes its unfinished one, so that retries do not pile up generations.
func TestWriteDirOnAFullDiskKeepsTheLiveGenerationAndLeavesNoDebris(t *testing.T) {
	g := NewWithT(t)
	dir := mountTinyTmpfs(t)
	g.Expect(atomicfile.WriteDir(context.Background(), dir, set("one"))).To(Succeed())
	// Fill what is left.
	f, err := os.Create(filepath.Join(dir, "filler"))
	g.Expect(err).NotTo(HaveOccurred())
	var fillErr error
	for fillErr == nil {
		_, fillErr = f.Write(make([]byte, 1024))
	}
	g.Expect(errors.Is(fillErr, syscall.ENOSPC)).To(BeTrue(), "the filler stopped on a full disk: %v", fillErr)
	_ = f.Close() // may report ENOSPC again; the disk is full either way

	for i := 0; i < 5; i++ {
		big := set("two")
		big[0].Data = []byte(strings.Repeat("x", 8192))
		err := atomicfile.WriteDir(context.Background(), dir, big)
		g.Expect(errors.Is(err, syscall.ENOSPC)).To(BeTrue(), "attempt %d: %v", i, err)
	}
	entries, err := os.ReadDir(dir)
	g.Expect(err).NotTo(HaveOccurred())
	gens := 0
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "..") {
			gens++
		}
	}
	g.Expect(gens).To(Equal(1), "only the live generation is left")
	got, err := os.ReadFile(filepath.Join(dir, "tls.key"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(got)).To(Equal("key one"))
}
