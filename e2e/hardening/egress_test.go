package hardening_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// rawConn is a client connection that sends hand-written requests.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(addr string) *rawConn {
	GinkgoHelper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { c.Close() })
	return &rawConn{c: c, br: bufio.NewReader(c)}
}

// do writes raw and reads one response: status, the reason header and the
// body (status 0 when the connection closed without an answer).
func (rc *rawConn) do(raw string) (int, string, string) {
	GinkgoHelper()
	Expect(rc.c.SetDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
	// A write error is no failure by itself: the server may have answered
	// and closed already.
	_, _ = io.WriteString(rc.c, raw)
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		return 0, "", ""
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Credbroker-Error"), string(b)
}

// closed reports whether the server closed the connection (after the
// response that was read).
func (rc *rawConn) closed() bool {
	Expect(rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
	_, err := rc.br.ReadByte()
	return err != nil
}

// rawHTTPUpstream is a plain-HTTP upstream on 127.0.0.1 that speaks through
// a script, one connection at a time in the order accepted.
type rawHTTPUpstream struct {
	ln  net.Listener
	mu  sync.Mutex
	got []string // "METHOD PATH auth=<yes|no>"
	n   int
}

func startRawHTTPUpstream(script func(n int, c net.Conn, br *bufio.Reader, u *rawHTTPUpstream)) *rawHTTPUpstream {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	u := &rawHTTPUpstream{ln: ln}
	var wg sync.WaitGroup
	DeferCleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.n++
			n := u.n
			u.mu.Unlock()
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				script(n, c, bufio.NewReader(c), u)
			}()
		}
	}()
	return u
}

// read reads one request and records it.
func (u *rawHTTPUpstream) read(br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, req.Body)
	auth := "no"
	if strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") {
		auth = "yes"
	}
	u.mu.Lock()
	u.got = append(u.got, req.Method+" "+req.URL.Path+" auth="+auth)
	u.mu.Unlock()
	return true
}

