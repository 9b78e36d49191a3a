package sidecar_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// closedPort returns a loopback port that refuses connections, held for
// the spec so that nothing else can take it (harness.ClosedPort).
func closedPort() int {
	GinkgoHelper()
	return harness.ClosedPort()
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

// Issue 16: bodyless requests to an oauth1 route are signed on the fast
// path (the upstream verifies every signature), and the fast path notices
// an app that hung up while it waits for the upstream.
var _ = Describe("the fast path", func() {
	It("signs oauth1 requests on the fast path, and the upstream accepts every signature", func() {
		e := newEnv(mockauth.Options{})
		h1 := newUpstreamProto(e.upCA, e.clientCAs, e.oauthSec, e.secrets, false) // HTTP/1.1 only: the fast path's
		sc := e.startSidecar(fmt.Sprintf(`
routes:
  - {name: controller, upstream: %s/controller, auth: {type: oauth1, key_file: %s, secret_file: %s}}
`, h1.url, e.keyFile, e.secFile))

		// The first request to an https:// upstream goes through net/http
		// (which learns it speaks HTTP/1.1); then the fast path signs.
		Eventually(func() float64 {
			code, reason := raw(sc.proxyHP, "GET /controller/q?a=1&b=x%20y&b=z HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
			Expect(code).To(Equal(200), reason)
			Expect(h1.last("/controller/q").OAuth1).To(Equal("ok"))
			return fastRequests(sc, "controller")
		}).WithTimeout(30 * time.Second).Should(BeNumerically(">=", 2))
		// Targets the signer's own query handling and the fast path's URL
		// shortcut must get exactly right: "+", escapes of either case,
		// oauth_* names that sort among the protocol parameters, empty
		// segments and values, paths with unreserved and sub-delimiter
		// characters.
		for _, target := range []string{"/controller", "/controller/deep/path?z=%E2%82%AC", "/controller/o?x=1",
			"/controller/s?oauth_nonce=x&oauth_a=1&b=c+d&b=%7e&&k&=v&z=", "/controller/a~b/c-d.e_f?q=%2B&r=%e2%82%ac", "/controller/sub$&+,:=@"} {
			before := fastRequests(sc, "controller")
			code, reason := raw(sc.proxyHP, "GET "+target+" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n")
			Expect(code).To(Equal(200), reason)
			Expect(fastRequests(sc, "controller")).To(Equal(before+1), "target %s", target)
			path := target
			if i := strings.IndexByte(path, '?'); i >= 0 {
				path = path[:i]
			}
			path, err := url.PathUnescape(path)
			Expect(err).NotTo(HaveOccurred())
			Expect(h1.last(path).OAuth1).To(Equal("ok"), "target %s", target)
		}
		// Signature after signature with pooled state: each one verifies,
		// each nonce is new (the upstream's verifier refuses a replay).
		before := fastRequests(sc, "controller")
		for i := range 50 {
			code, reason := raw(sc.proxyHP, fmt.Sprintf("GET /controller/n?i=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", i))
			Expect(code).To(Equal(200), reason)
			Expect(h1.last("/controller/n").OAuth1).To(Equal("ok"), "request %d", i)
		}
		Expect(fastRequests(sc, "controller")).To(Equal(before + 50))
	})

	It("closes the upstream request of an app that hung up while the upstream thinks", func() {
		e := newEnv(mockauth.Options{})
		got, abandoned := make(chan struct{}, 4), make(chan struct{}, 4)
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- struct{}{}
			<-r.Context().Done()
			abandoned <- struct{}{}
		}))
		DeferCleanup(hang.Close)
		sc := e.startSidecar(fmt.Sprintf(`
routes:
  - {name: hang, upstream: %s, auth: {type: none}}
`, hang.URL))
		// Abandoned long before response_header (60 s) passes.
		c, err := net.DialTimeout("tcp", sc.proxyHP, 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		_, err = io.WriteString(c, "GET /hang/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		Eventually(got).WithTimeout(20 * time.Second).Should(Receive())
		Expect(c.Close()).To(Succeed())
		Eventually(abandoned).WithTimeout(20*time.Second).Should(Receive(), "the upstream connection is closed when the app goes away")
		Eventually(func() float64 { return fastRequests(sc, "hang") }).Should(BeNumerically("==", 1), "served on the fast path")
	})
})
