package hardening_test

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

// rawExchange writes request on a fresh connection and reads what comes
// back: the first response's status (0 when the proxy closed the connection
// without one) and whether a second response followed on the same
// connection (a smuggled request would produce one).
func rawExchange(addr, request string) (status int, second bool) {
	GinkgoHelper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	Expect(c.SetDeadline(time.Now().Add(15 * time.Second))).To(Succeed())
	_, err = io.WriteString(c, request)
	Expect(err).NotTo(HaveOccurred())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Anything after the first response on this connection is a second
	// response: read with a short deadline.
	Expect(c.SetDeadline(time.Now().Add(500 * time.Millisecond))).To(Succeed())
	if r2, err := http.ReadResponse(br, nil); err == nil {
		r2.Body.Close()
		return resp.StatusCode, true
	}
	return resp.StatusCode, false
}

var _ = Describe("hostile requests at the proxy", func() {
	It("refuses traversal, smuggling shapes, oversized headers, foreign hosts and CONNECT without forwarding, panicking or leaking goroutines", func() {
		r := newRig(mockauth.Options{})
		p := r.run(fmt.Sprintf(`
routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret}}
  - {name: open, upstream: %[1]s/open, auth: {type: none}}
`, r.up.url))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		// Warm up: one good request through each route, then the baseline.
		for _, path := range []string{"/orders/warm", "/open/warm"} {
			resp, err := client.Get(p.proxy + path)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200))
		}
		Eventually(func() float64 { return p.metric("go_goroutines") }).Should(BeNumerically(">", 0))
		baseline := p.metric("go_goroutines")
		seenBefore := len(r.up.all())

		host := r.up.host
		big := strings.Repeat("a", 2<<20)
		for _, tc := range []struct {
			name string
			req  string
			want []int // acceptable first status; 0 means the connection was closed
		}{
			{"traversal", "GET /orders/../admin HTTP/1.1\r\nHost: x\r\n\r\n", []int{400, 403}},
			{"encoded traversal", "GET /orders/%2e%2e/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n", []int{400, 403}},
			{"mixed-case encoded traversal", "GET /orders/%2E%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n", []int{400, 403}},
			{"encoded slashes", "GET /orders%2F..%2F..%2Fadmin HTTP/1.1\r\nHost: x\r\n\r\n", []int{400, 403}},
			{"double slashes to a non-route", "GET //admin//x HTTP/1.1\r\nHost: x\r\n\r\n", []int{400, 403}},
			{"backslash traversal", "GET /orders/..\\admin HTTP/1.1\r\nHost: x\r\n\r\n", []int{400, 403}},
			{"non-route", "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n", []int{403}},
			{"route name prefix without a slash", "GET /ordersadmin HTTP/1.1\r\nHost: x\r\n\r\n", []int{403}},
			{"absolute-form to another host", "GET http://example.com/orders/x HTTP/1.1\r\nHost: example.com\r\n\r\n", []int{403}},
			{"absolute-form https", "GET https://" + host + "/orders/x HTTP/1.1\r\nHost: " + host + "\r\n\r\n", []int{400, 403}},
			{"CONNECT to the upstream", "CONNECT " + host + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n", []int{403, 405}},
			{"CONNECT elsewhere", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", []int{403, 405}},
			{"Content-Length and Transfer-Encoding", "POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /orders/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", []int{0, 400, 403}},
			{"duplicate Content-Length", "POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /orders/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", []int{0, 400, 403}},
			{"Transfer-Encoding with a twist", "POST /admin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", []int{0, 400, 403, 501}},
			{"obs-fold header", "GET /admin HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", []int{0, 400, 403}},
			{"bare LF", "GET /admin HTTP/1.1\nHost: x\n\n", []int{0, 400, 403}},
			{"NUL in the path", "GET /orders/\x00/../admin HTTP/1.1\r\nHost: x\r\n\r\n", []int{0, 400, 403}},
			{"oversized header", "GET /orders/big HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", []int{0, 431}},
			{"HTTP/0.9", "GET /admin\r\n\r\n", []int{0, 400, 403, 505}},
			{"unknown method to a non-route", "PURGE /admin HTTP/1.1\r\nHost: x\r\n\r\n", []int{403}},
		} {
			status, second := rawExchange(p.proxyHP, tc.req)
			Expect(status).To(BeElementOf(tc.want), tc.name)
			Expect(second).To(BeFalse(), "%s: a second (smuggled) response followed", tc.name)
		}
		// Nothing refused reached the upstream: it saw exactly what it saw before.
		for _, g := range r.up.all()[seenBefore:] {
			Fail(fmt.Sprintf("the upstream received %s %s", g.Method, g.URI))
		}
		Expect(r.up.all()).To(HaveLen(seenBefore))

		// Many hostile connections at once, some left half-open, then closed.
		var conns []net.Conn
		for i := 0; i < 50; i++ {
			c, err := net.Dial("tcp", p.proxyHP)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.WriteString(c, "GET /orders/../admin HTTP/1.1\r\nHost: x\r\nX-Slow: ") // never finished
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		resp, err := client.Get(p.proxy + "/orders/after")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200), "still serving")
		client.CloseIdleConnections()
		Eventually(func() float64 { return p.metric("go_goroutines") }).WithTimeout(30*time.Second).WithPolling(250*time.Millisecond).
			Should(BeNumerically("<=", baseline+5), "goroutines return to the baseline (%v)", baseline)
		p.scan(true)
	})
})
