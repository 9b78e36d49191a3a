package guard

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

func makeCRL(t *testing.T, ca *testpki.CA, serials ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

type mtlsEnv struct {
	*env
	serverCA *testpki.CA
	clientCA *testpki.CA
	mock     *mockauth.Server
	dir      string
	caFile   string
	crlFile  string
}

// startMTLS serves a TLS guard with /callbacks/ (mtls, CA clientCA,
// subject allowlist CN=controller,O=Acme, CRL), /sans/ (mtls, SAN
// allowlist), /open/ (mtls only) and /both/ (jwt or mtls).
func startMTLS(t *testing.T) *mtlsEnv {
	t.Helper()
	e := &mtlsEnv{serverCA: testpki.NewCA(), clientCA: testpki.NewCA(), dir: t.TempDir()}
	e.caFile = tempFile(t, e.dir, "ca.crt", e.clientCA.CertPEM())
	e.crlFile = tempFile(t, e.dir, "crl.pem", makeCRL(t, e.clientCA))
	srvLeaf := e.serverCA.Issue(testpki.ServerAuth(), testpki.WithDNSNames("guard.localhost"))
	mock := startMock(t, mockOptions())
	e.mock = mock
	cfg := &Config{TLS: &TLS{Certificate: "server"}, Rules: []Rule{
		{Path: "/callbacks/", Accept: []Method{MethodMTLS}, CAFile: e.caFile, CRLFile: e.crlFile, Subjects: []string{"CN=controller,O=Acme"}},
		{Path: "/sans/", Accept: []Method{MethodMTLS}, CAFile: e.caFile, SANs: []string{"controller.example.com", "spiffe://acme/controller"}},
		{Path: "/open/", Accept: []Method{MethodMTLS}, CAFile: e.caFile},
		{Path: "/both/", Accept: []Method{MethodJWT, MethodMTLS}, Binding: "xsuaa-secret", CAFile: e.caFile},
	}}
	e.env = startGuard(t, cfg, srvLeaf, WithBindings(mockBindings(mock)), WithJWKSClient(mock.Client()), WithResync(time.Hour))
	return e
}

func (e *mtlsEnv) client(certs ...tls.Certificate) *http.Client {
	return tlsClient(e.serverCA.Pool(), "guard.localhost", certs...)
}

func (e *mtlsEnv) get(t *testing.T, path string, c *http.Client) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url+path, nil)
	return do(t, c, req)
}

var controllerSubject = pkix.Name{CommonName: "controller", Organization: []string{"Acme"}}

func TestMTLS(t *testing.T) {
	e := startMTLS(t)
	good := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject), testpki.WithDNSNames("controller.example.com"))
	intermediate := e.clientCA.NewIntermediate()
	viaIntermediate := intermediate.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	other := testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	expired := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject),
		testpki.WithNotBeforeAfter(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	notYet := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject),
		testpki.WithNotBeforeAfter(time.Now().Add(time.Hour), time.Now().Add(48*time.Hour)))
	stranger := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("intruder"), testpki.WithDNSNames("intruder.example.com"))
	serverOnly := e.clientCA.Issue(testpki.ServerAuth(), testpki.WithSubject(controllerSubject))
	spiffe := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("workload"), testpki.WithURIs("spiffe://acme/controller"))

	for _, tc := range []struct {
		name   string
		path   string
		leaf   *testpki.Leaf
		status int
		reason string
	}{
		{"valid", "/callbacks/x", good, 200, ""},
		{"valid through an intermediate", "/callbacks/x", viaIntermediate, 200, ""},
		{"from another CA", "/callbacks/x", other, 403, ReasonUntrustedCert},
		{"expired", "/callbacks/x", expired, 403, ReasonCertExpired},
		{"not yet valid", "/callbacks/x", notYet, 403, ReasonCertExpired},
		{"not in the subject allowlist", "/callbacks/x", stranger, 403, ReasonSubjectNotAllowed},
		{"server-only certificate", "/callbacks/x", serverOnly, 403, ReasonUntrustedCert},
		{"no certificate", "/callbacks/x", nil, 403, ReasonNoCredentials},
		{"SAN allowed (DNS)", "/sans/x", good, 200, ""},
		{"SAN allowed (URI)", "/sans/x", spiffe, 200, ""},
		{"SAN not allowed", "/sans/x", stranger, 403, ReasonSANNotAllowed},
		{"any subject", "/open/x", stranger, 200, ""},
		{"jwt or mtls: certificate", "/both/x", good, 200, ""},
		{"jwt or mtls: nothing", "/both/x", nil, 401, ReasonNoCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var certs []tls.Certificate
			if tc.leaf != nil {
				certs = append(certs, tc.leaf.TLSCertificate())
			}
			before := e.app.count()
			resp, body := e.get(t, tc.path, e.client(certs...))
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			if tc.status != 200 {
				g.Expect(body).To(ContainSubstring(tc.reason))
				g.Expect(e.app.count()).To(Equal(before))
				return
			}
			seen := e.app.last()
			g.Expect(seen.Header.Get(HeaderAuthMethod)).To(Equal("mtls"))
			g.Expect(seen.Header.Get(HeaderCertSubject)).To(Equal(tc.leaf.Cert.Subject.String()))
			g.Expect(seen.Header.Get(HeaderSubject)).To(Equal(tc.leaf.Cert.Subject.String()))
		})
	}
	g := NewWithT(t)
	resp, _ := e.get(t, "/both/x", e.client())
	g.Expect(resp.Header.Get("WWW-Authenticate")).To(Equal(`Bearer realm="credbroker"`))
	g.Expect(e.obs.get("mtls/refused/" + ReasonUntrustedCert)).To(Equal(2))
	g.Expect(e.obs.get("mtls/accepted")).To(BeNumerically(">=", 5))
}

