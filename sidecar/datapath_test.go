package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/oauth1"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The response_header timeout bounds the wait for the head only: a body
// that arrives after it has passed is relayed whole, on the fast loop and
// on the net/http path (the deadline armed for the head is left in place
// after it and cleared by the first read of the body, h1Conn.readBy).
func TestBodyOutlivesResponseHeaderTimeout(t *testing.T) {
	g := NewWithT(t)
	var mu sync.Mutex
	release := map[string]chan struct{}{}
	wrote := make(chan string, 10)
	gate := func(key string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if release[key] == nil {
			release[key] = make(chan struct{})
		}
		return release[key]
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/silent") {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		wrote <- r.URL.RawQuery
		select {
		case <-gate(r.URL.RawQuery):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "-last")
	}))
	t.Cleanup(up.Close)
	routes := fmt.Sprintf("timeouts: {response_header: 100ms}\nroutes: [{name: r, upstream: '%s', auth: {type: none}}, {name: silent, upstream: '%s/silent', auth: {type: none}}]\n", up.URL, up.URL)
	cfg, err := ParseConfig([]byte(routes), "net/http path")
	g.Expect(err).NotTo(HaveOccurred())
	p, err := NewProxy(cfg, Deps{})
	g.Expect(err).NotTo(HaveOccurred())
	old := httptest.NewServer(p)
	t.Cleanup(func() { old.Close(); p.Close() })
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"+routes), "fast path")
		return c, Deps{}, err
	}, WithMetrics(m))
	t.Cleanup(func() { // runs first: no handler waits on
		mu.Lock()
		defer mu.Unlock()
		for k, ch := range release {
			select {
			case <-ch:
			default:
				close(ch)
			}
			delete(release, k)
		}
	})

	for _, tc := range []struct{ name, addr string }{{"fast", rs.s.Addr()}, {"net/http", old.Listener.Addr().String()}} {
		for i := range 3 { // the second and third on a pooled connection
			key := fmt.Sprintf("%s-%d", strings.ReplaceAll(tc.name, "/", ""), i)
			c, err := net.Dial("tcp", tc.addr)
			g.Expect(err).NotTo(HaveOccurred())
			t.Cleanup(func() { c.Close() })
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			_, err = io.WriteString(c, "GET /r/x?"+key+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			g.Expect(err).NotTo(HaveOccurred())
			g.Eventually(wrote, 10*time.Second).Should(Receive(Equal(key)))
			br := bufio.NewReader(c)
			var resp *http.Response
			if tc.name == "fast" {
				// The fast loop relays the head at once (net/http's
				// server holds it until the handler flushes).
				resp, err = http.ReadResponse(br, nil)
				g.Expect(err).NotTo(HaveOccurred(), tc.name)
			}
			// A request to the silent upstream, sent after the head came,
			// times out: the head's deadline has passed too.
			st, reason := raw(t, tc.addr, "GET /silent/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			g.Expect(st).To(Equal(http.StatusGatewayTimeout), tc.name)
			g.Expect(reason).To(Equal(ReasonUpstreamTimeout), tc.name)
			close(gate(key))
			if resp == nil {
				resp, err = http.ReadResponse(br, nil)
				g.Expect(err).NotTo(HaveOccurred(), tc.name)
			}
			g.Expect(resp.StatusCode).To(Equal(200), tc.name)
			b, err := io.ReadAll(resp.Body)
			g.Expect(err).NotTo(HaveOccurred(), tc.name)
			g.Expect(string(b)).To(Equal("first-last"), tc.name)
			c.Close()
		}
	}
	g.Eventually(func() float64 { return testutil.ToFloat64(m.fastPath.WithLabelValues("r")) }).Should(BeNumerically(">=", 3), "the fast loop served the fast requests")
}

// A client that disconnects while the fast loop waits for the upstream's
// answer is noticed (within clientCheckInterval): the upstream connection
// is closed, so the upstream sees the request abandoned, as on net/http's
// path, instead of being waited for until response_header passes.
func TestFastPathNoticesClientGone(t *testing.T) {
	g := NewWithT(t)
	got := make(chan struct{}, 4)
	abandoned := make(chan struct{}, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			got <- struct{}{}
			<-r.Context().Done()
			abandoned <- struct{}{}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes: [{name: r, upstream: '%s', auth: {type: none}}]\n", up.URL)), "fast path")
		return c, Deps{}, err
	}, WithMetrics(m))

	for i := range 2 { // the second on a fresh connection: the pool holds no broken one
		c, err := net.Dial("tcp", rs.s.Addr())
		g.Expect(err).NotTo(HaveOccurred())
		_, err = io.WriteString(c, "GET /r/hang HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(got, 10*time.Second).Should(Receive(), "request %d reached the upstream", i)
		g.Expect(c.Close()).To(Succeed())
		g.Eventually(abandoned, 10*time.Second).Should(Receive(), "request %d: the upstream connection is closed", i)
	}
	g.Eventually(func() float64 { return testutil.ToFloat64(m.fastPath.WithLabelValues("r")) }).Should(BeNumerically("==", 2), "served on the fast loop")
	res := rawRoundTrip(t, rs.s.Addr(), "GET /r/ok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	g.Expect(res.Status).To(Equal(200))
	g.Expect(res.Body).To(Equal("ok"))
}

// realSigner is the oauth1 package's signer behind sidecar.HeaderSigner,
// as broker adapts it, with a fixed clock and nonce.
type realSigner struct{ s *oauth1.Signer }

func (r realSigner) Sign(req *http.Request, body []byte) error {
	v, err := r.s.Authorization(req.Method, req.URL, req.Header.Get("Content-Type"), body)
	if err == nil {
		req.Header.Set("Authorization", v)
	}
	return err
}

func (r realSigner) AppendAuthorization(dst []byte, method string, u *url.URL, contentType string, body []byte) ([]byte, error) {
	return r.s.AppendAuthorization(dst, method, u, contentType, body)
}

// TestFastPathOAuth1SignsAsNetHTTP sends the same bodyless requests to an
// oauth1 route through the fast loop and through the net/http path (an
// *http.Request signed by Signer.Sign): the upstream gets the same
// Authorization header, byte for byte, given the same nonce and time.
func TestFastPathOAuth1SignsAsNetHTTP(t *testing.T) {
	g := NewWithT(t)
	s, err := oauth1.NewSigner("consumer-key", "consumer-secret",
		oauth1.WithClock(func() time.Time { return time.Unix(1700000000, 0) }),
		oauth1.WithNonce(func() string { return "fixed-nonce" }))
	g.Expect(err).NotTo(HaveOccurred())
	up := plainUpstream(t)
	routes := fmt.Sprintf("routes: [{name: o, upstream: '%s', auth: {type: oauth1, key_file: /k, secret_file: /s}},"+
		" {name: ob, upstream: '%s/base/v2?fixed=1&sp=a%%20b', auth: {type: oauth1, key_file: /k, secret_file: /s}},"+
		" {name: keep, upstream: '%s', auth: {type: oauth1, key_file: /k, secret_file: /s, replace_app_credentials: false}}]\n", up.URL, up.URL, up.URL)
	deps := Deps{Signers: map[string]Signer{"o": realSigner{s}, "ob": realSigner{s}, "keep": realSigner{s}}}
	cfg, err := ParseConfig([]byte(routes), "net/http path")
	g.Expect(err).NotTo(HaveOccurred())
	p, err := NewProxy(cfg, deps)
	g.Expect(err).NotTo(HaveOccurred())
	old := httptest.NewServer(p)
	t.Cleanup(func() { old.Close(); p.Close() })
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"+routes), "fast path")
		return c, deps, err
	}, WithMetrics(m))
	served := func() float64 {
		n := 0.0
		for _, r := range []string{"o", "ob", "keep"} {
			n += testutil.ToFloat64(m.fastPath.WithLabelValues(r))
		}
		return n
	}

	for _, req := range []string{
		"GET /o/v1/items?x=1&y=%41&z=a+b&z=c HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
		"GET /o HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"GET /o/h?q=%E2%82%AC HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /o/f?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: Bearer app-own\r\n\r\n",
		"OPTIONS /ob/x/y?app=2&fixed=3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /ob HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /keep/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic app\r\n\r\n",
		"GET /keep/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	} {
		before := served()
		fast := rawRoundTrip(t, rs.s.Addr(), req)
		g.Eventually(served).Should(Equal(before+1), "served on the fast path: %q", req)
		slow := rawRoundTrip(t, old.Listener.Addr().String(), req)
		g.Expect(fast.Upstream).NotTo(BeNil(), "%q", req)
		g.Expect(slow.Upstream).NotTo(BeNil(), "%q", req)
		if !strings.Contains(req, "Basic app") { // replace_app_credentials: false keeps the app's
			g.Expect(fast.Upstream.Header.Get("Authorization")).To(HavePrefix("OAuth "), "%q", req)
		}
		g.Expect(fast.Upstream.Header["Authorization"]).To(Equal(slow.Upstream.Header["Authorization"]), "%q", req)
		g.Expect(fast.Upstream.Path + "?" + fast.Upstream.Query).To(Equal(slow.Upstream.Path + "?" + slow.Upstream.Query))
	}
}
