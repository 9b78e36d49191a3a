package main

import (
	"bytes"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/mockauth"
)

// credbroker dials a port-443 mock's names on port 443 to the addresses the
// mock listens on: the two tables (mockauth.Port443Addr, the mock's side, and
// netx.MockPort443Addr, credbroker's side) agree on every name the mock
// serves and on names around them.
func TestMockPort443AddressesMatchNetx(t *testing.T) {
	g := NewWithT(t)
	srv, err := mockauth.Start(mockauth.Options{TwoPhase: true})
	g.Expect(err).NotTo(HaveOccurred())
	defer srv.Close()
	names := append(srv.Hosts(), "localhost", "other.localhost", "x.connector.localhost", "x.gateway.localhost",
		"deep.sub.authentication.localhost", "authentication.localhost.example.com", "example.com", "GATEWAY.localhost.")
	served := 0
	for _, n := range names {
		m, mok := mockauth.Port443Addr(n)
		x, xok := netx.MockPort443Addr(n)
		g.Expect(xok).To(Equal(mok), n)
		g.Expect(x).To(Equal(m), n)
		if mok {
			served++
		}
	}
	g.Expect(served).To(BeNumerically(">=", len(srv.Hosts())), "every name the mock serves has a port-443 address")
}

func TestMockPort443Flag(t *testing.T) {
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(run([]string{"mock", "--port443", "sometimes"}, &out, &errOut)).To(Equal(exitInput))
	g.Expect(errOut.String()).To(ContainSubstring("--port443"))
	out.Reset()
	g.Expect(run([]string{"mock", "--help"}, &out, &errOut)).To(Equal(exitOK))
	g.Expect(out.String()).To(ContainSubstring("port443"))
}