func (u *rawHTTPUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

func (u *rawHTTPUpstream) conns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

var _ = Describe("the egress edges (issue 15)", func() {
	It("refuses what a browser page can send to the loopback listeners: a foreign Host, Origin, cross-site (item 5)", func() {
		r := newRig(mockauth.Options{})
		p := r.run(fmt.Sprintf(`
token_api: {bindings: [xsuaa-secret]}
allowed_hosts: [credbroker.internal]
routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret}}
  - {name: strict, upstream: %[1]s/strict, auth: {type: bearer, binding: xsuaa-secret}, refuse_origin: true}
  - {name: widget, upstream: %[1]s/widget, auth: {type: none}, allow_cross_site: true}
`, r.up.url))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		port := p.proxyHP[strings.LastIndexByte(p.proxyHP, ':')+1:]
		tokenReq := func(hdr string) string {
			return "GET /.credbroker/v1/token?binding=xsuaa-secret HTTP/1.1\r\n" + hdr + "\r\n"
		}
		for _, tc := range []struct {
			name, raw      string
			status         int
			reason, prefix string
		}{
			{"token API, IP literal", tokenReq("Host: 127.0.0.1:" + port + "\r\n"), 200, "", ""},
			{"token API, localhost", tokenReq("Host: localhost:" + port + "\r\n"), 200, "", ""},
			{"token API, a name of allowed_hosts", tokenReq("Host: credbroker.internal:" + port + "\r\n"), 200, "", ""},
			{"token API, DNS rebinding", tokenReq("Host: evil.example:" + port + "\r\n"), 403, "host-not-allowed", ""},
			{"token API, a cross-origin fetch", tokenReq("Host: 127.0.0.1:" + port + "\r\nOrigin: https://attacker.example\r\n"), 403, "origin-refused", ""},
			{"token API, same-site", tokenReq("Host: localhost:" + port + "\r\nSec-Fetch-Site: same-site\r\n"), 403, "cross-site", ""},
			{"token API, cross-site", tokenReq("Host: localhost:" + port + "\r\nSec-Fetch-Site: cross-site\r\n"), 403, "cross-site", ""},
			{"route, DNS rebinding", "GET /orders/rebind HTTP/1.1\r\nHost: evil.example:" + port + "\r\n\r\n", 403, "host-not-allowed", ""},
			{"route, a cross-site form post", "POST /orders/csrf HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\nOrigin: https://attacker.example\r\nSec-Fetch-Site: cross-site\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi", 403, "cross-site", ""},
			{"route, Origin passed on by a server-side app", "GET /orders/bff HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\nOrigin: https://app.example\r\n\r\n", 200, "", "ok /orders/bff"},
			{"route with refuse_origin", "GET /strict/x HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\nOrigin: https://app.example\r\n\r\n", 403, "origin-refused", ""},
			{"route with allow_cross_site", "GET /widget/x HTTP/1.1\r\nHost: localhost:" + port + "\r\nSec-Fetch-Site: cross-site\r\n\r\n", 200, "", "ok /widget/x"},
		} {
			before := len(r.up.all())
			status, reason, body := dialRaw(p.proxyHP).do(tc.raw)
			Expect(status).To(Equal(tc.status), tc.name)
			Expect(reason).To(Equal(tc.reason), tc.name)
			if tc.status == 403 {
				Expect(body).NotTo(ContainSubstring("access_token"), tc.name)
				Expect(r.up.all()).To(HaveLen(before), "%s: nothing reached the upstream", tc.name)
			}
			if tc.prefix != "" {
				Expect(body).To(HavePrefix(tc.prefix), tc.name)
			}
		}
		// The Origin a server-side app passes on reaches the upstream.
		var bff *rec
		for _, g := range r.up.all() {
			if g.Path == "/orders/bff" {
				bff = &g
			}
		}
		Expect(bff).NotTo(BeNil())
		Expect(bff.Header.Get("Origin")).To(Equal("https://app.example"))
		Expect(bff.Header.Get("Authorization")).To(HavePrefix("Bearer "))

		// Forward-proxy mode keeps the upstream's Host.
		fwd := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: p.proxyHP})}}
		resp, err := fwd.Get("http://" + r.up.host + "/orders/forward")
		Expect(err).NotTo(HaveOccurred())
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200), resp.Header.Get("X-Credbroker-Error"))
		Expect(string(b)).To(Equal("ok /orders/forward"))

		// The admin listener: the pod IP (kubelet) is fine, a rebinding
		// page and a cross-origin fetch are not.
		adminHP := strings.TrimPrefix(p.admin, "http://")
		for _, tc := range []struct {
			hdr    string
			status int
			reason string
		}{
			{"Host: 10.0.0.7:9411\r\n", 200, ""},
			{"Host: evil.example\r\n", 403, "host-not-allowed"},
			{"Host: 127.0.0.1\r\nOrigin: https://attacker.example\r\n", 403, "origin-refused"},
		} {
			status, reason, _ := dialRaw(adminHP).do("GET /healthz HTTP/1.1\r\n" + tc.hdr + "\r\n")
			Expect(status).To(Equal(tc.status), tc.hdr)
			Expect(reason).To(Equal(tc.reason), tc.hdr)
		}
		Expect(p.metric(`credbroker_proxy_refused_total{reason="host-not-allowed"}`)).To(BeNumerically("==", 2))
		Expect(p.metric(`credbroker_proxy_refused_total{reason="origin-refused"}`)).To(BeNumerically("==", 2))
		Expect(p.metric(`credbroker_proxy_refused_total{reason="cross-site"}`)).To(BeNumerically("==", 3))
		Expect(p.metric(`credbroker_admin_refused_total{reason="host-not-allowed"}`)).To(BeNumerically("==", 1))
		p.scan(true)
	})

	It("refuses a Connection header naming Authorization instead of sending the request without its credential (item 6)", func() {
		r := newRig(mockauth.Options{})
		p := r.run(fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", r.up.url))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		for _, raw := range []string{
			"GET /orders/hop HTTP/1.1\r\nHost: localhost\r\nConnection: Authorization\r\n\r\n",                         // the in-line path
			"GET /orders/hop HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, authorization\r\n\r\n",             // listed with others
			"POST /orders/hop HTTP/1.1\r\nHost: localhost\r\nConnection: Authorization\r\nContent-Length: 2\r\n\r\nhi", // the std transport
		} {
			status, reason, body := dialRaw(p.proxyHP).do(raw)
			Expect(status).To(Equal(400), raw)
			Expect(reason).To(Equal("hop-by-hop-credential"), raw)
			Expect(body).To(ContainSubstring("Authorization"))
		}
		for _, g := range r.up.all() {
			Expect(g.Path).NotTo(Equal("/orders/hop"), "no request went upstream without its credential")
		}
		status, _, _ := dialRaw(p.proxyHP).do("GET /orders/fine HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
		Expect(status).To(Equal(200))
		Expect(r.up.all()[len(r.up.all())-1].Header.Get("Authorization")).To(HavePrefix("Bearer "))
		Expect(p.metric(`credbroker_proxy_refused_total{reason="hop-by-hop-credential"}`)).To(BeNumerically("==", 3))
		p.scan(true)
	})

	It("never hands a response the upstream sent unasked on an idle connection to the next request (item 7)", func() {
		r := newRig(mockauth.Options{})
		pooled, wrote := make(chan struct{}), make(chan struct{})
		up := startRawHTTPUpstream(func(n int, c net.Conn, br *bufio.Reader, u *rawHTTPUpstream) {
			for u.read(br) {
				if n == 1 {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
					<-pooled
					// Unasked, on the idle connection.
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Evil: 1\r\nContent-Length: 4\r\n\r\nevil")
					close(wrote)
					// Keep the connection open: the proxy must drop it.
					_, _ = io.Copy(io.Discard, br)
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
			}
		})
		upURL := "http://" + up.ln.Addr().String()
		p := r.run(fmt.Sprintf(`
routes:
  - {name: a, upstream: %[1]s/a, auth: {type: none}}
  - {name: b, upstream: %[1]s/b, auth: {type: bearer, binding: xsuaa-secret}}
`, upURL))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		status, _, body := dialRaw(p.proxyHP).do("GET /a/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
		Expect(status).To(Equal(200))
		Expect(body).To(Equal("first"))
		close(pooled)
		Eventually(wrote).WithTimeout(30 * time.Second).Should(BeClosed())
		// The next request, through another route with its own credential.
		for i := range 3 {
			status, _, body = dialRaw(p.proxyHP).do(fmt.Sprintf("GET /b/%d HTTP/1.1\r\nHost: localhost\r\n\r\n", i))
			Expect(status).To(Equal(200))
			Expect(body).To(Equal("good"), "request %d got the unasked response", i)
		}
		Expect(up.seen()).To(ContainElement("GET /b/0 auth=yes"))
		Expect(up.conns()).To(Equal(2), "the tainted connection was dropped, one fresh one serves the rest")
		p.scan(true)
	})

	It("answers obs-fold, bare-LF and bare-CR heads on route paths and malformed chunked bodies with 400 and a reason (item 11)", func() {
		r := newRig(mockauth.Options{})
		p := r.run(fmt.Sprintf("routes:\n  - {name: open, upstream: %s/open, auth: {type: none}}\n", r.up.url))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		for _, tc := range []struct{ name, raw, reason string }{
			{"obs-fold", "GET /open/fold HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n", "obs-fold"},
			{"bare LF", "GET /open/lf HTTP/1.1\nHost: localhost\n\n", "bare-lf"},
			{"one bare LF among CRLFs", "GET /open/lf HTTP/1.1\r\nHost: localhost\r\nX-A: a\n\r\n", "bare-lf"},
			{"bare CR", "GET /open/cr HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n", "bare-cr"},
			{"malformed chunk size", "POST /open/chunk HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "bad-request-body"},
			{"chunk longer than announced", "POST /open/chunk HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", "bad-request-body"},
		} {
			rc := dialRaw(p.proxyHP)
			status, reason, _ := rc.do(tc.raw)
			Expect(status).To(Equal(400), tc.name)
			Expect(reason).To(Equal(tc.reason), tc.name)
			Expect(rc.closed()).To(BeTrue(), "%s: the connection is closed", tc.name)
		}
		// A keep-alive connection: a good request, then a folded one.
		rc := dialRaw(p.proxyHP)
		status, _, _ := rc.do("GET /open/good HTTP/1.1\r\nHost: localhost\r\n\r\n")
		Expect(status).To(Equal(200))
		status, reason, _ := rc.do("GET /open/fold2 HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n\tb\r\n\r\n")
		Expect(status).To(Equal(400))
		Expect(reason).To(Equal("obs-fold"))
		// No refused head reached the upstream. (A chunked body is streamed:
		// the upstream saw those requests begin, and their bodies cut off.)
		for _, g := range r.up.all() {
			Expect(g.Path).To(BeElementOf("/open/good", "/open/chunk"), "a refused head reached the upstream")
		}
		p.scan(true)
	})

	It("shows upstream URLs in /status without their query string (item 13)", func() {
		r := newRig(mockauth.Options{})
		key := r.secrets.Plant("API key in an upstream query")
		p := r.run(fmt.Sprintf("routes:\n  - {name: keyed, upstream: '%s/keyed?apikey=%s', auth: {type: none}}\n", r.up.url, key))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		_, st := p.get("/status")
		Expect(string(st)).NotTo(ContainSubstring(key))
		Expect(string(st)).To(ContainSubstring(r.up.url + "/keyed?redacted"))
		// The key still goes upstream.
		status, _, _ := dialRaw(p.proxyHP).do("GET /keyed/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
		Expect(status).To(Equal(200))
		Expect(r.up.all()[len(r.up.all())-1].URI).To(ContainSubstring("apikey=" + key))
		p.scan(true)
	})

	It("caps the client connections of a listener: through a flood the open connections keep working and memory stays bounded; afterwards new connections succeed (item 12)", func() {
		r := newRig(mockauth.Options{})
		// CI: a small cap and a few hundred connections; soak: the default
		// cap (512) and the 4,000 idle connections of the report.
		limit, flood, cfg := 50, scale(300, 4000), "max_connections: {proxy: 50}\n"
		if soak() {
			limit, cfg = 512, ""
		}
		p := r.run(cfg + fmt.Sprintf("routes:\n  - {name: open, upstream: %s/open, auth: {type: none}}\n", r.up.url))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		get := "GET /open/x HTTP/1.1\r\nHost: localhost\r\n\r\n"
		keep := dialRaw(p.proxyHP)
		status, _, _ := keep.do(get)
		Expect(status).To(Equal(200))
		base := p.metric("process_resident_memory_bytes")
		Expect(base).To(BeNumerically(">", 0))

		// The flood: connections that each send one request and then sit
		// idle, kept alive.
		conns := make([]net.Conn, 0, flood)
		held := 0
		for range flood {
			c, err := net.DialTimeout("tcp", p.proxyHP, 10*time.Second)
			Expect(err).NotTo(HaveOccurred())
			conns = append(conns, c)
			Expect(c.SetDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
			_, _ = io.WriteString(c, get)
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					held++
				} else {
					Expect(resp.StatusCode).To(Equal(503))
					Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("connection-limit"))
				}
			}
		}
		DeferCleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		Expect(held).To(BeNumerically("<=", limit-1), "the flood holds at most the cap (one slot is the connection opened before)")
		// Up to the cap the flood holds connections; every one beyond is
		// closed at accept and counted.
		Eventually(func() float64 { return p.metric(`credbroker_connections_refused_total{listener="proxy"}`) }).WithTimeout(60 * time.Second).
			Should(BeNumerically(">=", flood-(limit-1)))
		Expect(p.metric(`credbroker_connections_open{listener="proxy"}`)).To(BeNumerically("<=", limit))
		// The connection opened before the flood keeps working.
		for range 5 {
			status, _, _ = keep.do(get)
			Expect(status).To(Equal(200), "a request on a connection opened before the flood")
		}
		// A new connection is turned away at once, with a reason when the
		// answer arrives before the close.
		status, reason, _ := dialRaw(p.proxyHP).do(get)
		Expect(status).To(BeElementOf(0, 503))
		if status == 503 {
			Expect(reason).To(Equal("connection-limit"))
		}
		// Memory stays bounded: each held keep-alive connection costs about
		// 30 KiB, about 160 KiB in this race-enabled binary; the refused ones
		// hold nothing once closed. Bound: 192 KiB per connection of the cap
		// plus 48 MiB.
		rss := p.metric("process_resident_memory_bytes")
		bound := float64(limit)*192*1024 + 48<<20
		GinkgoWriter.Printf("RSS %.1f MiB before the flood of %d connections, %.1f MiB during it (cap %d)\n", base/(1<<20), flood, rss/(1<<20), limit)
		Expect(rss-base).To(BeNumerically("<", bound), "RSS grew by %.1f MiB", (rss-base)/(1<<20))

		// The flood ends: new connections are served again at once.
		for _, c := range conns {
			c.Close()
		}
		Eventually(func() float64 { return p.metric(`credbroker_connections_open{listener="proxy"}`) }).WithTimeout(60 * time.Second).Should(BeNumerically("<=", 1))
		for i := range 10 {
			status, _, _ = dialRaw(p.proxyHP).do(get)
			Expect(status).To(Equal(200), "new connection %d after the flood", i)
		}
		status, _, _ = keep.do(get)
		Expect(status).To(Equal(200))
		p.scan(true)
	})
})
