package sidecar

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/internal/testpki"
)

// A request with a body to an upstream that cannot be reached is answered
// 502 and leaves the server intact: no goroutine still reads the app's
// body after the handler has returned (net/http panics "invalid concurrent
// Body.Read call" when one does).
func TestProxyBodyToUnreachableUpstream(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	caFile := t.TempDir() + "/ca.crt"
	g.Expect(os.WriteFile(caFile, ca.CertPEM(), 0o600)).To(Succeed())
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`ca_file: %s
routes:
  - {name: plain, upstream: "http://127.0.0.1:%d", auth: {type: none}}
  - {name: tls, upstream: "https://localhost:%d", auth: {type: none}}
  - {name: bearer, upstream: "http://127.0.0.1:%d", auth: {type: bearer, binding: b}}
`, caFile, closedPort, closedPort, closedPort)), "config test")
	g.Expect(err).NotTo(HaveOccurred())
	p, err := NewProxy(cfg, Deps{Tokens: &fakeTokens{}}, WithMetrics(NewMetrics()))
	g.Expect(err).NotTo(HaveOccurred())
	var errLog syncbuf.Buffer
	srv := httptest.NewUnstartedServer(p)
	srv.Config.ErrorLog = log.New(&errLog, "", 0)
	srv.Start()
	t.Cleanup(func() { srv.Close(); p.Close() })

	for _, route := range []string{"plain", "tls", "bearer"} {
		for _, size := range []int{1, 1000, 100 << 10} {
			for i := 0; i < 3; i++ {
				resp, _ := do(t, "POST", srv.URL+"/"+route+"/x", strings.NewReader(strings.Repeat("b", size)), map[string]string{"Content-Type": "text/plain"})
				g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway), route)
				g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonUpstreamUnreachable), route)
			}
		}
	}
	srv.Close() // waits for the connections' goroutines
	g.Expect(errLog.String()).NotTo(ContainSubstring("panic"))
}
