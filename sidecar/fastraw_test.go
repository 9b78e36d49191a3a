package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fastLoopProxy runs the server (its fast loop) with one none route "r" to
// upstream and returns its address and metrics.
func fastLoopProxy(t *testing.T, upstream string) (string, *Metrics) {
	t.Helper()
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes: [{name: r, upstream: %q, auth: {type: none}}]\n", upstream)), "fast loop test")
		return c, Deps{}, err
	}, WithMetrics(m))
	return rs.s.Addr(), m
}

func fastServedOn(m *Metrics, route string) float64 {
	return testutil.ToFloat64(m.fastPath.WithLabelValues(route))
}

// holdingUpstream answers request i on a connection with "r<i>"; it holds
// the first until release is closed (got1 is closed when it has it).
func holdingUpstream(t *testing.T) (up *rawUpstream, got1, release chan struct{}) {
	got1, release = make(chan struct{}), make(chan struct{})
	up = newRawUpstream(t, func(_ int32, c net.Conn, br *bufio.Reader, u *rawUpstream) {
		for i := 1; u.read(br); i++ {
			if i == 1 {
				close(got1)
				<-release
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr%d", i)
		}
	})
	return up, got1, release
}

// dialRaw opens a client connection to addr, closed with the test.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

// unsolicitedUpstream answers its first connection's first request with
// "firs" and, once pooled is closed, writes an unsolicited second answer
// "evil" on it (wrote is closed then); every other request gets "good".
func unsolicitedUpstream(t *testing.T) (up *rawUpstream, pooled, wrote chan struct{}) {
	pooled, wrote = make(chan struct{}), make(chan struct{})
	up = newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader, u *rawUpstream) {
		for u.read(br) {
			if n == 1 {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfirs")
				<-pooled
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
				close(wrote)
				continue
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
		}
	})
	return up, pooled, wrote
}

// readResponses reads n responses from br and returns their bodies.
func readResponses(t *testing.T, br *bufio.Reader, n int) []string {
	t.Helper()
	var bodies []string
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, fmt.Sprint(resp.StatusCode, " ", string(b)))
	}
	return bodies
}

// The fast loop waits for a client's next request without reading first
// when its last read drained the socket (loop). Bytes that arrive while it
// serves a request, after that read, must still be seen: here the second
// request arrives, in two pieces, while the upstream holds the first, and
// a third comes in three pieces after both answers.
func TestFastLoopSeesBytesThatArriveWhileServing(t *testing.T) {
	g := NewWithT(t)
	up, got1, release := holdingUpstream(t)
	addr, m := fastLoopProxy(t, up.url())
	c, br := dialRaw(t, addr)

	_, err := io.WriteString(c, "GET /r/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(got1, 10*time.Second).Should(BeClosed())
	for _, piece := range []string{"GET /r/2 HTTP/1.1\r\nHo", "st: 127.0.0.1\r\n\r\n"} {
		_, err = io.WriteString(c, piece)
		g.Expect(err).NotTo(HaveOccurred())
	}
	close(release)
	g.Expect(readResponses(t, br, 2)).To(Equal([]string{"200 r1", "200 r2"}))

	for _, piece := range []string{"GET /r/3 HT", "TP/1.1\r\nHost: 12", "7.0.0.1\r\n\r\n"} {
		_, err = io.WriteString(c, piece)
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 r3"}))
	g.Expect(up.seen()).To(Equal([]string{"GET /1", "GET /2", "GET /3"}))
	g.Eventually(func() float64 { return fastServedOn(m, "r") }, 10*time.Second).Should(BeNumerically("==", 3), "all on the fast loop")
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 1), "one upstream connection")
}

// A pooled upstream connection is probed in send, in the same wait as the
// answer: an unsolicited response that arrived while it was idle is never
// handed to the next request, and an upstream that closed it costs no
// failed request. Both through the fast loop (the net/http path's pool
// probes in get: TestFastPathUnsolicitedResponseWhileIdle).
func TestFastLoopProbesPooledConnectionsInSend(t *testing.T) {
	t.Run("unsolicited response", func(t *testing.T) {
		g := NewWithT(t)
		up, pooled, wrote := unsolicitedUpstream(t)
		addr, m := fastLoopProxy(t, up.url())
		c, br := dialRaw(t, addr)
		_, err := io.WriteString(c, "GET /r/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 firs"}))
		close(pooled)
		<-wrote
		// The pooled connection now holds the unsolicited answer (the
		// upstream wrote it; loopback delivers it at once, but the test
		// cannot see the socket: a later request that still got "evil"
		// fails below either way).
		for i := range 3 {
			fmt.Fprintf(c, "GET /r/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", i+2)
			g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 good"}), "request %d", i+2)
		}
		g.Expect(up.accepted.Load()).To(BeNumerically("==", 2), "the tainted connection was discarded")
		g.Eventually(func() float64 { return fastServedOn(m, "r") }, 10*time.Second).Should(BeNumerically("==", 4))
	})
	t.Run("closed while idle", func(t *testing.T) {
		g := NewWithT(t)
		up, closed := closingUpstream(t)
		addr, m := fastLoopProxy(t, up.url())
		c, br := dialRaw(t, addr)
		for i := range 3 {
			fmt.Fprintf(c, "GET /r/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", i)
			g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 ok"}))
			g.Eventually(closed, 10*time.Second).Should(Receive())
		}
		g.Expect(up.accepted.Load()).To(BeNumerically("==", 3))
		g.Eventually(func() float64 { return fastServedOn(m, "r") }, 10*time.Second).Should(BeNumerically("==", 3))
		seen := up.seen()
		g.Expect(seen).To(HaveLen(3), "each request sent once: a closed pooled connection is found before the write")
	})
}
