package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// A head the fast loop hands to net/http while net/http no longer accepts
// (proxySrv.Shutdown closed the hand-off listener, while the fast server
// still finishes its active connections) is closed, as before. The hand-off
// used to happen inside the loop's RawConn.Read: push's Close then waited
// for the read reference its own goroutine held, for ever (the client hung,
// the socket was never closed, the connection never left fs.conns, and
// Shutdown waited out the whole drain_timeout).
func TestFastLoopHandOffAfterNetHTTPStoppedClosesTheConnection(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	ll := newLimitListener(ln, 10, NewMetrics(), "proxy", true)
	ll.strict = false
	fs := newFastServer(&Server{}, ll, time.Minute, time.Minute)
	_ = fs.slow.Close() // net/http's server has stopped accepting
	done := make(chan error, 1)
	go func() { done <- fs.serve() }()
	t.Cleanup(func() {
		fs.Close()
		<-done
	})

	c, err := net.Dial("tcp", ln.Addr().String())
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// A POST: outside the fast subset, handed over.
	_, err = io.WriteString(c, "POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Read(make([]byte, 1))
	g.Expect(err).To(MatchError(io.EOF), "the connection is closed (not left open: a timeout here is the hang)")
	g.Eventually(func() int {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return len(fs.conns)
	}, 10*time.Second).Should(BeZero(), "the connection left the fast server")
}

// Shutdown's grace period over, the server stops even while a response is
// still streaming to a client (closing the client's connection does not
// wait for the fast loop to notice). The fast loop serves a connection
// inside one RawConn.Read: a Close of that connection waits until the loop
// leaves it, which a response the upstream keeps streaming (or an upstream
// that does not answer) put off for as long as the upstream took.
func TestFastServerStopsAtDrainTimeoutWhileAResponseStreams(t *testing.T) {
	g := NewWithT(t)
	release := make(chan struct{})
	up := newRawUpstream(t, func(_ int32, c net.Conn, br *bufio.Reader, u *rawUpstream) {
		if u.read(br) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
			<-release // the stream goes quiet
		}
	})
	t.Cleanup(func() { close(release) }) // before the upstream's own cleanup
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndrain_timeout: 200ms\nroutes: [{name: r, upstream: %q, auth: {type: none}}]\n", up.url())), "drain test")
		return c, Deps{}, err
	})
	c, err := net.Dial("tcp", rs.s.Addr())
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, err = io.WriteString(c, "GET /r/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		g.Expect(err).NotTo(HaveOccurred())
		if line == "first\r\n" {
			break // the head and the first chunk are here: the stream is in flight
		}
	}
	rs.cancel() // SIGTERM
	var runErr error
	g.Eventually(rs.done, 10*time.Second).Should(Receive(&runErr), "Run returned after drain_timeout (200ms), not when the upstream ends its stream")
	rs.done <- runErr // for startServer's cleanup
}

