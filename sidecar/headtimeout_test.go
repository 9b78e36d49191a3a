package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// headTimeoutProxy runs a server with client_header_timeout d and one
// route r to upstream.
func headTimeoutProxy(t *testing.T, upstream string, d time.Duration) (string, *Metrics) {
	t.Helper()
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nclient_header_timeout: %s\nroutes: [{name: r, upstream: %q, auth: {type: none}}]\n", d, upstream)), "head timeout test")
		return c, Deps{}, err
	}, WithMetrics(m))
	return rs.s.Addr(), m
}

// trickle writes piece(i) to c at every tick of every, from i = 0 at once,
// until the proxy answers and closes, or max pieces are out. It returns
// what the proxy wrote and how many pieces had been written when the
// connection ended (max+1: it did not end).
func trickle(t *testing.T, c net.Conn, r io.Reader, every time.Duration, max int, piece func(i int) string) (string, int) {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		_, _ = io.Copy(&b, r) // until the end, a reset or the test's deadline
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
	// The last piece is out: one more period for the answer.
	select {
	case b := <-got:
		return string(b), max
	case <-tick.C:
		_ = c.SetReadDeadline(time.Now())
		return string(<-got), max + 1
	}
}

func headRefusedOn(m *Metrics, listener, reason string) float64 {
	return testutil.ToFloat64(m.headRefused.WithLabelValues(listener, reason))
}

