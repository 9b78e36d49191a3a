package connector

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/credbroker/credbroker/internal/testpki"
)

// A TLS alert is read by its type, never by its message: a refusal the
// server sent maps to its sentinel however the error is worded or wrapped.
func TestTLSRefusalReadsTheAlertByType(t *testing.T) {
	// What crypto/tls returns for an alert from the peer: a "remote error"
	// whose Err is its unexported alert type. Dial a server that refuses
	// every client certificate to get the real thing.
	// The server refuses a client certificate from an unknown CA with a
	// unknown_ca alert (48), which TLS 1.3 delivers on the first read.
	remote := func() error {
		ca := testpki.NewCA()
		ln, err := tls.Listen("tcp", "127.0.0.1:0", testpki.ServerTLSConfig(ca.Issue(testpki.ServerAuth(), testpki.WithIPs("127.0.0.1")), ca.Pool()))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		stranger := testpki.NewCA().Issue(testpki.ClientAuth())
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{stranger.TLSCertificate()}})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		return err
	}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("wrapped: %w", tls.AlertError(44)), ErrRevoked},
		{tls.AlertError(116), ErrUnauthorized},
		{&net.OpError{Op: "read", Err: errors.New("remote error: tls: bad certificate")}, nil},
		{errors.New("tls: bad certificate"), nil},
	} {
		if got := tlsRefusal(tc.err); got != tc.want {
			t.Errorf("tlsRefusal(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	err := remote()
	if a, ok := remoteAlert(err); !ok || a != 48 {
		t.Errorf("remoteAlert(%v) = %d, %v; want the alert the server sent, 48", err, a, ok)
	}
	if got := tlsRefusal(err); got != ErrUnauthorized {
		t.Errorf("tlsRefusal(%v) = %v, want ErrUnauthorized", err, got)
	}
}
