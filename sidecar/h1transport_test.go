package sidecar

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

// countedServer is a plain HTTP/1.1 upstream that counts the connections
// it accepted and closed.
type countedServer struct {
	*httptest.Server
	accepted, closed atomic.Int32
}

func newCountedServer(t *testing.T, h http.HandlerFunc) *countedServer {
	t.Helper()
	s := &countedServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.accepted.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// plainProxy serves a Proxy with route "r" to upstream (auth none) and
// returns it with a client of its own.
func plainProxy(t *testing.T, upstream, extra string) (*testProxy, *http.Client) {
	t.Helper()
	tp := newTestProxy(t, testpki.NewCA(), extra+fmt.Sprintf("routes: [{name: r, upstream: %q, auth: {type: none}}]\n", upstream), Deps{})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return tp, &http.Client{Transport: tr}
}

func call(t *testing.T, cl *http.Client, method, u string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// fastIdle is the number of idle fast-path connections of p.
func fastIdle(p *Proxy) int {
	n := 0
	for _, t := range p.transports {
		for _, h := range *t.hosts.Load() {
			h.mu.Lock()
			n += len(h.idle)
			h.mu.Unlock()
		}
	}
	return n
}

// h1Goroutines returns the stacks of goroutines running fast-path code.
func h1Goroutines() string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "sidecar.(*h1") || strings.Contains(g, "sidecar.countingReader") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func TestFastPathReusesOneConnection(t *testing.T) {
	g := NewWithT(t)
	up := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		_, _ = io.WriteString(w, "ok "+r.URL.RawQuery)
	})
	tp, cl := plainProxy(t, up.URL, "")
	for i := range 50 {
		resp, body := call(t, cl, "GET", fmt.Sprintf("%s/r/x?i=%d", tp.srv.URL, i), nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(body).To(Equal(fmt.Sprintf("ok i=%d", i)))
		g.Expect(resp.Header.Get("X-Proto")).To(Equal("HTTP/1.1"))
	}
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 1))
	g.Expect(fastIdle(tp.p)).To(Equal(1), "the connection is in the fast path's pool")

	// Close drops it.
	tp.p.Close()
	g.Expect(fastIdle(tp.p)).To(Equal(0))
	g.Eventually(up.closed.Load, 10*time.Second).Should(BeNumerically("==", 1))
}

func TestFastPathResponseShapes(t *testing.T) {
	g := NewWithT(t)
	up := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			_, _ = io.WriteString(w, "one,")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "two")
		case "/head":
			w.Header().Set("Content-Length", "10")
			if r.Method != "HEAD" {
				_, _ = io.WriteString(w, "0123456789")
			}
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/early":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			_, _ = io.WriteString(w, "final")
		default:
			_, _ = io.WriteString(w, "plain")
		}
	})
	tp, cl := plainProxy(t, up.URL, "")

	resp, body := call(t, cl, "GET", tp.srv.URL+"/r/chunked", nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(resp.TransferEncoding).To(Equal([]string{"chunked"}))
	g.Expect(body).To(Equal("one,two"))

	resp, body = call(t, cl, "HEAD", tp.srv.URL+"/r/head", nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(resp.ContentLength).To(BeNumerically("==", 10))
	g.Expect(body).To(BeEmpty())

	resp, body = call(t, cl, "GET", tp.srv.URL+"/r/204", nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
	g.Expect(body).To(BeEmpty())

	resp, _ = call(t, cl, "GET", tp.srv.URL+"/r/304", http.Header{"If-None-Match": {`"v1"`}})
	g.Expect(resp.StatusCode).To(Equal(http.StatusNotModified))
	g.Expect(resp.Header.Get("ETag")).To(Equal(`"v1"`))

	// 103 Early Hints reaches the app, then the final response.
	var codes []int
	var link string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		codes = append(codes, code)
		link = h.Get("Link")
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", tp.srv.URL+"/r/early", nil)
	resp, err := cl.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(string(b)).To(Equal("final"))
	g.Expect(codes).To(Equal([]int{http.StatusEarlyHints}))
	g.Expect(link).To(Equal("</a.css>; rel=preload"))

	resp, body = call(t, cl, "GET", tp.srv.URL+"/r/plain", nil)
	g.Expect(body).To(Equal("plain"))
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 1), "every shape left the connection reusable")
	g.Expect(fastIdle(tp.p)).To(Equal(1))
}

