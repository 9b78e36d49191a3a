package sidecar_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// trickleHead writes piece(i) to a new connection to the proxy at every
// tick of every, from i = 0 at once, until the proxy answers and closes or
// max pieces are out. It returns what the proxy wrote and how many pieces
// were out when the connection ended (max+1: it did not end).
func trickleHead(addr string, every time.Duration, max int, piece func(i int) string) (string, int) {
	GinkgoHelper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(every*time.Duration(max+2) + 30*time.Second))
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		_, _ = io.Copy(&b, c) // until the end, a reset or the deadline
		got <- b.Bytes()
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; i < max; i++ {
		if i > 0 {
			select {
			case b := <-got:
				return string(b), i
			case <-tick.C:
			}
		}
		_, _ = io.WriteString(c, piece(i)) // fails once the proxy closed: the reader tells
	}
	select {
	case b := <-got:
		return string(b), max
	case <-tick.C:
		_ = c.SetReadDeadline(time.Now())
		return string(<-got), max + 1
	}
}

// expectHeaderTimeout checks the proxy's answer to a head that timed out:
// 408 with reason header-timeout, closed, counted.
func expectHeaderTimeout(sc *sidecar, got string, count int) {
	GinkgoHelper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
	Expect(err).NotTo(HaveOccurred(), "the proxy's answer: %q", got)
	Expect(resp.StatusCode).To(Equal(http.StatusRequestTimeout))
	Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("header-timeout"))
	Expect(resp.Close).To(BeTrue(), "Connection: close")
	Expect(string(sc.get("/metrics"))).To(ContainSubstring(fmt.Sprintf(`credbroker_request_head_refused_total{listener="proxy",reason="header-timeout"} %d`, count)))
}

// A request head must be complete within client_header_timeout of its
// first byte, in total (nginx's client_header_timeout, net/http's
// ReadHeaderTimeout): a client that sends its head a piece at a time, each
// gap shorter than the timeout, must not hold the connection (and a slot of
// max_connections.proxy) longer. The fast loop renewed its deadline on
// every read, and net/http started its own afresh when the fast loop
// handed a head over.
var _ = Describe("a request head trickled into the proxy", func() {
	var sc *sidecar
	const head = "GET /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	pad := func(i int) string { return fmt.Sprintf("X-Pad-%d: v\r\n", i) }

	start := func(extra string) {
		e := newEnv(mockauth.Options{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
		DeferCleanup(up.Close)
		sc = e.startSidecar(fmt.Sprintf("%sroutes:\n  - {name: r, upstream: %s, auth: {type: none}}\n", extra, up.URL))
	}

	// These two use the default timeout (10 s) and no new key, so that they
	// run unchanged against a binary that predates client_header_timeout.
	It("is refused 408 header-timeout at the default 10 s from its first byte on the fast loop, not kept open while bytes trickle in", func() {
		start("")
		// A piece every second: the old code kept the connection open for
		// all 30 (and would for as long as the head had room: 4 KiB).
		got, n := trickleHead(sc.proxyHP, time.Second, 30, func(i int) string {
			if i == 0 {
				return head
			}
			return pad(i)
		})
		Expect(n).To(BeNumerically("<", 30), "the connection was still open after %d pieces a second apart", n)
		expectHeaderTimeout(sc, got, 1)
	})

	It("is refused at 10 s from its first byte when the fast loop hands it to net/http midway, not 10 s after the hand-off", func() {
		start("")
		// A piece every 3 s; the third (at 6 s) makes the head too large
		// for the fast loop, which hands it over. The bound is 10 s from
		// the first byte; the old code closed at 16 s (6 s + net/http's
		// own 10 s). Up to 15 s is accepted.
		big := "X-Big: " + strings.Repeat("b", 5<<10) + "\r\n"
		got, n := trickleHead(sc.proxyHP, 3*time.Second, 10, func(i int) string {
			switch i {
			case 0:
				return head
			case 2:
				return big
			}
			return pad(i)
		})
		Expect(n).To(BeNumerically("<", 6), "the connection was still open after %d pieces 3 s apart (the piece at 15 s went out)", n)
		expectHeaderTimeout(sc, got, 1)
	})

	It("is refused at client_header_timeout when it is set", func() {
		start("client_header_timeout: 2s\n")
		got, n := trickleHead(sc.proxyHP, 500*time.Millisecond, 40, func(i int) string {
			if i == 0 {
				return head
			}
			return pad(i)
		})
		Expect(n).To(BeNumerically("<", 12), "the connection was still open after %d pieces 500 ms apart (client_header_timeout 2s)", n)
		expectHeaderTimeout(sc, got, 1)
		// A head sent at once is served as before.
		code, reason := raw(sc.proxyHP, head+"\r\n")
		Expect(code).To(Equal(200), reason)
	})

	It("is refused 408 header-timeout also after a Content-Length the proxy leaves to net/http to refuse", func() {
		start("client_header_timeout: 2s\n")
		// The old code closed the connection at the bound without an
		// answer and without counting it.
		got, n := trickleHead(sc.proxyHP, 500*time.Millisecond, 40, func(i int) string {
			if i == 0 {
				return "POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1x\r\n"
			}
			return pad(i)
		})
		Expect(n).To(BeNumerically("<", 12), "the connection was still open after %d pieces 500 ms apart (client_header_timeout 2s)", n)
		expectHeaderTimeout(sc, got, 1)
	})

	It("ends with a head whose Content-Length is zero-padded (net/http accepts it): the next request past the bound is served, a bare LF after it refused", func() {
		start("client_header_timeout: 1s\n")
		c, err := net.DialTimeout("tcp", sc.proxyHP, 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		exchange := func(req string) *http.Response {
			GinkgoHelper()
			_, err := io.WriteString(c, req)
			Expect(err).NotTo(HaveOccurred())
			resp, err := http.ReadResponse(br, nil)
			Expect(err).NotTo(HaveOccurred(), "an answer to %q", req)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		Expect(exchange("POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0000000000000000002\r\n\r\nab").StatusCode).To(Equal(200))
		// The binary before the fix kept the first head's bound on the
		// connection: this request was cut without an answer.
		<-time.After(1500 * time.Millisecond)
		Expect(exchange("GET /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").StatusCode).To(Equal(200))
		// And it no longer checked the heads after it: a bare LF passed.
		resp := exchange("GET /r/x HTTP/1.1\nHost: 127.0.0.1\n\n")
		Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("bare-lf"))
	})

	It("does not begin with the empty line an old client sends after a POST's body: the next request past the bound is served", func() {
		start("client_header_timeout: 1s\n")
		c, err := net.DialTimeout("tcp", sc.proxyHP, 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for i, req := range []string{
			"POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nab\r\n",
			"GET /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		} {
			if i > 0 {
				// An idle keep-alive wait past the bound: the binary
				// before the fix timed the CRLF as a head and answered 408.
				<-time.After(1500 * time.Millisecond)
			}
			_, err := io.WriteString(c, req)
			Expect(err).NotTo(HaveOccurred())
			resp, err := http.ReadResponse(br, nil)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200), "request %d: %s", i, resp.Header.Get("X-Credbroker-Error"))
		}
	})
})
