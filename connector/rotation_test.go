package connector_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// handshakeRecorder is a TLS server (certificates from testpki) that requires
// a client certificate and records the CN of the client certificate each
// handshake presented, in order. Like a gateway, it looks at client
// certificates only in the handshake.
type handshakeRecorder struct {
	ca  *testpki.CA
	srv *httptest.Server
	mu  sync.Mutex
	cns []string // one per handshake
}

func newHandshakeRecorder(t *testing.T) *handshakeRecorder {
	h := &handshakeRecorder{ca: testpki.NewCA()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"clientIdentity":{"application":"app"},"urls":{"renewCertUrl":"https://connector.localhost/renew"}}`))
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"code":503,"error":"down"}`))
	})
	h.srv = httptest.NewUnstartedServer(mux)
	tc := testpki.ServerTLSConfig(h.ca.Issue(testpki.ServerAuth(), testpki.WithDNSNames("connector.localhost")), h.ca.Pool())
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		cn := ""
		if len(cs.PeerCertificates) > 0 {
			cn = cs.PeerCertificates[0].Subject.CommonName
		}
		h.cns = append(h.cns, cn)
		return nil
	}
	h.srv.TLS = tc
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

// url is https://connector.localhost:PORT/path.
func (h *handshakeRecorder) url(path string) string {
	return "https://connector.localhost:" + h.srv.URL[len("https://127.0.0.1:"):] + path
}

func (h *handshakeRecorder) handshakes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.cns...)
}

// hookCert is a GetClientCertificate hook whose certificate can be swapped,
// as certwatch's is on a renewal.
type hookCert struct {
	p atomic.Pointer[tls.Certificate]
}

func (h *hookCert) set(c tls.Certificate) { h.p.Store(&c) }
func (h *hookCert) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return h.p.Load(), nil
}

func (h *handshakeRecorder) clientCert(cn string) tls.Certificate {
	return h.ca.Issue(testpki.ClientAuth(), testpki.WithCommonName(cn), testpki.WithValidity(time.Hour)).TLSCertificate()
}

func (h *handshakeRecorder) client(hook *hookCert) *connector.Client {
	c, err := connector.New(
		connector.WithRootCAs(h.ca.Pool()),
		connector.WithDialContext(mockauth.DialContext),
		connector.WithGetClientCertificate(hook.get),
		connector.WithRetry(1, time.Millisecond),
	)
	if err != nil {
		panic(err)
	}
	return c
}

// TestInfoAfterRotationPresentsTheNewCertificate: a pooled connection keeps
// the certificate of its handshake, so the first management info call after
// the hook's certificate changed must not reuse it.
func TestInfoAfterRotationPresentsTheNewCertificate(t *testing.T) {
	g := NewWithT(t)
	h := newHandshakeRecorder(t)
	var hook hookCert
	hook.set(h.clientCert("old"))
	c := h.client(&hook)
	defer c.CloseIdleConnections()

	for range 2 {
		_, err := c.Info(ctx(t), h.url("/info"))
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(h.handshakes()).To(Equal([]string{"old"}), "the keep-alive connection is reused while the certificate stays")

	hook.set(h.clientCert("new"))
	_, err := c.Info(ctx(t), h.url("/info"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h.handshakes()).To(Equal([]string{"old", "new"}), "the first call after the rotation presents the new certificate")
}

// TestHeartbeatAfterRenewalPresentsTheNewCertificate drives the heartbeat
// (its own beats, as the sidecar runs it) across a rotation.
func TestHeartbeatAfterRenewalPresentsTheNewCertificate(t *testing.T) {
	g := NewWithT(t)
	h := newHandshakeRecorder(t)
	var hook hookCert
	hook.set(h.clientCert("before-renewal"))
	c := h.client(&hook)
	defer c.CloseIdleConnections()
	hb, err := connector.NewHeartbeat(c, h.url("/info"))
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(hb.Beat(ctx(t)).Err).NotTo(HaveOccurred())
	g.Expect(hb.Beat(ctx(t)).Err).NotTo(HaveOccurred())
	hook.set(h.clientCert("after-renewal"))
	g.Expect(hb.Beat(ctx(t)).Err).NotTo(HaveOccurred())
	g.Expect(h.handshakes()).To(Equal([]string{"before-renewal", "after-renewal"}))
}

// TestRevokeAfterRotationPresentsTheNewCertificate: revoking must revoke the
// certificate in use, not the one of a pooled connection.
func TestRevokeAfterRotationPresentsTheNewCertificate(t *testing.T) {
	g := NewWithT(t)
	h := newHandshakeRecorder(t)
	var hook hookCert
	hook.set(h.clientCert("first"))
	c := h.client(&hook)
	defer c.CloseIdleConnections()
	_, err := c.Info(ctx(t), h.url("/info"))
	g.Expect(err).NotTo(HaveOccurred())
	hook.set(h.clientCert("second"))
	g.Expect(c.Revoke(ctx(t), h.url("/revoke"))).To(Succeed())
	g.Expect(h.handshakes()).To(Equal([]string{"first", "second"}))
}

// TestRenewalPresentsTheCertificateItRenews: each renewal presents the
// certificate being renewed (its own connection), whatever an earlier call
// or the hook presented.
func TestRenewalPresentsTheCertificateItRenews(t *testing.T) {
	g := NewWithT(t)
	h := newHandshakeRecorder(t)
	var hook hookCert
	hook.set(h.clientCert("hook"))
	c := h.client(&hook)
	defer c.CloseIdleConnections()
	_, err := c.Info(ctx(t), h.url("/info"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, cn := range []string{"first", "second"} {
		_, err = c.RenewCertificate(ctx(t), h.url("/renew"), h.clientCert(cn))
		g.Expect(err).To(HaveOccurred(), "the recorder refuses renewals; the handshake is what counts")
	}
	g.Expect(h.handshakes()).To(Equal([]string{"hook", "first", "second"}))
}
