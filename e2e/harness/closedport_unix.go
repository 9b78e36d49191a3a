//go:build unix

package harness

import (
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// ClosedPort returns a loopback TCP port that refuses connections until
// the spec ends: a socket is bound to it (without SO_REUSEADDR) but does
// not listen, so a connection is refused and no other socket can take the
// port. (A port whose listener was closed is free for anyone: another
// package's test could bind it, and the refusal the spec expects would
// become an answer.)
func ClosedPort() int {
	GinkgoHelper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	Expect(err).NotTo(HaveOccurred())
	syscall.CloseOnExec(fd)
	DeferCleanup(func() { _ = syscall.Close(fd) })
	Expect(syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})).To(Succeed())
	sa, err := syscall.Getsockname(fd)
	Expect(err).NotTo(HaveOccurred())
	return sa.(*syscall.SockaddrInet4).Port
}
