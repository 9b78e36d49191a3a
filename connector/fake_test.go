package connector_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/internal/testpki"
)

// fakeConnector is a scripted connector on 127.0.0.1 with real TLS, reached
// as https://connector.localhost:PORT. Tests change its fields under mu.
type fakeConnector struct {
	CA   *testpki.CA
	URL  string
	srv  *httptest.Server
	lis  *countingListener
	mu   sync.Mutex
	apps map[string]string // one-time token -> application
	csrs map[string]string // csr token -> application
	// Subject is the subject announced for an application (%s = app).
	Subject string
	// WantSubject, when set, is what the CSR must carry instead of Subject.
	WantSubject string
	// KeyAlgorithm is announced as certificate.key-algorithm.
	KeyAlgorithm string
	CertTTL      time.Duration
	revoked      map[string]bool
	// OldRevokeSpelling answers revocationCertUrl instead of revokeCertUrl.
	OldRevokeSpelling bool
	EventsURL         string
	RuntimeTokenURL   string
	// Fault, when it returns a status, answers with it instead.
	Fault func(op string) (status int, body string)
	// Hangup closes the connection without an answer for op.
	Hangup map[string]bool
	// Issue, when set, replaces the normal answer to a CSR.
	Issue      func(csr *x509.CertificateRequest) (crt, clientCrt, caCrt string)
	counts     map[string]int
	lastCSR    *x509.CertificateRequest
	peerSerial []string // serials presented on info calls
}

func newFake() *fakeConnector {
	f := &fakeConnector{
		CA:           testpki.NewCA(),
		apps:         map[string]string{},
		csrs:         map[string]string{},
		revoked:      map[string]bool{},
		counts:       map[string]int{},
		Hangup:       map[string]bool{},
		Subject:      "O=Org,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=%s",
		KeyAlgorithm: "rsa2048",
		CertTTL:      time.Hour,
	}
	srvLeaf := f.CA.Issue(testpki.ServerAuth(), testpki.WithDNSNames("connector.localhost"), testpki.WithIPs("127.0.0.1"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/applications/signingRequests/info", f.signingInfo)
	mux.HandleFunc("POST /v1/applications/certificates", f.certificates)
	mux.HandleFunc("GET /v1/applications/management/info", f.info)
	mux.HandleFunc("POST /v1/applications/certificates/renewals", f.renew)
	mux.HandleFunc("POST /v1/applications/certificates/revocations", f.revoke)
	f.srv = httptest.NewUnstartedServer(mux)
	f.lis = &countingListener{Listener: f.srv.Listener}
	f.srv.Listener = f.lis
	cfg := testpki.ServerTLSConfig(srvLeaf, nil)
	cfg.ClientCAs = f.CA.Pool()
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	f.srv.TLS = cfg
	f.srv.StartTLS()
	_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	f.URL = "https://connector.localhost:" + port
	return f
}

func (f *fakeConnector) Close() { f.srv.Close() }

// client returns a connector client that trusts the fake and dials
// *.localhost on loopback; ECDSA keys and fast retries keep tests quick.
func (f *fakeConnector) client(opts ...connector.Option) *connector.Client {
	base := []connector.Option{
		connector.WithRootCAs(f.CA.Pool()),
		connector.WithDialContext((&netx.Resolver{}).Dialer(nil)),
		connector.WithKeyType(connector.ECDSAP256),
		connector.WithRetry(3, time.Millisecond),
	}
	c, err := connector.New(append(base, opts...)...)
	if err != nil {
		panic(err)
	}
	return c
}

// NewToken returns a one-time token URL for app and the token.
func (f *fakeConnector) NewToken(app string) (string, string) {
	tok := randToken()
	f.mu.Lock()
	f.apps[tok] = app
	f.mu.Unlock()
	return f.URL + "/v1/applications/signingRequests/info?token=" + tok, tok
}

func (f *fakeConnector) Count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

func (f *fakeConnector) Set(fn func(f *fakeConnector)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeConnector) Revoke(serial string) {
	f.mu.Lock()
	f.revoked[serial] = true
	f.mu.Unlock()
}

func randToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "tok" + hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"code": status, "error": msg})
}

// before counts op and applies faults; it returns false when it answered.
func (f *fakeConnector) before(op string, w http.ResponseWriter) bool {
	f.mu.Lock()
	f.counts[op]++
	fault, hang := f.Fault, f.Hangup[op]
	f.mu.Unlock()
	if hang {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return false
	}
	if fault != nil {
		if status, body := fault(op); status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			return false
		}
	}
	return true
}

func (f *fakeConnector) api() map[string]string {
	return map[string]string{
		"metadataUrl":     f.URL + "/app/v1/metadata/services",
		"eventsUrl":       f.URL + "/app/v1/events",
		"eventsInfoUrl":   f.URL + "/app/v1/subscribed",
		"infoUrl":         f.URL + "/v1/applications/management/info",
		"certificatesUrl": f.URL + "/v1/applications/certificates",
	}
}

func (f *fakeConnector) signingInfo(w http.ResponseWriter, r *http.Request) {
	if !f.before("pair", w) {
		return
	}
	tok := r.URL.Query().Get("token")
	f.mu.Lock()
	app, ok := f.apps[tok]
	delete(f.apps, tok)
	csrTok := randToken()
	if ok {
		f.csrs[csrTok] = app
	}
	subject, alg := fmt.Sprintf(f.Subject, app), f.KeyAlgorithm
	f.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusForbidden, "Invalid token.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"csrUrl":      f.URL + "/v1/applications/certificates?token=" + csrTok,
		"api":         f.api(),
		"certificate": map[string]string{"subject": subject, "extensions": "", "key-algorithm": alg},
	})
}