func TestMTLSRevokedAndCRLRotation(t *testing.T) {
	g := NewWithT(t)
	e := startMTLS(t)
	runGuard(t, e.g)
	revoked := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	later := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	writeFile(t, e.crlFile, makeCRL(t, e.clientCA, revoked.Cert.SerialNumber))
	g.Eventually(func() int {
		resp, _ := e.get(t, "/callbacks/x", e.client(revoked.TLSCertificate()))
		return resp.StatusCode
	}, 5*time.Second, 20*time.Millisecond).Should(Equal(403))
	_, body := e.get(t, "/callbacks/x", e.client(revoked.TLSCertificate()))
	g.Expect(body).To(ContainSubstring(ReasonRevoked))
	resp, _ := e.get(t, "/callbacks/x", e.client(later.TLSCertificate()))
	g.Expect(resp.StatusCode).To(Equal(200))

	// A CRL signed by someone else is refused on reload; the last good one
	// stays in force.
	writeFile(t, e.crlFile, makeCRL(t, testpki.NewCA()))
	g.Eventually(e.logs.String, 5*time.Second, 20*time.Millisecond).Should(ContainSubstring("not signed by a CA of ca_file"))
	resp, _ = e.get(t, "/callbacks/x", e.client(revoked.TLSCertificate()))
	g.Expect(resp.StatusCode).To(Equal(403))
}

func TestMTLSCABundleRotated(t *testing.T) {
	g := NewWithT(t)
	e := startMTLS(t)
	runGuard(t, e.g)
	newCA := testpki.NewCA()
	oldLeaf := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	newLeaf := newCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	resp, _ := e.get(t, "/open/x", e.client(newLeaf.TLSCertificate()))
	g.Expect(resp.StatusCode).To(Equal(403))

	// Garbage first: the last good bundle stays.
	writeFile(t, e.caFile, []byte("not a certificate"))
	g.Eventually(e.logs.String, 5*time.Second, 20*time.Millisecond).Should(ContainSubstring("reload failed"))
	resp, _ = e.get(t, "/open/x", e.client(oldLeaf.TLSCertificate()))
	g.Expect(resp.StatusCode).To(Equal(200))

	// Rotation: both CAs during the overlap, then only the new one. (The
	// CRL of the old CA stays valid because the old CA is in the bundle.)
	writeFile(t, e.caFile, append(e.clientCA.CertPEM(), newCA.CertPEM()...))
	g.Eventually(func() int {
		resp, _ := e.get(t, "/open/x", e.client(newLeaf.TLSCertificate()))
		return resp.StatusCode
	}, 5*time.Second, 20*time.Millisecond).Should(Equal(200))
	resp, _ = e.get(t, "/open/x", e.client(oldLeaf.TLSCertificate()))
	g.Expect(resp.StatusCode).To(Equal(200))
}

// Kubernetes mounts secrets as a ..data symlink that is swapped atomically;
// the watch is on the directory, so the swap is seen.
func TestMTLSKubernetesSecretRotation(t *testing.T) {
	g := NewWithT(t)
	serverCA, ca1, ca2 := testpki.NewCA(), testpki.NewCA(), testpki.NewCA()
	dir := filepath.Join(t.TempDir(), "controller-ca")
	g.Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	g.Expect(testpki.WriteKubernetesDir(dir, map[string][]byte{"ca.crt": ca1.CertPEM()})).To(Succeed())
	cfg := &Config{TLS: &TLS{Certificate: "s"}, Rules: []Rule{{Path: "/", Accept: []Method{MethodMTLS}, CAFile: filepath.Join(dir, "ca.crt")}}}
	e := startGuard(t, cfg, serverCA.Issue(testpki.ServerAuth(), testpki.WithDNSNames("guard.localhost")), WithResync(time.Hour))
	runGuard(t, e.g)
	leaf2 := ca2.Issue(testpki.ClientAuth())
	c := tlsClient(serverCA.Pool(), "guard.localhost", leaf2.TLSCertificate())
	req, _ := http.NewRequest("GET", e.url+"/x", nil)
	resp, _ := do(t, c, req)
	g.Expect(resp.StatusCode).To(Equal(403))
	g.Expect(testpki.WriteKubernetesDir(dir, map[string][]byte{"ca.crt": ca2.CertPEM()})).To(Succeed())
	g.Eventually(func() int {
		req, _ := http.NewRequest("GET", e.url+"/x", nil)
		resp, _ := do(t, c, req)
		return resp.StatusCode
	}, 5*time.Second, 20*time.Millisecond).Should(Equal(200))
	g.Expect(e.logs.String()).To(ContainSubstring("inbound: reloaded"))
}

func TestNewRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA()
	leaf := ca.Issue()
	caFile := tempFile(t, dir, "ca.crt", ca.CertPEM())
	for _, tc := range []struct {
		name string
		rule Rule
		want string
	}{
		{"missing CA file", Rule{Path: "/", Accept: []Method{MethodMTLS}, CAFile: filepath.Join(dir, "nope")}, "rules[0]: "},
		{"empty CA file", Rule{Path: "/", Accept: []Method{MethodMTLS}, CAFile: tempFile(t, dir, "empty", nil)}, "holds no PEM certificate"},
		{"leaf as CA", Rule{Path: "/", Accept: []Method{MethodMTLS}, CAFile: tempFile(t, dir, "leaf", leaf.CertPEM()[:len(leaf.CertPEM())])}, "is not a CA"},
		{"CRL garbage", Rule{Path: "/", Accept: []Method{MethodMTLS}, CAFile: caFile, CRLFile: tempFile(t, dir, "crl", []byte("garbage"))}, "crl_file"},
		{"missing key file", Rule{Path: "/", Accept: []Method{MethodOAuth1}, OAuth1: &OAuth1{KeyFile: filepath.Join(dir, "nokey"), SecretFile: caFile}}, "oauth1.key_file"},
		{"empty secret file", Rule{Path: "/", Accept: []Method{MethodOAuth1}, OAuth1: &OAuth1{KeyFile: caFile, SecretFile: tempFile(t, dir, "blank", []byte(" \n"))}}, "oauth1.secret_file"},
		{"unknown binding", Rule{Path: "/", Accept: []Method{MethodJWT}, Binding: "nope"}, `no binding "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := &Config{Listen: ":0", App: "http://127.0.0.1:1", TLS: &TLS{Certificate: "s"}, Rules: []Rule{tc.rule}}
			_, err := New(cfg, WithBindings(StaticBindings()), WithGetCertificate(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }))
			g.Expect(err).To(MatchError(ErrSetup))
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
			g.Expect(strings.HasPrefix(err.Error(), "guard: inbound.rules[0]")).To(BeTrue(), err.Error())
		})
	}
	g := NewWithT(t)
	_, err := New(&Config{Listen: ":0", App: "http://127.0.0.1:1", TLS: &TLS{Certificate: "s"}, Rules: []Rule{{Path: "/", Accept: []Method{MethodMTLS}, CAFile: caFile}}})
	g.Expect(err).To(MatchError(ContainSubstring("inbound.tls.certificate")))
}

// On a rule that accepts jwt or mtls, a certificate the rule refuses does
// not stop a valid token from being accepted, and the other way round.
func TestJWTOrMTLS(t *testing.T) {
	g := NewWithT(t)
	e := startMTLS(t)
	stranger := testpki.NewCA().Issue(testpki.ClientAuth())
	good := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))

	req, _ := http.NewRequest("GET", e.url+"/both/x", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, body := do(t, e.client(good.TLSCertificate()), req)
	g.Expect(resp.StatusCode).To(Equal(200), body)
	g.Expect(e.app.last().Header.Get(HeaderAuthMethod)).To(Equal("mtls"))

	req, _ = http.NewRequest("GET", e.url+"/both/x", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, body = do(t, e.client(stranger.TLSCertificate()), req)
	g.Expect(resp.StatusCode).To(Equal(403), body) // the first failure (the certificate) is reported
	g.Expect(body).To(ContainSubstring(ReasonUntrustedCert))

	req, _ = http.NewRequest("GET", e.url+"/both/x", nil)
	req.Header.Set("Authorization", "Bearer "+fetchToken(t, e.mock, false))
	resp, body = do(t, e.client(stranger.TLSCertificate()), req)
	g.Expect(resp.StatusCode).To(Equal(200), body)
	g.Expect(e.app.last().Header.Get(HeaderAuthMethod)).To(Equal("jwt"))
}
