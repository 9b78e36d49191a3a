package sidecar_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/mockauth"
)

// fin2 reports whether the IPv4 TCP socket from local to remote is in
// FIN_WAIT2 (its end of the stream acknowledged by the peer), from
// /proc/net/tcp. Both ends are matched: a local port alone names other
// sockets too (connect reuses a port towards another address, and a closed
// connection's TIME_WAIT entry stays listed for a minute), and the first of
// those listed decided a CI run.
func fin2(local, remote string) bool {
	GinkgoHelper()
	hex := func(addr string) string {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		Expect(err).NotTo(HaveOccurred())
		return fmt.Sprintf("0100007F:%04X", ta.Port)
	}
	wl, wr := hex(local), hex(remote)
	b, err := os.ReadFile("/proc/net/tcp")
	Expect(err).NotTo(HaveOccurred())
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var sl, l, r, st string
		if n, _ := fmt.Sscan(sc.Text(), &sl, &l, &r, &st); n == 4 && l == wl && r == wr {
			return st == "05"
		}
	}
	return false
}

// The fast loop reads the client's socket itself and waits for the poller
// without a read first once a read left nothing to read: it must still see
// the end of a stream that came with the last request.
var _ = Describe("the fast loop's own reads of the client's socket", func() {
	It("closes at once the connection of a client that shuts down its sending side after its last request, not at client_idle_timeout", func() {
		if _, err := os.Stat("/proc/net/tcp"); err != nil {
			Skip("needs /proc/net/tcp to see the end of the stream arrive")
		}
		e := newEnv(mockauth.Options{})
		got1, release := make(chan struct{}), make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/1" {
				close(got1)
				<-release
			}
			_, _ = io.WriteString(w, "r"+r.URL.Path[1:])
		}))
		var once sync.Once
		unblock := func() { once.Do(func() { close(release) }) }
		DeferCleanup(up.Close)
		DeferCleanup(unblock) // runs first: a failed spec must not leave the handler (and up.Close) waiting
		sc := e.startSidecar(fmt.Sprintf("client_idle_timeout: 120s\nroutes:\n  - {name: r, upstream: %s, auth: {type: none}}\n", up.URL))
		c, err := net.DialTimeout("tcp", sc.proxyHP, 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = io.WriteString(c, "GET /r/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		Eventually(got1).WithTimeout(20 * time.Second).Should(BeClosed())
		// The last request and the end of the stream arrive while the first
		// is answered: the proxy reads them in one read.
		_, err = io.WriteString(c, "GET /r/2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.(*net.TCPConn).CloseWrite()).To(Succeed())
		Eventually(func() bool { return fin2(c.LocalAddr().String(), c.RemoteAddr().String()) }).WithTimeout(10*time.Second).Should(BeTrue(), "the proxy's kernel acknowledged the end")
		unblock()
		br := bufio.NewReader(c)
		for _, want := range []string{"r1", "r2"} {
			resp, err := http.ReadResponse(br, nil)
			Expect(err).NotTo(HaveOccurred())
			b, err := io.ReadAll(resp.Body)
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.StatusCode).To(Equal(200))
			Expect(string(b)).To(Equal(want))
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = br.ReadByte()
		var ne net.Error
		Expect(errors.As(err, &ne) && ne.Timeout()).To(BeFalse(), "the proxy kept the half-closed connection open")
		Expect(err).To(MatchError(io.EOF))
	})

	It("exits at drain_timeout on SIGTERM while a response is still streaming", func() {
		e := newEnv(mockauth.Options{})
		release := make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select { // the stream goes quiet
			case <-release:
			case <-r.Context().Done():
			}
		}))
		DeferCleanup(func() { close(release); up.Close() })
		sc := e.startSidecar(fmt.Sprintf("drain_timeout: 1s\nroutes:\n  - {name: r, upstream: %s, auth: {type: none}}\n", up.URL))
		c, err := net.DialTimeout("tcp", sc.proxyHP, 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		_, err = io.WriteString(c, "GET /r/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			Expect(err).NotTo(HaveOccurred())
			if line == "first\n" {
				break // the head and the first bytes are here: the stream is in flight
			}
		}
		sc.s.Signal(syscall.SIGTERM)
		Eventually(sc.s).WithTimeout(20*time.Second).Should(gexec.Exit(0), "stopped after drain_timeout (1s), not when the upstream ends its stream")
	})
})
