package sidecar

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/credbroker/credbroker/internal/testpki"
)

// serverWith runs a Server on config (routes to up) and returns it.
func serverWith(t *testing.T, ca *testpki.CA, config string, opts ...Option) *runningServer {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nca_file: "+caFile+"\n"+config)
	return startServer(t, fileLoader(path, Deps{}), opts...)
}

// exchange writes raw on c and reads one response.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response to %q: %v", raw, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func dialT(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

// obs-fold, bare LF and bare CR in a request head get 400 with a reason and
// the connection closed, on a fresh connection and on a keep-alive one
// after a request with a body; nothing reaches the upstream. Well-formed
// heads, bodies that look like heads, and upgrades pass.
func TestStrictHeads(t *testing.T) {
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	rs := serverWith(t, ca, fmt.Sprintf("routes: [{name: r, upstream: %s, auth: {type: none}}]\n", up.url))
	ok := "GET /r/ok HTTP/1.1\r\nHost: localhost\r\n\r\n"
	post := "POST /r/p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 29\r\n\r\nX-A: b\n c\r\nGET /x\nHost: y\n\n12"
	for _, tc := range []struct {
		name, before, bad, reason string
	}{
		{"obs-fold", "", "GET /r/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n", ReasonObsFold},
		{"obs-fold with a tab", "", "GET /r/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n\tb\r\n\r\n", ReasonObsFold},
		{"space before the first header", "", "GET /r/a HTTP/1.1\r\n Host: localhost\r\n\r\n", ReasonObsFold},
		{"bare LF everywhere", "", "GET /r/a HTTP/1.1\nHost: localhost\n\n", ReasonBareLF},
		{"one bare LF", "", "GET /r/a HTTP/1.1\r\nHost: localhost\r\nX-A: q\n\r\n", ReasonBareLF},
		{"bare LF ends the head", "", "GET /r/a HTTP/1.1\r\nHost: localhost\r\n\n", ReasonBareLF},
		{"bare CR", "", "GET /r/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n", ReasonBareCR},
		{"after a keep-alive request", ok, "GET /r/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n", ReasonObsFold},
		{"after a body that looks like a bad head", post, "GET /r/a HTTP/1.1\nHost: localhost\n\n", ReasonBareLF},
		{"a long Content-Length line", "", "POST /r/a HTTP/1.1\r\nHost: localhost\r\nContent-Length:" + strings.Repeat(" ", 80) + "1\r\n\r\nx", ReasonBadContentLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, br := dialT(t, rs.s.Addr())
			if tc.before != "" {
				resp, _ := exchange(t, c, br, tc.before)
				g.Expect(resp.StatusCode).To(Equal(200))
				g.Expect(up.last(t).Path).To(HavePrefix("/"))
			}
			resp, body := exchange(t, c, br, tc.bad)
			g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
			g.Expect(resp.Header.Get(HeaderError)).To(Equal(tc.reason))
			g.Expect(body).To(HavePrefix("credbroker: "))
			_, err := http.ReadResponse(br, nil)
			g.Expect(err).To(HaveOccurred(), "the connection is closed")
			g.Consistently(up.seen).ShouldNot(Receive())
		})
	}

	t.Run("counted by listener and reason", func(t *testing.T) {
		g := NewWithT(t)
		for reason, n := range map[string]float64{ReasonObsFold: 4, ReasonBareLF: 4, ReasonBareCR: 1, ReasonBadContentLen: 1} {
			g.Expect(testutil.ToFloat64(rs.s.o.metrics.headRefused.WithLabelValues("proxy", reason))).To(Equal(n), reason)
		}
	})

	t.Run("good heads", func(t *testing.T) {
		g := NewWithT(t)
		c, br := dialT(t, rs.s.Addr())
		for _, raw := range []string{ok, post, "GET /r/h HTTP/1.1\r\nHost: localhost\r\nX-Long: " + strings.Repeat("v", 5000) + "\r\ncontent-length: 0\r\n\r\n"} {
			resp, _ := exchange(t, c, br, raw)
			g.Expect(resp.StatusCode).To(Equal(200), raw)
			s := up.last(t)
			if strings.HasPrefix(raw, "POST") {
				g.Expect(s.Body).To(Equal("X-A: b\n c\r\nGET /x\nHost: y\n\n12"))
			}
		}
	})
}

// A malformed chunked request body is the client's fault: 400
// bad-request-body, not 502.
func TestMalformedChunkedBody(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	m := NewMetrics()
	rs := serverWith(t, ca, fmt.Sprintf("routes: [{name: r, upstream: %s, auth: {type: none}}]\n", up.url), WithMetrics(m))
	for _, body := range []string{"zz\r\nabc\r\n0\r\n\r\n", "3\r\nabcdef\r\n0\r\n\r\n", "3\nabc\n0\n\n"} {
		c, br := dialT(t, rs.s.Addr())
		resp, _ := exchange(t, c, br, "POST /r/up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), body)
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonBadRequestBody), body)
	}
	g.Expect(testutil.ToFloat64(m.refused.WithLabelValues(ReasonBadRequestBody))).To(BeNumerically("==", 3))
	// A good chunked body still goes through.
	c, br := dialT(t, rs.s.Addr())
	resp, _ := exchange(t, c, br, "POST /r/up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	g.Expect(resp.StatusCode).To(Equal(200))
	// The refused requests may have reached the upstream in part: drain
	// until the good body arrives.
	g.Eventually(func() string {
		select {
		case s := <-up.seen:
			return s.Body
		default:
			return ""
		}
	}, 10*time.Second, time.Millisecond).Should(Equal("abc"), "the upstream got the good chunked body")
}