func (f *fakeConnector) readCSR(w http.ResponseWriter, r *http.Request) *x509.CertificateRequest {
	var body struct{ CSR string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErr(w, 400, "bad JSON")
		return nil
	}
	p, err := base64.StdEncoding.DecodeString(body.CSR)
	if err != nil {
		writeErr(w, 400, "csr is not base64")
		return nil
	}
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		writeErr(w, 400, "csr is not PEM")
		return nil
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		writeErr(w, 400, "invalid csr")
		return nil
	}
	f.mu.Lock()
	f.lastCSR = csr
	f.mu.Unlock()
	return csr
}

func b64(p []byte) string { return base64.StdEncoding.EncodeToString(p) }

func (f *fakeConnector) sign(w http.ResponseWriter, csr *x509.CertificateRequest) {
	f.mu.Lock()
	issue, ttl := f.Issue, f.CertTTL
	f.mu.Unlock()
	if issue != nil {
		crt, client, ca := issue(csr)
		writeJSON(w, 201, map[string]string{"crt": crt, "clientCrt": client, "caCrt": ca})
		return
	}
	leaf := f.CA.SignCSR(csr, ttl)
	writeJSON(w, 201, map[string]string{
		"crt":       b64(testpki.EncodeCerts(leaf, f.CA.Cert)),
		"clientCrt": b64(testpki.EncodeCerts(leaf)),
		"caCrt":     b64(f.CA.CertPEM()),
	})
}

func (f *fakeConnector) certificates(w http.ResponseWriter, r *http.Request) {
	if !f.before("csr", w) {
		return
	}
	tok := r.URL.Query().Get("token")
	f.mu.Lock()
	app, ok := f.csrs[tok]
	want := f.WantSubject
	if want == "" {
		want = f.Subject
	}
	want = fmt.Sprintf(want, app)
	f.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusForbidden, "Invalid token.")
		return
	}
	csr := f.readCSR(w, r)
	if csr == nil {
		return
	}
	ws, _ := connector.ParseSubject(want)
	if !ws.Matches(csr.RawSubject) {
		writeErr(w, http.StatusBadRequest, "CSR: Invalid subject.")
		return
	}
	f.mu.Lock()
	delete(f.csrs, tok) // used up only by a successful call
	f.mu.Unlock()
	f.sign(w, csr)
}

// peer returns the verified client certificate, or answers 403.
func (f *fakeConnector) peer(w http.ResponseWriter, r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeErr(w, http.StatusForbidden, "No client certificate.")
		return nil
	}
	c := r.TLS.PeerCertificates[0]
	f.mu.Lock()
	revoked := f.revoked[c.SerialNumber.Text(16)]
	f.peerSerial = append(f.peerSerial, c.SerialNumber.Text(16))
	f.mu.Unlock()
	if revoked {
		writeErr(w, http.StatusForbidden, "Certificate has been revoked.")
		return nil
	}
	return c
}

func (f *fakeConnector) info(w http.ResponseWriter, r *http.Request) {
	if !f.before("info", w) {
		return
	}
	c := f.peer(w, r)
	if c == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	urls := map[string]string{
		"metadataUrl":   f.URL + "/app/v1/metadata/services",
		"eventsUrl":     f.URL + "/app/v1/events",
		"eventsInfoUrl": f.URL + "/app/v1/subscribed",
		"renewCertUrl":  f.URL + "/v1/applications/certificates/renewals",
	}
	if f.EventsURL != "" {
		urls["eventsUrl"] = f.EventsURL
	}
	if f.OldRevokeSpelling {
		urls["revocationCertUrl"] = f.URL + "/v1/applications/certificates/revocations"
	} else {
		urls["revokeCertUrl"] = f.URL + "/v1/applications/certificates/revocations"
	}
	out := map[string]any{
		"clientIdentity": map[string]string{"application": c.Subject.CommonName, "group": "g1", "tenant": "t1"},
		"urls":           urls,
		"certificate":    map[string]string{"subject": connectorSubject(c), "extensions": "", "key-algorithm": "rsa2048"},
	}
	if f.RuntimeTokenURL != "" {
		out["runtime"] = map[string]string{"tokenUrl": f.RuntimeTokenURL}
	}
	writeJSON(w, 200, out)
}

func connectorSubject(c *x509.Certificate) string {
	s, err := connector.SubjectOf(c)
	if err != nil {
		return ""
	}
	return s.String()
}

func (f *fakeConnector) renew(w http.ResponseWriter, r *http.Request) {
	if !f.before("renew", w) {
		return
	}
	c := f.peer(w, r)
	if c == nil {
		return
	}
	csr := f.readCSR(w, r)
	if csr == nil {
		return
	}
	if csr.Subject.String() != c.Subject.String() {
		writeErr(w, http.StatusBadRequest, "CSR: Invalid subject.")
		return
	}
	f.sign(w, csr)
}

func (f *fakeConnector) revoke(w http.ResponseWriter, r *http.Request) {
	if !f.before("revoke", w) {
		return
	}
	c := f.peer(w, r)
	if c == nil {
		return
	}
	f.Revoke(c.SerialNumber.Text(16))
	w.WriteHeader(http.StatusCreated)
}

// countingListener counts accepted connections and closes the first Drop of
// them at once (a failure before any request was sent).
type countingListener struct {
	net.Listener
	accepted atomic.Int32
	Drop     atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.accepted.Add(1)
		if l.Drop.Load() > 0 {
			l.Drop.Add(-1)
			c.Close()
			continue
		}
		return c, nil
	}
}

func loopbackDial() func(ctx context.Context, network, address string) (net.Conn, error) {
	return (&netx.Resolver{}).Dialer(nil)
}
