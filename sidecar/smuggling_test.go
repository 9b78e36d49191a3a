package sidecar

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

// A request with both Content-Length and Transfer-Encoding (the CL.TE
// smuggling shape) is answered and the connection closed: the request
// pipelined behind its chunked body is never read, so it never reaches the
// upstream (RFC 9112 §6.3). A plain chunked upload still works.
func TestChunkedRequestsCloseTheConnection(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	g.Expect(os.WriteFile(caFile, ca.CertPEM(), 0o600)).To(Succeed())
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nca_file: %s\nroutes: [{name: open, upstream: %s, auth: {type: none}}]\n", caFile, up.url))
	rs := startServer(t, fileLoader(path, Deps{}))

	for _, first := range []string{
		"POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /open/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		c, err := net.DialTimeout("tcp", rs.s.Addr(), 5*time.Second)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.SetDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
		_, err = io.WriteString(c, first+"GET /open/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		g.Expect(err).NotTo(HaveOccurred())
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		g.Expect(resp.Close).To(BeTrue(), "Connection: close after a chunked request")
		_, err = http.ReadResponse(br, nil)
		g.Expect(err).To(HaveOccurred(), "no second response on that connection")
		c.Close()
	}
	// A request sent after the attack reaches the upstream after anything
	// the attack could have smuggled; wait for it, then keep watching a
	// little longer, failing on the smuggled path.
	resp, err := http.Get("http://" + rs.s.Addr() + "/open/sentinel")
	g.Expect(err).NotTo(HaveOccurred())
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var paths []string
	drain := func() []string {
		for {
			select {
			case s := <-up.seen:
				paths = append(paths, s.Path)
				continue
			default:
			}
			return paths
		}
	}
	g.Eventually(drain).WithTimeout(10 * time.Second).Should(ContainElement(HaveSuffix("/sentinel")))
	g.Consistently(drain).WithTimeout(500*time.Millisecond).ShouldNot(ContainElement(HaveSuffix("/smuggled")), "the pipelined request never reached the upstream")
}