// At max_connections a new connection is answered 503 connection-limit and
// closed; connections already open keep working; once some close, new
// ones are served again. Refusals are counted.
func TestConnectionLimit(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	m := NewMetrics()
	rs := serverWith(t, ca, fmt.Sprintf("max_connections: {proxy: 5, admin: 2}\nroutes: [{name: r, upstream: %s, auth: {type: none}}]\n", up.url), WithMetrics(m))
	get := "GET /r/x HTTP/1.1\r\nHost: localhost\r\n\r\n"
	var held []net.Conn
	var keep net.Conn
	var keepBR *bufio.Reader
	for i := range 5 {
		c, br := dialT(t, rs.s.Addr())
		resp, _ := exchange(t, c, br, get)
		g.Expect(resp.StatusCode).To(Equal(200))
		up.last(t)
		if i == 0 {
			keep, keepBR = c, br
		} else {
			held = append(held, c)
		}
	}
	g.Expect(testutil.ToFloat64(m.connsOpen.WithLabelValues("proxy"))).To(BeNumerically("==", 5))
	for range 20 {
		c, br := dialT(t, rs.s.Addr())
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
			g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonConnectionLimit))
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		_, err = br.ReadByte()
		g.Expect(err).To(HaveOccurred(), "closed")
		c.Close()
	}
	g.Expect(testutil.ToFloat64(m.connsRefused.WithLabelValues("proxy"))).To(BeNumerically("==", 20))
	// The open connection still works.
	resp, _ := exchange(t, keep, keepBR, get)
	g.Expect(resp.StatusCode).To(Equal(200))
	up.last(t)
	// The flood ends: new connections are served again.
	for _, c := range held {
		c.Close()
	}
	g.Eventually(func() float64 { return testutil.ToFloat64(m.connsOpen.WithLabelValues("proxy")) }, 10*time.Second).Should(BeNumerically("==", 1))
	c, br := dialT(t, rs.s.Addr())
	resp, _ = exchange(t, c, br, get)
	g.Expect(resp.StatusCode).To(Equal(200))
	up.last(t)

	// The admin listener has its own cap. Its answers close their
	// connection (no idle keep-alive can hold an admin slot), so the slots
	// are held by connections that have not sent a request yet.
	a1, abr := dialT(t, rs.s.AdminAddr())
	resp, _ = exchange(t, a1, abr, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(resp.Close).To(BeTrue(), "admin answers close their connection")
	_, err := abr.ReadByte()
	g.Expect(err).To(HaveOccurred(), "closed after the answer")
	dialT(t, rs.s.AdminAddr())
	dialT(t, rs.s.AdminAddr())
	g.Eventually(func() float64 { return testutil.ToFloat64(m.connsOpen.WithLabelValues("admin")) }, 10*time.Second).Should(BeNumerically("==", 2))
	_, abr3 := dialT(t, rs.s.AdminAddr())
	resp, err = http.ReadResponse(abr3, nil)
	if err == nil {
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonConnectionLimit))
	}
	g.Eventually(func() float64 { return testutil.ToFloat64(m.connsRefused.WithLabelValues("admin")) }, 10*time.Second).Should(BeNumerically("==", 1))
}

// The admin listener answers only callers that pass the Host and Origin
// policy.
func TestAdminBrowserPolicy(t *testing.T) {
	g := NewWithT(t)
	m := NewMetrics()
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nallowed_hosts: ['*.pod.internal']\n")
	rs := startServer(t, fileLoader(path, Deps{}), WithMetrics(m))
	for _, tc := range []struct {
		hdr    string
		status int
		reason string
	}{
		{"Host: 127.0.0.1\r\n", 200, ""},
		{"Host: 10.0.0.7:9411\r\n", 200, ""},
		{"Host: credbroker.pod.internal:9411\r\n", 200, ""},
		{"Host: evil.example:9411\r\n", 403, ReasonHostNotAllowed},
		{"Host: localhost\r\nOrigin: http://evil.example\r\n", 403, ReasonOriginRefused},
		{"Host: localhost\r\nSec-Fetch-Site: cross-site\r\n", 403, ReasonCrossSite},
	} {
		c, br := dialT(t, rs.s.AdminAddr())
		resp, _ := exchange(t, c, br, "GET /status HTTP/1.1\r\n"+tc.hdr+"\r\n")
		g.Expect(resp.StatusCode).To(Equal(tc.status), tc.hdr)
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(tc.reason), tc.hdr)
	}
	g.Expect(testutil.ToFloat64(m.adminRefused.WithLabelValues(ReasonHostNotAllowed))).To(BeNumerically("==", 1))
}

