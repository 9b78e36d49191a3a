package sidecar_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// closedPort returns a loopback port nothing listens on.
func closedPort() int {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	port := l.Addr().(*net.TCPAddr).Port
	Expect(l.Close()).To(Succeed())
	return port
}

// Issue 16: the net/http path streams a request body in full-duplex mode;
// a body the upstream never read (it could not be reached) used to leave
// net/http's connection reader running after the handler, and the next
// read on the connection panicked ("invalid concurrent Body.Read call").
var _ = Describe("request bodies to an unreachable upstream", func() {
	It("answers every request on one keep-alive connection with 502 upstream-unreachable and logs no panic", func() {
		e := newEnv(mockauth.Options{})
		sc := e.startSidecar(fmt.Sprintf(`
routes:
  - {name: dead, upstream: "http://127.0.0.1:%d", auth: {type: none}}
  - {name: deadbearer, upstream: "http://127.0.0.1:%d", auth: {type: bearer, binding: xsuaa-secret}}
`, closedPort(), closedPort()))
		c, err := net.DialTimeout("tcp", sc.proxyHP, 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		br := bufio.NewReader(c)
		for i := 0; i < 5; i++ {
			for _, route := range []string{"dead", "deadbearer"} {
				body := strings.Repeat("b", 10*i+1)
				_, err := fmt.Fprintf(c, "POST /%s/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", route, len(body), body)
				Expect(err).NotTo(HaveOccurred())
				resp, err := http.ReadResponse(br, nil)
				Expect(err).NotTo(HaveOccurred(), "request %d to %s on the same connection", i, route)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				Expect(resp.StatusCode).To(Equal(http.StatusBadGateway), route)
				Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("upstream-unreachable"), route)
			}
		}
		// A last request proves the connection's reader is still sound.
		_, err = io.WriteString(c, "GET /dead/y HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(br, nil)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
		Expect(string(sc.s.Err.Contents()) + string(sc.s.Out.Contents())).NotTo(ContainSubstring("panic"))
	})
})
