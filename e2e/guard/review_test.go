package guard_test

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

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// startGuardRig starts a mock, an app and `credbroker run` with extra
// top-level config and one jwt rule for /, and waits for the inbound
// listener.
func startGuardRig(extra string, rules ...string) (*mockauth.Server, string) {
	GinkgoHelper()
	rig := newGuardRig()
	var inboundHP string
	var more strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&more, "    - %s\n", strings.ReplaceAll(r, "BINDING", mockauth.SecretBindingName))
	}
	harness.StartSidecarWith(bin, rig.sidecarOptions(), func() string {
		inboundHP = fmt.Sprintf("127.0.0.1:%d", harness.FreePort())
		return fmt.Sprintf(`%s
inbound:
  listen: %s
  app: %s
  rules:
%s    - {path: /, accept: [jwt], binding: %s}
`, extra, inboundHP, rig.appURL, more.String(), mockauth.SecretBindingName)
	})
	waitListening(inboundHP)
	return rig.srv, inboundHP
}

func mintFor(srv *mockauth.Server) string {
	GinkgoHelper()
	c, err := srv.Claims("provider")
	Expect(err).NotTo(HaveOccurred())
	tok, err := srv.MintToken(c)
	Expect(err).NotTo(HaveOccurred())
	return tok
}

// Found by the re-review of issue 15: a rule for /admin/ did not cover
// /admin, which fell to the catch-all; Express (non-strict routing, and
// every router mounted with app.use("/admin", …)) and Spring before 6
// (trailing-slash matching) serve /admin with the /admin/ handler.
var _ = Describe("a rule whose path ends in /", func() {
	It("also covers the path without its trailing /", func() {
		srv, inboundHP := startGuardRig("", "{path: /admin/, accept: [jwt], binding: BINDING, scopes: [admin]}")
		tok := mintFor(srv)
		client := &http.Client{Timeout: 10 * time.Second}
		for target, want := range map[string]int{"/admin": 403, "/admin/": 403, "/admin/x": 403, "/adminx": 200, "/x": 200} {
			req, _ := http.NewRequest("GET", "http://"+inboundHP+target, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(want), target)
			if want == 403 {
				Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("insufficient_scope"), target)
			}
		}
	})
})

// Found by the re-review of issue 15: a malformed chunked body of an
// accepted request was answered 502 app_unreachable, blaming the app.
var _ = Describe("the inbound guard and a malformed request body", func() {
	It("answers a malformed chunked body of an accepted request with 400 bad_request_body, not 502", func() {
		srv, inboundHP := startGuardRig("")
		conn, err := net.DialTimeout("tcp", inboundHP, 5*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(conn.SetDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
		_, err = io.WriteString(conn, "POST /api/x HTTP/1.1\r\nHost: app.example\r\nAuthorization: Bearer "+mintFor(srv)+
			"\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\nabc\r\n0\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		Expect(err).NotTo(HaveOccurred())
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(400), string(b))
		Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("bad_request_body"), string(b))
	})
})

// Found by the re-review of issue 15: the inbound listener is the one meant
// to be reachable from outside, and its connection cap (item 12) let an
// unauthenticated caller hold every slot: one request per connection, a
// 401, and the connection idled in keep-alive for client_idle_timeout
// (120 s) while every legitimate caller got 503 connection-limit. A refused
// request now closes its connection, so parking connections needs no less
// than a request in progress (bounded by the header timeout).
var _ = Describe("the inbound listener under a flood of unauthenticated connections", func() {
	It("closes refused connections, so the cap cannot be held by callers without a credential", func() {
		const limit, flood = 20, 40
		srv, inboundHP := startGuardRig(fmt.Sprintf("max_connections: {inbound: %d}\n", limit))

		// The attacker: connections that each send one request without a
		// credential, read the answer, and stay open.
		refused, keptOpen := 0, 0
		for range flood {
			c, err := net.DialTimeout("tcp", inboundHP, 5*time.Second)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(c.Close)
			Expect(c.SetDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
			_, err = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: app.example\r\n\r\n")
			Expect(err).NotTo(HaveOccurred())
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				refused++
				if !resp.Close {
					keptOpen++
				}
			}
		}
		Expect(refused).To(BeNumerically(">=", limit))

		// With the attacker's connections still open on its side, a caller
		// with a token is served.
		tok := mintFor(srv)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		Eventually(func() (int, error) {
			req, _ := http.NewRequest("GET", "http://"+inboundHP+"/x", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode, nil
		}).WithTimeout(20*time.Second).WithPolling(200*time.Millisecond).Should(Equal(http.StatusOK),
			"a legitimate caller was locked out by idle refused connections")
		Expect(keptOpen).To(BeZero(), "refused requests left their connections open")
	})
})