func TestFastPathConnectionClose(t *testing.T) {
	g := NewWithT(t)
	up := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	tp, cl := plainProxy(t, up.URL, "")
	for range 3 {
		resp, body := call(t, cl, "GET", tp.srv.URL+"/r/x", nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(body).To(Equal("bye"))
	}
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 3))
	g.Expect(fastIdle(tp.p)).To(Equal(0))
}

// rawUpstream accepts connections and runs script on each with the number
// of the connection (from 1); it records every request line it reads.
type rawUpstream struct {
	ln       net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	requests []string
}

func newRawUpstream(t *testing.T, script func(n int32, c net.Conn, br *bufio.Reader, u *rawUpstream)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := u.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				script(n, c, bufio.NewReader(c), u)
			}()
		}
	}()
	return u
}

func (u *rawUpstream) url() string { return "http://" + u.ln.Addr().String() }

// read reads one request and records "METHOD /path".
func (u *rawUpstream) read(br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, req.Body)
	u.mu.Lock()
	u.requests = append(u.requests, req.Method+" "+req.URL.Path)
	u.mu.Unlock()
	return true
}

func (u *rawUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.requests...)
}

// An upstream that closes a keep-alive connection just as the next request
// arrives: a GET is retried on a fresh connection, a POST is never replayed.
func TestFastPathStaleConnection(t *testing.T) {
	g := NewWithT(t)
	up := newRawUpstream(t, func(_ int32, c net.Conn, br *bufio.Reader, u *rawUpstream) {
		// Answer the first request, read the second and close.
		if !u.read(br) {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		u.read(br)
	})
	tp, cl := plainProxy(t, up.url(), "")
	resp, body := call(t, cl, "GET", tp.srv.URL+"/r/1", nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(body).To(Equal("ok"))
	resp, body = call(t, cl, "GET", tp.srv.URL+"/r/2", nil)
	g.Expect(resp.StatusCode).To(Equal(200), "retried on a fresh connection")
	g.Expect(body).To(Equal("ok"))
	g.Expect(up.seen()).To(Equal([]string{"GET /1", "GET /2", "GET /2"}))
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 2))

	// A POST (the std transport) on a connection that the upstream closes
	// after reading it: 502, sent once.
	resp, _ = call(t, cl, "POST", tp.srv.URL+"/r/p1", nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	resp, _ = call(t, cl, "POST", tp.srv.URL+"/r/p2", nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonUpstreamUnreachable))
	posts := 0
	for _, s := range up.seen() {
		if s == "POST /p2" {
			posts++
		}
	}
	g.Expect(posts).To(Equal(1), "a POST is never replayed")
}

// closingUpstream answers one request per connection with "ok" and closes
// it (without saying so); closed gets a value each time.
func closingUpstream(t *testing.T) (*rawUpstream, chan struct{}) {
	closed := make(chan struct{}, 10)
	up := newRawUpstream(t, func(_ int32, c net.Conn, br *bufio.Reader, u *rawUpstream) {
		if u.read(br) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		c.Close()
		closed <- struct{}{}
	})
	return up, closed
}

// An upstream that closes idle connections: the pooled one is seen to be
// closed before reuse and a new one is dialled.
func TestFastPathUpstreamClosesIdle(t *testing.T) {
	g := NewWithT(t)
	up, closed := closingUpstream(t)
	tp, cl := plainProxy(t, up.url(), "")
	for range 3 {
		resp, body := call(t, cl, "GET", tp.srv.URL+"/r/x", nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(body).To(Equal("ok"))
		g.Eventually(closed, 10*time.Second).Should(Receive())
	}
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 3))
}

// Bytes after the response (a response the framing does not account for,
// or a body that contradicts it) never leave the connection in the pool:
// the next response comes from a fresh connection.
func TestFastPathOutOfStepResponses(t *testing.T) {
	for _, tc := range []struct{ name, first, body string }{
		{"extra response", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", "ok"},
		{"CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 45\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			up := newRawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader, u *rawUpstream) {
				for u.read(br) {
					if n == 1 {
						_, _ = io.WriteString(c, tc.first)
					} else {
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
					}
				}
			})
			tp, cl := plainProxy(t, up.url(), "")
			resp, body := call(t, cl, "GET", tp.srv.URL+"/r/1", nil)
			g.Expect(resp.StatusCode).To(Equal(200))
			g.Expect(body).To(Equal(tc.body))
			resp, body = call(t, cl, "GET", tp.srv.URL+"/r/2", nil)
			g.Expect(resp.StatusCode).To(Equal(200))
			g.Expect(body).To(Equal("good"))
			g.Expect(up.accepted.Load()).To(BeNumerically("==", 2))
		})
	}
}

