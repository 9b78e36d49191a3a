package sidecar

import (
	"context"
	"crypto/x509"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/internal/testpki"
)

// fakeNetwork is a Deps.Network: fixed roots and the loopback resolver; it
// counts the dialers asked for.
type fakeNetwork struct {
	roots   *x509.CertPool
	dialers atomic.Int32
}

func (n *fakeNetwork) RootCAs() *x509.CertPool { return n.roots }

func (n *fakeNetwork) Dialer(base *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	n.dialers.Add(1)
	return (&netx.Resolver{}).Dialer(base)
}

// With Deps.Network the proxy takes trust and dialling from it and reads
// neither ca_file nor resolve itself: the composition read them once for
// the generation.
func TestProxyTakesTheNetworkFromDeps(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	cfg, err := ParseConfig([]byte("ca_file: /nonexistent/ca.crt\nresolve: ['*.x=not-an-address']\nroutes: [{name: r, upstream: '"+up.url+"', auth: {type: none}}]\n"), "config test")
	g.Expect(err).NotTo(HaveOccurred())
	nw := &fakeNetwork{roots: ca.Pool()}
	p, err := NewProxy(cfg, Deps{Network: nw})
	g.Expect(err).NotTo(HaveOccurred(), "ca_file and resolve are not read again")
	defer p.Close()
	g.Expect(nw.dialers.Load()).To(BeNumerically(">=", 1))

	srv := httptest.NewServer(p)
	defer srv.Close()
	resp, body := do(t, "GET", srv.URL+"/r/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(200), body)
	g.Expect(up.last(t).Path).To(HaveSuffix("/x"))

	// Without Deps.Network the config's ca_file is read (and must exist).
	_, err = NewProxy(cfg, Deps{})
	g.Expect(err).To(MatchError(ContainSubstring("ca_file")))
	g.Expect(strings.Contains(err.Error(), "/nonexistent/ca.crt")).To(BeTrue())
}
