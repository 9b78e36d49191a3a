package inputfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	. "github.com/onsi/gomega"
)

func TestRead(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	g.Expect(os.WriteFile(ok, []byte("data"), 0o600)).To(Succeed())
	b, err := Read(ok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(Equal("data"))

	huge := filepath.Join(dir, "huge")
	g.Expect(os.WriteFile(huge, make([]byte, MaxSize+1), 0o600)).To(Succeed())
	_, err = Read(huge)
	g.Expect(errors.Is(err, ErrTooLarge)).To(BeTrue(), "%v", err)

	_, err = Read(dir)
	g.Expect(err).To(MatchError(ContainSubstring("is a directory")))

	fifo := filepath.Join(dir, "fifo")
	g.Expect(syscall.Mkfifo(fifo, 0o600)).To(Succeed())
	_, err = Read(fifo) // returns at once: the FIFO is never opened
	g.Expect(errors.Is(err, ErrNotRegular)).To(BeTrue(), "%v", err)
	var pe *os.PathError
	g.Expect(errors.As(err, &pe)).To(BeTrue())
}