func TestConnProbe(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	pair := func() (net.Conn, net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		g.Expect(err).NotTo(HaveOccurred())
		s, err := ln.Accept()
		g.Expect(err).NotTo(HaveOccurred())
		return c, s
	}
	c, s := pair()
	defer c.Close()
	p := newConnProbe(c)
	g.Expect(p.idleOK()).To(BeTrue())
	_, _ = s.Write([]byte("x"))
	g.Eventually(p.idleOK, 10*time.Second).Should(BeFalse(), "unsolicited bytes")

	c2, s2 := pair()
	defer c2.Close()
	p2 := newConnProbe(c2)
	g.Expect(p2.idleOK()).To(BeTrue())
	s2.Close()
	g.Eventually(p2.idleOK, 10*time.Second).Should(BeFalse(), "closed by the peer")
	c2.Close()
	g.Expect(p2.idleOK()).To(BeFalse(), "closed here")
	s.Close()
}

func TestFastPathErrors(t *testing.T) {
	g := NewWithT(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	closedAddr := l.Addr().String()
	l.Close()
	block := make(chan struct{})
	slow := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	defer close(block)
	tp := newTestProxy(t, testpki.NewCA(), fmt.Sprintf(`
timeouts: {response_header: 200ms}
routes:
  - {name: down, upstream: "http://%s", auth: {type: none}}
  - {name: slow, upstream: "%s", auth: {type: none}}
`, closedAddr, slow.URL), Deps{})
	cl := &http.Client{Transport: &http.Transport{}}
	resp, _ := call(t, cl, "GET", tp.srv.URL+"/down/x", nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonUpstreamUnreachable))
	resp, _ = call(t, cl, "GET", tp.srv.URL+"/slow/x", nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusGatewayTimeout))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonUpstreamTimeout))
	g.Eventually(slow.closed.Load, 10*time.Second).Should(BeNumerically("==", 1), "the timed-out connection is closed")
	g.Expect(fastIdle(tp.p)).To(Equal(0))
}

// newH1 is a bare fast-path transport for the tests that drive RoundTrip.
func newH1(t *testing.T, idle time.Duration) *h1Transport {
	return newH1TLS(t, idle, nil)
}

func newH1TLS(t *testing.T, idle time.Duration, tc *tls.Config) *h1Transport {
	t.Helper()
	cfg := &Config{MaxIdleConnsPerHost: 4, Timeouts: Timeouts{TLSHandshake: 5 * time.Second, ResponseHeader: 10 * time.Second, IdleConn: idle}}
	tr := newH1Transport(&http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}, (&net.Dialer{Timeout: 5 * time.Second}).DialContext, tc, cfg)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func TestFastPathBodyNotReadToEnd(t *testing.T) {
	g := NewWithT(t)
	up := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 100<<10))
	})
	tr := newH1(t, time.Minute)
	req, _ := http.NewRequest("GET", up.URL+"/big", nil)
	resp, err := tr.RoundTrip(req)
	g.Expect(err).NotTo(HaveOccurred())
	buf := make([]byte, 10)
	_, err = io.ReadFull(resp.Body, buf)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.Body.Close()).To(Succeed())
	_, err = resp.Body.Read(buf)
	g.Expect(err).To(HaveOccurred(), "read after close")
	g.Eventually(up.closed.Load, 10*time.Second).Should(BeNumerically("==", 1), "closed, not pooled")

	resp, err = tr.RoundTrip(req)
	g.Expect(err).NotTo(HaveOccurred())
	b, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(b).To(HaveLen(100 << 10))
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 2))
}

func TestFastPathIdleTimeout(t *testing.T) {
	g := NewWithT(t)
	up := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	tr := newH1(t, 50*time.Millisecond)
	req, _ := http.NewRequest("GET", up.URL, nil)
	resp, err := tr.RoundTrip(req)
	g.Expect(err).NotTo(HaveOccurred())
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	g.Eventually(up.closed.Load, 10*time.Second).Should(BeNumerically("==", 1), "dropped after idle_conn")
	resp, err = tr.RoundTrip(req)
	g.Expect(err).NotTo(HaveOccurred())
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 2))
}