// A request head must be complete within client_header_timeout of its
// first byte, in total: a client that sends a piece of its head now and
// then, each gap shorter than the timeout, is answered 408 header-timeout
// and closed at about the timeout, on the fast loop, after the fast loop
// handed the head to net/http, and on net/http's keep-alive connections.
// The fast loop used to renew the deadline on every read (the head held
// the connection, and a connection-limit slot, for as long as it had bytes
// to send: up to 4 KiB × the timeout), net/http started its own
// ReadHeaderTimeout afresh at a hand-off, and after the first four bytes
// of a keep-alive connection's next head.
func TestRequestHeadTimeoutRunsFromItsFirstByte(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	const head = "GET /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	big := "X-Big: " + strings.Repeat("b", 5<<10) + "\r\n" // past the fast loop's 4 KiB: handed over

	for _, tc := range []struct {
		name string
		// T is client_header_timeout; pieces come every `every`, at most
		// max of them; the answer must come before `within` pieces.
		T, every time.Duration
		max      int
		within   int
		setup    func(t *testing.T, c net.Conn, br *bufio.Reader)
		piece    func(i int) string
	}{{
		// Old code: open until the pieces run out (40 here, 10 T).
		name: "fast loop", T: time.Second, every: 250 * time.Millisecond, max: 40, within: 12,
		piece: func(i int) string {
			if i == 0 {
				return head
			}
			return fmt.Sprintf("X-Pad-%d: v\r\n", i)
		},
	}, {
		// Two pieces on the fast loop (0.9 T), then a head too large for
		// it: net/http reads the rest. Old code: closed at 0.9 T + T.
		name: "handed over", T: 2 * time.Second, every: 900 * time.Millisecond, max: 10, within: 4,
		piece: func(i int) string {
			switch i {
			case 0:
				return head
			case 2:
				return big
			}
			return fmt.Sprintf("X-Pad-%d: v\r\n", i)
		},
	}, {
		// The connection is on net/http after a POST; the next head comes
		// a byte at a time, each 0.9 T apart. Old code: net/http's timeout
		// started after 4 bytes (2.7 T), closed at 3.7 T.
		name: "net/http keep-alive", T: time.Second, every: 900 * time.Millisecond, max: 10, within: 4,
		setup: func(t *testing.T, c net.Conn, br *bufio.Reader) {
			_, err := io.WriteString(c, "POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
			if err != nil {
				t.Fatal(err)
			}
			if got := readResponses(t, br, 1); got[0] != "200 ok" {
				t.Fatalf("the POST got %q", got)
			}
		},
		piece: func(i int) string {
			if i < len(head) {
				return head[i : i+1]
			}
			return "x"
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			addr, m := headTimeoutProxy(t, up.URL, tc.T)
			c, br := dialRaw(t, addr)
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			if tc.setup != nil {
				tc.setup(t, c, br)
			}
			got, n := trickle(t, c, br, tc.every, tc.max, tc.piece)
			g.Expect(n).To(BeNumerically("<", tc.within),
				"the connection was still open after %d pieces %s apart (client_header_timeout %s)", n, tc.every, tc.T)
			g.Expect(got).To(HavePrefix("HTTP/1.1 408 Request Timeout\r\n"))
			g.Expect(got).To(ContainSubstring("\r\n" + HeaderError + ": " + ReasonHeaderTimeout + "\r\n"))
			g.Expect(got).To(ContainSubstring("\r\nConnection: close\r\n"))
			g.Expect(headRefusedOn(m, "proxy", ReasonHeaderTimeout)).To(Equal(1.0))
		})
	}
}

// strictConn holds net/http's read deadlines to the open head's bound, and
// only a timeout at that bound is answered 408: a deadline of net/http's
// own (the one that stops its background read, long past) is not a
// refusal.
func TestStrictConnHoldsReadDeadlinesToTheHeadBound(t *testing.T) {
	pair := func(t *testing.T) (*strictConn, net.Conn, *Metrics) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		m := NewMetrics()
		ll := newLimitListener(ln, 10, m, "proxy", true)
		ll.headerTimeout = time.Hour
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		sc, err := ll.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return sc.(*strictConn), c, m
	}

	t.Run("a head handed over past its bound", func(t *testing.T) {
		g := NewWithT(t)
		sc, c, m := pair(t)
		sc.pre = []byte("GET /r/x HTTP/1.1\r\nHost: a\r\n")
		sc.seedHead(time.Now().Add(-time.Millisecond)) // its first byte came an hour ago
		g.Expect(sc.SetReadDeadline(time.Now().Add(time.Hour))).To(Succeed())
		buf := make([]byte, 4096)
		n, err := sc.Read(buf)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(n).To(Equal(len("GET /r/x HTTP/1.1\r\nHost: a\r\n")))
		_, err = sc.Read(buf) // nothing more comes: the bound has passed
		g.Expect(isTimeout(err)).To(BeTrue(), "%v", err)
		b, _ := io.ReadAll(c)
		g.Expect(string(b)).To(HavePrefix("HTTP/1.1 408 Request Timeout\r\n"))
		g.Expect(string(b)).To(ContainSubstring(HeaderError + ": " + ReasonHeaderTimeout))
		g.Expect(headRefusedOn(m, "proxy", ReasonHeaderTimeout)).To(Equal(1.0))
	})

	t.Run("net/http's own deadline", func(t *testing.T) {
		g := NewWithT(t)
		sc, c, m := pair(t)
		_, err := io.WriteString(c, "GET /r/x HTTP/1.1\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		buf := make([]byte, 4096)
		_, err = sc.Read(buf)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sc.headBy).NotTo(BeZero(), "the head is open")
		g.Expect(sc.SetReadDeadline(time.Unix(1, 0))).To(Succeed()) // net/http's abortPendingRead
		_, err = sc.Read(buf)
		g.Expect(isTimeout(err)).To(BeTrue(), "%v", err)
		g.Expect(headRefusedOn(m, "proxy", ReasonHeaderTimeout)).To(BeZero())
		// The head ends: no bound is left, net/http's deadline alone holds.
		g.Expect(sc.SetReadDeadline(time.Time{})).To(Succeed())
		_, err = io.WriteString(c, "Host: a\r\n\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = sc.Read(buf)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sc.headBy).To(BeZero(), "no head is open")
		g.Expect(sc.clamped).To(BeFalse())
		g.Expect(c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))).To(Succeed())
		_, err = c.Read(buf)
		g.Expect(isTimeout(err)).To(BeTrue(), "nothing was written to the client: %v", err)
	})
}