// An upgraded connection is a tunnel: bytes that would be a bad head pass.
// An upgrade the upstream declines leaves the connection checked.
func TestStrictHeadsUpgrade(t *testing.T) {
	g := NewWithT(t)
	up := newCountedServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" || r.URL.Path == "/declined" {
			_, _ = io.WriteString(w, "plain")
			return
		}
		echoUpgrade(w)
	})
	rs := serverWith(t, testpki.NewCA(), fmt.Sprintf("routes: [{name: r, upstream: %s, auth: {type: none}}]\n", up.URL))

	c, br := dialT(t, rs.s.Addr())
	resp, _ := exchange(t, c, br, "GET /r/declined HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	g.Expect(resp.StatusCode).To(Equal(200))
	resp, _ = exchange(t, c, br, "GET /r/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n")
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonObsFold))

	c, br = dialT(t, rs.s.Addr())
	_, err := io.WriteString(c, "GET /r/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	resp, err = http.ReadResponse(br, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusSwitchingProtocols))
	_, err = io.WriteString(c, " a\rb\n")
	g.Expect(err).NotTo(HaveOccurred())
	line, err := br.ReadString('\n')
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(line).To(Equal("echo: a\rb\n"))
}

// oneByteConn hands out its input one byte per Read (the worst split of a
// head across reads) and records what was written.
type oneByteConn struct {
	net.Conn
	in  []byte
	out strings.Builder
}

func (c *oneByteConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	p[0] = c.in[0]
	c.in = c.in[1:]
	return 1, nil
}

func (c *oneByteConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *oneByteConn) SetWriteDeadline(time.Time) error { return nil }
func (c *oneByteConn) Close() error                     { return nil }

// The head check keeps its state across reads of any size: fed one byte at
// a time it passes good streams whole (bodies that look like bad heads
// included) and stops a bad one right at the fault.
func TestStrictConnFragmented(t *testing.T) {
	head := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	body := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:  12 \r\n\r\n\n X\r\rY\n\n\r\n"
	for _, tc := range []struct {
		name, in, bad string
		passed        int // bytes handed on before the fault
	}{
		{"heads and a body", head + body + head, "", -1},
		{"chunked: the rest is not read as heads", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\n0\n\n" + " junk\n", "", -1},
		{"content-length case-insensitive", "POST /a HTTP/1.1\r\ncOnTeNt-LeNgTh: 3\r\n\r\n\n\n\n" + head, "", -1},
		{"obs-fold in the second head", head + "GET /b HTTP/1.1\r\nX: a\r\n b\r\n\r\n", ReasonObsFold, len(head) + len("GET /b HTTP/1.1\r\nX: a\r\n")},
		{"bare LF after a body", body + "GET /b HTTP/1.1\nHost: x\r\n\r\n", ReasonBareLF, len(body) + len("GET /b HTTP/1.1")},
		{"bare CR", "GET /b HTTP/1.1\r\nX: a\rb\r\n\r\n", ReasonBareCR, len("GET /b HTTP/1.1\r\nX: a\r")},
		{"content-length too long to read", "POST /a HTTP/1.1\r\nContent-Length: " + strings.Repeat("0", 70) + "1\r\n\r\nx", ReasonBadContentLen, len("POST /a HTTP/1.1\r\nContent-Length: " + strings.Repeat("0", 70) + "1\r")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			raw := &oneByteConn{in: []byte(tc.in)}
			c := &strictConn{limitConn: &limitConn{Conn: raw}}
			var got []byte
			buf := make([]byte, 1)
			var err error
			for {
				var n int
				n, err = c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if tc.bad == "" {
				g.Expect(err).To(Equal(io.EOF))
				g.Expect(string(got)).To(Equal(tc.in))
				return
			}
			g.Expect(c.bad).To(Equal(tc.bad))
			g.Expect(string(got)).To(Equal(tc.in[:tc.passed]))
			var oe *net.OpError
			g.Expect(errors.As(err, &oe)).To(BeTrue())
			g.Expect(oe.Op).To(Equal("read"), "net/http closes without an answer of its own")
			// A full-size read writes the 400 once.
			_, _ = c.Read(make([]byte, 4096))
			_, _ = c.Read(make([]byte, 4096))
			g.Expect(strings.Count(raw.out.String(), "HTTP/1.1 400")).To(Equal(1))
			g.Expect(raw.out.String()).To(ContainSubstring(HeaderError + ": " + tc.bad))
		})
	}
}

// echoUpgrade answers an upgrade to the "echo" protocol: 101, then it
// echoes one line back as "echo:LINE".
func echoUpgrade(w http.ResponseWriter) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	_ = brw.Flush()
	line, _ := brw.ReadString('\n')
	_, _ = brw.WriteString("echo:" + line)
	_ = brw.Flush()
}