// Cancelling the request context ends a blocked header read and a blocked
// body read; nothing of the fast path keeps running.
func TestFastPathCancel(t *testing.T) {
	g := NewWithT(t)
	release := make(chan struct{})
	defer close(release)
	up := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mid" {
			_, _ = io.WriteString(w, "part")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	tr := newH1(t, time.Minute)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", up.URL+"/mid", nil)
	resp, err := tr.RoundTrip(req)
	g.Expect(err).NotTo(HaveOccurred())
	buf := make([]byte, 4)
	_, err = io.ReadFull(resp.Body, buf)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(buf)).To(Equal("part"))
	readErr := make(chan error, 1)
	go func() { _, err := resp.Body.Read(buf); readErr <- err }()
	cancel()
	g.Eventually(readErr, 10*time.Second).Should(Receive(MatchError(context.Canceled)))
	resp.Body.Close()

	ctx, cancel = context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", up.URL+"/headers", nil)
	rtErr := make(chan error, 1)
	go func() { _, err := tr.RoundTrip(req); rtErr <- err }()
	g.Eventually(up.accepted.Load, 10*time.Second).Should(BeNumerically("==", 2))
	cancel()
	g.Eventually(rtErr, 10*time.Second).Should(Receive(MatchError(context.Canceled)))

	g.Eventually(up.closed.Load, 10*time.Second).Should(BeNumerically("==", 2))
	g.Eventually(h1Goroutines, 10*time.Second).Should(BeEmpty())
	g.Expect(fastIdle(&Proxy{transports: []*h1Transport{tr}})).To(Equal(0))
}

// A TLS upstream that speaks only HTTP/1.1 is served by the fast path after
// its first answer, with the route's client certificate; a rotated
// certificate is presented on the next connection.
func TestFastPathTLSClientCertificate(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstreamProto(t, ca, false)
	var mu sync.Mutex
	conns := map[string]bool{} // client addresses seen by the upstream
	accepted := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
	up.extra = func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		s := seen{Proto: r.Proto}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			s.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		up.seen <- s
	}
	first := ca.Issue(testpki.WithCommonName("app-1"), testpki.ClientAuth()).TLSCertificate()
	cert := newFakeCert(&first)
	tp := newTestProxy(t, ca, fmt.Sprintf(`
certificates: [{name: connector, dir: /unused}]
routes:
  - {name: events, upstream: %s, auth: {type: mtls, certificate: connector}}
`, up.url), Deps{Certificates: map[string]ClientCertificate{"connector": cert}})
	cl := &http.Client{Transport: &http.Transport{}}
	for i := range 5 {
		resp, _ := call(t, cl, "GET", tp.srv.URL+"/events/x", nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		s := up.last(t)
		g.Expect(s.ClientCN).To(Equal("app-1"))
		g.Expect(s.Proto).To(Equal("HTTP/1.1"))
		if i == 0 {
			g.Expect(fastIdle(tp.p)).To(Equal(0), "the first request learns the protocol")
		} else {
			g.Expect(fastIdle(tp.p)).To(Equal(1))
		}
	}
	g.Expect(accepted()).To(Equal(2), "one for the std transport, one for the fast path")

	second := ca.Issue(testpki.WithCommonName("app-2"), testpki.ClientAuth()).TLSCertificate()
	cert.cur.Store(&second)
	for range 3 {
		resp, _ := call(t, cl, "GET", tp.srv.URL+"/events/x", nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(up.last(t).ClientCN).To(Equal("app-2"))
	}
	g.Expect(accepted()).To(Equal(3))
	g.Expect(fastIdle(tp.p)).To(Equal(1))
}

// An upstream that offers HTTP/2 stays on the std transport.
func TestFastPathLeavesHTTP2Alone(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tp := newTestProxy(t, ca, fmt.Sprintf("routes: [{name: r, upstream: %s, auth: {type: none}}]\n", up.url), Deps{})
	cl := &http.Client{Transport: &http.Transport{}}
	for range 5 {
		resp, _ := call(t, cl, "GET", tp.srv.URL+"/r/x", nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(up.last(t).Proto).To(Equal("HTTP/2.0"))
	}
	g.Expect(fastIdle(tp.p)).To(Equal(0))
}

func TestFastEligible(t *testing.T) {
	body := func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader("x")); r.ContentLength = 1 }
	for _, tc := range []struct {
		name   string
		method string
		mod    func(*http.Request)
		want   bool
	}{
		{"GET", "GET", nil, true},
		{"HEAD", "HEAD", nil, true},
		{"OPTIONS", "OPTIONS", nil, true},
		{"no body", "GET", func(r *http.Request) { r.Body = http.NoBody }, true},
		{"POST", "POST", nil, false},
		{"DELETE", "DELETE", nil, false},
		{"POST with Idempotency-Key", "POST", func(r *http.Request) { r.Header.Set("Idempotency-Key", "k") }, true},
		{"POST with X-Idempotency-Key", "POST", func(r *http.Request) { r.Header.Set("X-Idempotency-Key", "k") }, true},
		{"body", "GET", body, false},
		{"body with key", "PUT", func(r *http.Request) { body(r); r.Header.Set("Idempotency-Key", "k") }, false},
		{"unknown length", "GET", func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader("")); r.ContentLength = -1 }, false},
		{"chunked", "GET", func(r *http.Request) { r.TransferEncoding = []string{"chunked"} }, false},
		{"upgrade", "GET", func(r *http.Request) { r.Header.Set("Connection", "Upgrade"); r.Header.Set("Upgrade", "websocket") }, false},
		{"expect", "GET", func(r *http.Request) { r.Header.Set("Expect", "100-continue") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://u.example/x", nil)
			if tc.mod != nil {
				tc.mod(req)
			}
			NewWithT(t).Expect(fastEligible(req)).To(Equal(tc.want))
		})
	}
}