// A connection that Shutdown marks closed while the fast loop has just
// served a request and holds a pipelined head serves nothing more: the loop
// used to mark it active again with a plain Store between its idle mark
// and the next head, undoing Shutdown's closed mark, and served on. The
// test hook runs Shutdown exactly there and waits until it has marked the
// connection closed.
func TestFastLoopServesNoPipelinedHeadAfterShutdownMarkedTheConnectionClosed(t *testing.T) {
	g := NewWithT(t)
	var served atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, "r"+r.URL.Path[1:])
	}))
	t.Cleanup(up.Close)
	s := NewServer(func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes: [{name: r, upstream: %q, auth: {type: none}}]\n", up.URL)), "pipelined shutdown test")
		return c, Deps{}, err
	})
	var hooked atomic.Int32
	shut := make(chan error, 1)
	s.fastPipelined = func(fc *fastConn) {
		if hooked.Add(1) != 1 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		go func() {
			defer cancel()
			shut <- fc.fs.Shutdown(ctx)
		}()
		deadline := time.NewTimer(10 * time.Second)
		defer deadline.Stop()
		for fc.state.Load() != fcClosed {
			select {
			case <-deadline.C:
				t.Error("Shutdown did not mark the idle connection closed")
				return
			default:
				runtime.Gosched()
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	select {
	case <-s.Started():
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}

	c, br := dialRaw(t, s.Addr())
	_, err := io.WriteString(c, "GET /r/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /r/2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 r1"}))
	_, err = br.ReadByte()
	g.Expect(err).To(MatchError(io.EOF), "the connection ends after the first answer (a byte here is the second request's answer)")
	g.Expect(hooked.Load()).To(BeNumerically(">=", 1), "the second head was pipelined behind the first")
	g.Expect(served.Load()).To(Equal(int32(1)), "the upstream got the first request only")
	g.Eventually(shut, 20*time.Second).Should(Receive(BeNil()))
}

func TestClientHeaderTimeoutConfig(t *testing.T) {
	g := NewWithT(t)
	const routes = "routes: [{name: a, upstream: 'https://a.example', auth: {type: none}}]\n"
	cfg, err := ParseConfig([]byte(routes), "config test")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.ClientHeaderTimeout).To(Equal(DefaultClientHeaderTimeout))
	cfg, err = ParseConfig([]byte("client_header_timeout: 3s\n"+routes), "config test")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.ClientHeaderTimeout).To(Equal(3 * time.Second))
	_, err = ParseConfig([]byte("client_header_timeout: -1s\n"+routes), "config test")
	g.Expect(err).To(MatchError(ContainSubstring("client_header_timeout: invalid value: must not be negative")))
}