// A client that sends its last request and shuts down its sending side
// (shutdown(SHUT_WR), as `nc -N` does) and reads until the end gets the
// end once its requests are answered, as before the fast loop read the
// socket itself, not only at client_idle_timeout (120s here): the loop
// reads the request and the end of the stream in one read, and must not
// then wait for the poller, which has nothing more to report.
func TestFastLoopClosesAfterTheClientHalfCloses(t *testing.T) {
	g := NewWithT(t)
	up, got1, release := holdingUpstream(t)
	addr, _ := fastLoopProxy(t, up.url())
	c, br := dialRaw(t, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(c, "GET /r/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(got1, 10*time.Second).Should(BeClosed())
	// The second request and the end of the client's stream arrive while
	// the first is being answered: the loop reads them together.
	_, err = io.WriteString(c, "GET /r/2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.(*net.TCPConn).CloseWrite()).To(Succeed())
	if _, err := os.Stat("/proc/net/tcp"); err == nil {
		// FIN_WAIT2: the proxy's kernel has acknowledged the end.
		g.Eventually(func() string { return tcpState(t, c.LocalAddr().String(), c.RemoteAddr().String()) }, 10*time.Second).Should(Equal("05"))
	}
	close(release)
	g.Expect(readResponses(t, br, 2)).To(Equal([]string{"200 r1", "200 r2"}))
	_, err = br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the proxy kept the half-closed connection open (it closes it only at client_idle_timeout)")
	}
	g.Expect(err).To(MatchError(io.EOF))
}

// Heads that arrive a byte at a time, two of them pipelined in one stream
// of single bytes, and a third after the answers: every byte is a read
// that leaves the socket drained and a wait the next byte ends.
func TestFastLoopHeadsSplitAtEveryByte(t *testing.T) {
	g := NewWithT(t)
	up := newRawUpstream(t, func(_ int32, c net.Conn, br *bufio.Reader, u *rawUpstream) {
		for i := 1; u.read(br); i++ {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr%d", i)
		}
	})
	addr, m := fastLoopProxy(t, up.url())
	c, br := dialRaw(t, addr)
	write := func(s string) {
		for i := range len(s) {
			_, err := c.Write([]byte{s[i]})
			g.Expect(err).NotTo(HaveOccurred())
		}
	}
	write("GET /r/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /r/2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(readResponses(t, br, 2)).To(Equal([]string{"200 r1", "200 r2"}))
	write("GET /r/3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 r3"}))
	g.Expect(up.seen()).To(Equal([]string{"GET /1", "GET /2", "GET /3"}))
	g.Eventually(func() float64 { return fastServedOn(m, "r") }, 10*time.Second).Should(BeNumerically("==", 3), "all on the fast loop")
}

// A pooled connection that send's probe finds closed sends the request on
// the next pooled one, as get's probe did, not at once on a new
// connection: here the upstream closed the most recently pooled of two
// connections and takes no new ones, and the request is answered on the
// other.
func TestFastLoopStaleProbeTakesTheNextPooledConnection(t *testing.T) {
	g := NewWithT(t)
	answer := [3]chan struct{}{nil, make(chan struct{}), make(chan struct{})}
	closeB, closedB := make(chan struct{}), make(chan [2]string, 1)
	up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader, u *rawUpstream) {
		for u.read(br) {
			if n <= 2 {
				<-answer[n]
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if n == 2 {
				<-closeB
				_ = c.Close()
				closedB <- [2]string{c.LocalAddr().String(), c.RemoteAddr().String()}
				return
			}
		}
	})
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes: [{name: r, upstream: %q, auth: {type: none}}]\n", up.url())), "stale probe test")
		return c, Deps{}, err
	})
	idle := func() int {
		h := rs.s.gen.Load().proxy.router.byName["r"].fastUp.Load()
		if h == nil {
			return 0
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.idle)
	}
	ca, bra := dialRaw(t, rs.s.Addr())
	cb, brb := dialRaw(t, rs.s.Addr())
	_, err := io.WriteString(ca, "GET /r/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(up.accepted.Load, 10*time.Second).Should(BeNumerically("==", 1))
	_, err = io.WriteString(cb, "GET /r/b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(up.accepted.Load, 10*time.Second).Should(BeNumerically("==", 2), "two upstream connections")
	close(answer[1])
	g.Expect(readResponses(t, bra, 1)).To(Equal([]string{"200 ok"}))
	g.Eventually(idle, 10*time.Second).Should(Equal(1))
	close(answer[2])
	g.Expect(readResponses(t, brb, 1)).To(Equal([]string{"200 ok"}))
	g.Eventually(idle, 10*time.Second).Should(Equal(2), "b's connection pooled last")
	close(closeB)
	var b [2]string
	g.Eventually(closedB, 10*time.Second).Should(Receive(&b))
	if _, err := os.Stat("/proc/net/tcp"); err == nil {
		// FIN_WAIT2: the proxy's kernel has acknowledged the upstream's end.
		g.Eventually(func() string { return tcpState(t, b[0], b[1]) }, 10*time.Second).Should(Equal("05"))
	}
	_ = up.ln.Close() // no new connections
	_, err = io.WriteString(ca, "GET /r/c HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(readResponses(t, bra, 1)).To(Equal([]string{"200 ok"}), "answered on the other pooled connection")
	g.Expect(up.seen()).To(Equal([]string{"GET /a", "GET /b", "GET /c"}))
}

// tcpState is the state (hex, as /proc/net/tcp lists it) of the IPv4 TCP
// socket from local to remote (both 127.0.0.1:port), or "" when there is
// none. Both ends are matched: a local port alone also names sockets to
// other addresses (connect reuses a port towards another address, and a
// closed connection's TIME_WAIT entry stays listed for a minute).
func tcpState(t *testing.T, local, remote string) string {
	t.Helper()
	hex := func(addr string) string {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("0100007F:%04X", ta.Port)
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	wl, wr := hex(local), hex(remote)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var sl, l, r, st string
		if n, _ := fmt.Sscan(sc.Text(), &sl, &l, &r, &st); n == 4 && l == wl && r == wr {
			return st
		}
	}
	return ""
}