// Requests with a body and upgrades take the std transport; an upgrade
// still works end to end.
func TestFastPathFallbacks(t *testing.T) {
	g := NewWithT(t)
	up := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			echoUpgrade(w)
			return
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+":"+string(b))
	})
	tp, cl := plainProxy(t, up.URL, "")
	req, _ := http.NewRequest("POST", tp.srv.URL+"/r/x", strings.NewReader("payload"))
	resp, err := cl.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g.Expect(string(b)).To(Equal("POST:payload"))
	g.Expect(fastIdle(tp.p)).To(Equal(0), "served by the std transport")

	c, err := net.Dial("tcp", tp.srv.Listener.Addr().String())
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(c, "GET /r/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusSwitchingProtocols))
	_, err = io.WriteString(c, "hello\n")
	g.Expect(err).NotTo(HaveOccurred())
	line, err := br.ReadString('\n')
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(line).To(Equal("echo:hello\n"))
	g.Expect(fastIdle(tp.p)).To(Equal(0))
}

// Bytes after the response inside the TLS record that carried its end
// stay in the TLS layer's buffer, out of sight of the socket probe and the
// bufio.Reader: they keep the connection out of the pool too.
func TestFastPathTLSOutOfStep(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.WithIPs("127.0.0.1"), testpki.ServerAuth())
	// Headers and body fill exactly two bufio buffers (8192 bytes).
	first := "HTTP/1.1 200 OK\r\nContent-Length: 8151\r\n\r\n" + strings.Repeat("b", 8151)
	g.Expect(first).To(HaveLen(8192))
	up := newRawUpstream(t, func(n int32, c net.Conn, _ *bufio.Reader, _ *rawUpstream) {
		sc := testpki.ServerTLSConfig(leaf, nil)
		sc.DynamicRecordSizingDisabled = true // one write, one record
		tc := tls.Server(c, sc)
		defer tc.Close()
		br := bufio.NewReader(tc)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if n == 1 {
				_, _ = io.WriteString(tc, first+"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil") // one record
			} else {
				_, _ = io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
			}
		}
	})
	ln := up.ln
	tr := newH1TLS(t, time.Minute, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	u := "https://" + ln.Addr().String() + "/x"
	tr.host("https", ln.Addr().String()).h1.Store(true) // as if learned
	for _, want := range []int{8151, 4} {
		req, _ := http.NewRequest("GET", u, nil)
		resp, err := tr.RoundTrip(req)
		g.Expect(err).NotTo(HaveOccurred())
		b, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		g.Expect(b).To(HaveLen(want))
		if want == 4 {
			g.Expect(string(b)).To(Equal("good"))
		}
	}
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 2))
}