// A pipelined head that arrived whole while net/http served the request
// before it, for longer than client_header_timeout, is served: its first
// byte starts its clock (net/http's background read takes it), but the
// client sent the rest in time and net/http was busy, not waiting for it.
// Past the bound, strictConn reads what is there without waiting.
func TestPipelinedHeadBehindASlowRequestOnNetHTTPIsServed(t *testing.T) {
	g := NewWithT(t)
	const T = time.Second
	var n atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-time.After(2 * T) // the first request takes twice the header timeout
		}
		_, _ = io.WriteString(w, "r"+r.URL.Path[1:])
	}))
	t.Cleanup(up.Close)
	addr, m := headTimeoutProxy(t, up.URL, T)
	c, br := dialRaw(t, addr)
	// A POST: handed to net/http, which keeps the connection.
	_, err := io.WriteString(c, "POST /r/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(n.Load, 10*time.Second).Should(Equal(int32(1)), "the upstream has the first request")
	_, err = io.WriteString(c, "GET /r/2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(readResponses(t, br, 2)).To(Equal([]string{"200 r1", "200 r2"}))
	g.Expect(headRefusedOn(m, "proxy", ReasonHeaderTimeout)).To(BeZero())
}

// gatedListener hands over each accepted connection only once gate is
// closed (accepted tells that one is waiting).
type gatedListener struct {
	net.Listener
	accepted, gate chan struct{}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	close(l.accepted)
	<-l.gate
	return c, nil
}

// A connection accepted just as Close goes through the open connections
// (so it is not among them yet) is closed, not served: it used to be
// added after Close's pass and served until client_idle_timeout.
func TestFastServerClosesAConnectionAcceptedDuringClose(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	gl := &gatedListener{Listener: ln, accepted: make(chan struct{}), gate: make(chan struct{})}
	ll := newLimitListener(gl, 10, NewMetrics(), "proxy", true)
	ll.strict = false
	fs := newFastServer(&Server{}, ll, time.Minute, time.Minute)
	done := make(chan error, 1)
	go func() { done <- fs.serve() }()

	c, br := dialRaw(t, ln.Addr().String())
	g.Eventually(gl.accepted, 10*time.Second).Should(BeClosed())
	fs.Close() // finds no connection
	close(gl.gate)
	g.Eventually(done, 10*time.Second).Should(Receive())
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = br.ReadByte()
	g.Expect(err).To(MatchError(io.EOF), "the connection is closed, not left open")
	fs.mu.Lock()
	defer fs.mu.Unlock()
	g.Expect(fs.conns).To(BeEmpty())
}

// The head's bound ends with the head: a request body that takes longer
// than client_header_timeout to arrive, after a head the fast loop waited
// for and handed over or one net/http read at once, and an upgraded
// connection idle for longer than it, are not cut (a read deadline left
// from the head would).
func TestHeadBoundEndsWithTheHead(t *testing.T) {
	const T = time.Second
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			b := make([]byte, 4)
			if _, err := io.ReadFull(brw, b); err == nil {
				_, _ = c.Write(b)
			}
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, string(b))
	}))
	t.Cleanup(up.Close)
	addr, m := headTimeoutProxy(t, up.URL, T)
	body := strings.Repeat("0123456789", 2)
	for _, tc := range []struct{ name, head, rest string }{
		{"net/http read the head at once", "POST /r/up HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20\r\n\r\n", ""},
		// The fast loop waits for the rest of the head, then hands it over.
		{"handed over after a wait", "GET /r/up HTTP/1.1\r\nHost: 127.0.0.1\r\n", "Content-Length: 20\r\n\r\n"},
	} {
		t.Run("an upload slower than the bound: "+tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, br := dialRaw(t, addr)
			_, err := io.WriteString(c, tc.head)
			g.Expect(err).NotTo(HaveOccurred())
			tick := time.NewTicker(T / 4)
			defer tick.Stop()
			if tc.rest != "" {
				<-tick.C
				_, err = io.WriteString(c, tc.rest)
				g.Expect(err).NotTo(HaveOccurred())
			}
			for i := 0; i < len(body); i += 2 { // 10 pieces, T/4 apart: 2.5 T
				<-tick.C
				_, err = io.WriteString(c, body[i:i+2])
				g.Expect(err).NotTo(HaveOccurred())
			}
			g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 " + body}))
		})
	}
	t.Run("an upgraded connection idle longer than the bound", func(t *testing.T) {
		g := NewWithT(t)
		c, br := dialRaw(t, addr)
		_, err := io.WriteString(c, "GET /r/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(br, nil)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(http.StatusSwitchingProtocols))
		<-time.After(2 * T)
		_, err = io.WriteString(c, "ping")
		g.Expect(err).NotTo(HaveOccurred())
		b := make([]byte, 4)
		_, err = io.ReadFull(br, b)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(b)).To(Equal("ping"))
	})
	if got := headRefusedOn(m, "proxy", ReasonHeaderTimeout); got != 0 {
		t.Fatalf("%v heads refused header-timeout", got)
	}
}

