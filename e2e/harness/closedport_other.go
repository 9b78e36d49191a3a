//go:build !unix

package harness

import (
	"net"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// ClosedPort returns a loopback TCP port nothing listened on a moment ago
// (on unix it is also held, so that nothing can take it).
func ClosedPort() int {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