// An upstream learned to speak HTTP/1.1 that now refuses an HTTP/1.1-only
// handshake (it went HTTP/2-only): the request is served by the std
// transport over HTTP/2 and the fast path is given up for it.
func TestFastPathHandshakeRefusedFallsBack(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	var protos sync.Map
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		_, _ = io.WriteString(w, r.Proto)
	}))
	up.TLS = testpki.ServerTLSConfig(ca.Issue(testpki.WithIPs("127.0.0.1"), testpki.ServerAuth()), nil)
	up.TLS.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		for _, p := range hello.SupportedProtos {
			if p == "h2" {
				return nil, nil
			}
		}
		return nil, errors.New("h2 only")
	}
	up.EnableHTTP2 = true
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.StartTLS()
	t.Cleanup(up.Close)
	tr := newH1TLS(t, time.Minute, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	h := tr.host("https", up.Listener.Addr().String())
	h.h1.Store(true) // as if learned
	for range 2 {
		req, _ := http.NewRequest("GET", up.URL+"/x", nil)
		resp, err := tr.RoundTrip(req)
		g.Expect(err).NotTo(HaveOccurred())
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		g.Expect(string(b)).To(Equal("HTTP/2.0"))
		g.Expect(h.h1.Load()).To(BeFalse())
	}
}

// An upstream that sends a complete response and then, while the
// connection sits idle in the pool, an unsolicited second one: the next
// request (another route with its own credential would share this pool)
// must never get that second response; the connection is discarded and the
// request sent on a fresh one.
func TestFastPathUnsolicitedResponseWhileIdle(t *testing.T) {
	g := NewWithT(t)
	up, pooled, wrote := unsolicitedUpstream(t)
	tp, cl := plainProxy(t, up.url(), "")
	resp, body := call(t, cl, "GET", tp.srv.URL+"/r/1", nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(body).To(Equal("firs"))
	g.Eventually(func() int { return fastIdle(tp.p) }, 10*time.Second).Should(Equal(1))
	close(pooled)
	<-wrote
	// The idle connection now holds unread bytes.
	idleConn := func() *h1Conn {
		for _, tr := range tp.p.transports {
			for _, h := range *tr.hosts.Load() {
				h.mu.Lock()
				defer h.mu.Unlock()
				if len(h.idle) > 0 {
					return h.idle[0]
				}
			}
		}
		return nil
	}()
	g.Expect(idleConn).NotTo(BeNil())
	g.Eventually(idleConn.probe.idleOK, 10*time.Second).Should(BeFalse())
	for i := range 3 {
		resp, body = call(t, cl, "GET", fmt.Sprintf("%s/r/%d", tp.srv.URL, i+2), nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(body).To(Equal("good"), "request %d", i)
	}
	g.Expect(up.accepted.Load()).To(BeNumerically("==", 2), "the tainted connection was discarded")
}

// A rotated client certificate is presented on the next request to an
// HTTP/2 upstream even while the connection the old one opened is busy:
// HTTP/2 shares that connection between requests, so it is never idle
// while traffic flows, and closing idle connections alone kept it in use.
func TestRotatedCertificateRetiresBusyHTTP2Connections(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstreamProto(t, ca, true)
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	up.extra = func(w http.ResponseWriter, r *http.Request) {
		s := seen{Path: r.URL.Path, Proto: r.Proto}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			s.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		if r.URL.Path == "/slow" {
			w.WriteHeader(200)
			http.NewResponseController(w).Flush()
			held <- struct{}{}
			<-release
			return
		}
		up.seen <- s
	}
	t.Cleanup(func() { close(release) })
	first := ca.Issue(testpki.WithCommonName("app-1"), testpki.ClientAuth()).TLSCertificate()
	cert := newFakeCert(&first)
	tp := newTestProxy(t, ca, fmt.Sprintf(`
certificates: [{name: connector, dir: /unused}]
routes:
  - {name: events, upstream: %s, auth: {type: mtls, certificate: connector}}
`, up.url), Deps{Certificates: map[string]ClientCertificate{"connector": cert}})
	cl := &http.Client{Transport: &http.Transport{}}
	resp, _ := call(t, cl, "GET", tp.srv.URL+"/events/x", nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	s := up.last(t)
	g.Expect(s.Proto).To(Equal("HTTP/2.0"))
	g.Expect(s.ClientCN).To(Equal("app-1"))

	// A long response keeps the HTTP/2 connection busy.
	slow, err := cl.Get(tp.srv.URL + "/events/slow")
	g.Expect(err).NotTo(HaveOccurred())
	defer slow.Body.Close()
	g.Eventually(held, 10*time.Second).Should(Receive())

	second := ca.Issue(testpki.WithCommonName("app-2"), testpki.ClientAuth()).TLSCertificate()
	cert.cur.Store(&second)
	for range 3 {
		resp, _ := call(t, cl, "GET", tp.srv.URL+"/events/x", nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(up.last(t).ClientCN).To(Equal("app-2"), "the rotated certificate, although the old connection is busy")
	}
}