// A head that strictConn stopped scanning (a Content-Length it leaves to
// net/http to refuse) is still answered 408 header-timeout and counted
// when it is not complete within client_header_timeout: it used to be
// closed at the bound without an answer or a count.
func TestHeadTimeoutAfterAContentLengthLeftToNetHTTP(t *testing.T) {
	g := NewWithT(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	const T = time.Second
	addr, m := headTimeoutProxy(t, up.URL, T)
	c, br := dialRaw(t, addr)
	got, n := trickle(t, c, br, 250*time.Millisecond, 40, func(i int) string {
		if i == 0 {
			return "POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1x\r\n"
		}
		return fmt.Sprintf("X-Pad-%d: v\r\n", i)
	})
	g.Expect(n).To(BeNumerically("<", 12), "the connection was still open after %d pieces", n)
	g.Expect(got).To(HavePrefix("HTTP/1.1 408 Request Timeout\r\n"))
	g.Expect(got).To(ContainSubstring("\r\n" + HeaderError + ": " + ReasonHeaderTimeout + "\r\n"))
	g.Expect(headRefusedOn(m, "proxy", ReasonHeaderTimeout)).To(Equal(1.0))
}

// A Content-Length net/http accepts (zero-padded to 19 digits) is one
// strictConn reads too: the head ends there, so its bound does not stay on
// the connection (the next request, after client_header_timeout, was cut
// with no answer or answered 408), and the heads after it are still
// checked (a bare LF passed unchecked).
func TestStrictConnReadsEveryContentLengthNetHTTPAccepts(t *testing.T) {
	g := NewWithT(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, string(b))
	}))
	t.Cleanup(up.Close)
	const T = time.Second
	addr, m := headTimeoutProxy(t, up.URL, T)
	c, br := dialRaw(t, addr)
	_, err := io.WriteString(c, "POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0000000000000000002\r\n\r\nab")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 ab"}))
	<-time.After(T + T/2)
	_, err = io.WriteString(c, "POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\ncd")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 cd"}), "the next request, past the first head's bound")
	_, err = io.WriteString(c, "GET /r/x HTTP/1.1\nHost: 127.0.0.1\n\n")
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.ReadResponse(br, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonBareLF))
	g.Expect(headRefusedOn(m, "proxy", ReasonHeaderTimeout)).To(BeZero())
}

// parseDigits accepts the Content-Length values net/http accepts
// (strconv.ParseUint(v, 10, 63)), with the same value, and no other.
func TestParseDigitsMatchesNetHTTP(t *testing.T) {
	for _, v := range []string{
		"0", "5", "05", "0000000000000000002", "000000000000000000000000000007", "123456789012345678",
		"1234567890123456789", "9223372036854775807", "9223372036854775808", "18446744073709551615",
		"99999999999999999999", "", "+5", "-5", "5a", "0x5", "5 5", "٣",
	} {
		want, err := strconv.ParseUint(v, 10, 63)
		got, ok := parseDigits([]byte(v))
		if ok != (err == nil) || ok && uint64(got) != want {
			t.Errorf("parseDigits(%q) = %d, %v; net/http reads %d, %v", v, got, ok, want, err)
		}
	}
}

// An empty line after a POST's body (old clients send one; net/http skips
// it, RFC 9112 section 2.2) begins no head: the next request may come an
// idle keep-alive wait later, past client_header_timeout, and is served,
// not refused 408 header-timeout.
func TestStrayCRLFAfterAPostBeginsNoHead(t *testing.T) {
	g := NewWithT(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "r"+string(b))
	}))
	t.Cleanup(up.Close)
	const T = time.Second
	addr, m := headTimeoutProxy(t, up.URL, T)
	c, br := dialRaw(t, addr)
	_, err := io.WriteString(c, "POST /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nab\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 rab"}))
	<-time.After(T + T/2)
	_, err = io.WriteString(c, "GET /r/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(readResponses(t, br, 1)).To(Equal([]string{"200 r"}))
	g.Expect(headRefusedOn(m, "proxy", ReasonHeaderTimeout)).To(BeZero())
}
