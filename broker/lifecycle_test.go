package broker

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/mockauth"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

// rig is a mock auth server with its CA on disk and a temp directory for
// the broker's config and certificate directories.
type rig struct {
	srv    *mockauth.Server
	dir    string
	caFile string
}

func newRig(t *testing.T, o mockauth.Options) *rig {
	t.Helper()
	srv := mockauth.StartTest(t, o)
	r := &rig{srv: srv, dir: t.TempDir()}
	r.caFile = filepath.Join(r.dir, "ca.crt")
	r.write(t, "ca.crt", string(srv.CACertPEM()))
	return r
}

func (r *rig) write(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pairingURL writes a fresh one-time token URL to a file and returns its
// path and the token (a secret the tests look for in errors).
func (r *rig) pairingURL(t *testing.T, name string) (path, token string) {
	t.Helper()
	u, tok, err := r.srv.NewPairingToken("orders")
	if err != nil {
		t.Fatal(err)
	}
	return r.write(t, name, u+"\n"), tok
}

// broker returns a broker whose config file is config, with the mock's
// CA trusted and its bindings read.
func (r *rig) broker(t *testing.T, config string) (*Broker, string) {
	t.Helper()
	cfgFile := r.write(t, "credbroker.yaml", config)
	vcapFile := r.write(t, "vcap.json", string(r.srv.VCAPServices()))
	b, err := New(Options{ConfigFile: cfgFile, CAFile: r.caFile, Bindings: vcap.Sources{VCAPFile: vcapFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, cfgFile
}

func load(t *testing.T, b *Broker) (*sidecar.Config, sidecar.Deps) {
	t.Helper()
	cfg, deps, err := b.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg, deps
}

func fingerprint(c *tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}

func connectorConfig(r *rig, pairingFile string, extra string) string {
	return fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ncertificates:\n  - name: connector\n    dir: %s\n    pairing_url_file: %s\n    renew: true\n%s",
		filepath.Join(r.dir, "connector"), pairingFile, extra)
}

// Pairing at start: an empty directory and a pairing URL give a pair on
// disk, a live certificate and a heartbeat that proves it.
func TestPairsAtStartAndHeartbeats(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, mockauth.Options{})
	pf, tok := r.pairingURL(t, "pairing-url")
	b, _ := r.broker(t, connectorConfig(r, pf, ""))
	_, deps := load(t, b)
	defer deps.Close()

	lc := deps.Certificates["connector"].(*liveCert)
	g.Expect(lc).NotTo(BeNil())
	cur := lc.Current()
	g.Expect(cur).NotTo(BeNil(), "paired at start")
	issued := r.srv.Issued()
	g.Expect(issued).To(HaveLen(1))
	g.Expect(fingerprint(cur)).To(Equal(issued[0].SHA256))
	ci, err := connector.LoadConnectionInfo(filepath.Join(r.dir, "connector", certwatch.ConnectionFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ci.SHA256).To(Equal(issued[0].SHA256))
	raw, _ := os.ReadFile(filepath.Join(r.dir, "connector", certwatch.ConnectionFile))
	g.Expect(string(raw)).NotTo(ContainSubstring(tok))

	g.Eventually(func() int { return lc.State().Heartbeats }, 30*time.Second).Should(BeNumerically(">=", 1))
	g.Expect(r.srv.Stats().InfoRequests).To(BeNumerically(">=", 1))
}

// A reload with the same inputs shares the certificate lifecycle and the
// token client (no second pairing, the token cache kept); the pool closes
// what the last generation that held it releases.
func TestReloadSharesAndReleases(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, mockauth.Options{})
	pf, _ := r.pairingURL(t, "pairing-url")
	binding := r.srv.Info().SecretBinding
	route := fmt.Sprintf("routes: [{name: orders, upstream: 'https://orders.localhost', auth: {type: bearer, binding: %s}}]\n", binding)
	b, cfgFile := r.broker(t, connectorConfig(r, pf, route))

	_, gen1 := load(t, b)
	_, gen2 := load(t, b)
	g.Expect(gen2.Certificates["connector"]).To(BeIdenticalTo(gen1.Certificates["connector"]), "one lifecycle for both generations")
	g.Expect(r.srv.Issued()).To(HaveLen(1), "a reload never pairs again")
	s1, err := gen1.Tokens.Source(binding, nil, "")
	g.Expect(err).NotTo(HaveOccurred())
	s2, err := gen2.Tokens.Source(binding, nil, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s2.(*tokenSource).c).To(BeIdenticalTo(s1.(*tokenSource).c), "one token client: the cache survives the reload")
	_, err = s1.Token(t.Context(), sidecar.TokenRequest{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = s2.Token(t.Context(), sidecar.TokenRequest{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.srv.Stats().TokensIssued).To(Equal(1), "the second generation's token came from the cache")

	gen1.Close()
	g.Expect(gen2.Certificates["connector"].Current()).NotTo(BeNil(), "still held by the second generation")
	g.Expect(b.certs.items).To(HaveLen(1))

	// A changed certificate entry (no renewal) is a new lifecycle; the old
	// one is closed when its last generation goes.
	g.Expect(os.WriteFile(cfgFile, []byte(strings.Replace(connectorConfig(r, pf, route), "renew: true", "renew: false", 1)), 0o600)).To(Succeed())
	_, gen3 := load(t, b)
	g.Expect(gen3.Certificates["connector"]).NotTo(BeIdenticalTo(gen2.Certificates["connector"]))
	g.Expect(b.certs.items).To(HaveLen(2))
	gen2.Close()
	g.Expect(b.certs.items).To(HaveLen(1), "the renewing lifecycle was released and closed")
	g.Expect(b.tokens.items).To(BeEmpty(), "no generation holds a token client")
	gen3.Close()
	g.Expect(b.certs.items).To(BeEmpty())
}

// Phase 2: the central connector's management info names the runtime
// connector's one-time token URL; the broker pairs it with the central
// certificate and keeps both.
func TestPhaseTwoPairsTheRuntimeConnector(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, mockauth.Options{TwoPhase: true})
	pf, _ := r.pairingURL(t, "pairing-url")
	runtimeDir := filepath.Join(r.dir, "runtime")
	b, _ := r.broker(t, connectorConfig(r, pf, "")+"    runtime_dir: "+runtimeDir+"\n")
	_, deps := load(t, b)
	defer deps.Close()

	central, runtime := deps.Certificates["connector"].Current(), deps.Certificates["connector-runtime"].Current()
	g.Expect(central).NotTo(BeNil())
	g.Expect(runtime).NotTo(BeNil())
	roots := x509.NewCertPool()
	g.Expect(roots.AppendCertsFromPEM(r.srv.RuntimeConnectorCAPEM())).To(BeTrue())
	leaf, err := x509.ParseCertificate(runtime.Certificate[0])
	g.Expect(err).NotTo(HaveOccurred())
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	g.Expect(err).NotTo(HaveOccurred(), "issued by the runtime connector")
	var kinds []bool
	for _, c := range r.srv.Issued() {
		kinds = append(kinds, c.Runtime)
	}
	g.Expect(kinds).To(ConsistOf(false, true))
	g.Expect(filepath.Join(runtimeDir, certwatch.ConnectionFile)).To(BeAnExistingFile())
}

// Renewal: before the certificate runs out the broker renews it through the
// connector, connection.json follows the new certificate, and the heartbeat
// proves it.
func TestRenewsThroughTheConnector(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, mockauth.Options{CertTTL: 6 * time.Second})
	pf, _ := r.pairingURL(t, "pairing-url")
	b, _ := r.broker(t, connectorConfig(r, pf, ""))
	_, deps := load(t, b)
	defer deps.Close()
	lc := deps.Certificates["connector"].(*liveCert)
	first := fingerprint(lc.Current())

	g.Eventually(func() int { return lc.State().Renewals }, 30*time.Second).Should(BeNumerically(">=", 1))
	renewed := fingerprint(lc.Current())
	g.Expect(renewed).NotTo(Equal(first))
	g.Expect(r.srv.Stats().Renewals).To(BeNumerically(">=", 1))
	// The heartbeat beats at start and again right after the renewal (its
	// interval, a minute, is longer than this test).
	g.Eventually(func() int { return lc.State().Heartbeats }, 10*time.Second).Should(BeNumerically(">=", 2), "the renewed certificate is proven at once")
	g.Eventually(func() string {
		ci, _ := connector.LoadConnectionInfo(filepath.Join(r.dir, "connector", certwatch.ConnectionFile))
		return ci.SHA256
	}, 10*time.Second).Should(Equal(renewed))
}

// A revoked certificate cannot be renewed: the state says revoked and that
// a token is needed, and the certificate stays in use until it expires.
func TestRevokedCertificateStaysInUse(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, mockauth.Options{CertTTL: 6 * time.Second})
	pf, _ := r.pairingURL(t, "pairing-url")
	b, _ := r.broker(t, connectorConfig(r, pf, ""))
	_, deps := load(t, b)
	defer deps.Close()
	lc := deps.Certificates["connector"].(*liveCert)
	fp := fingerprint(lc.Current())
	g.Expect(r.srv.RevokeSHA256(fp)).To(Succeed())

	g.Eventually(func() bool { return lc.State().Revoked }, 30*time.Second).Should(BeTrue())
	st := lc.State()
	g.Expect(st.NeedsToken).To(BeTrue())
	g.Expect(st.Renewals).To(Equal(0))
	g.Expect(lc.Current()).NotTo(BeNil(), "the revoked certificate is still the one in use")
	g.Expect(fingerprint(lc.Current())).To(Equal(fp))
}

// A failed pairing (a used token) is a runtime error that names the
// connector without the token, writes nothing and holds nothing.
func TestFailedPairingLeavesNothing(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, mockauth.Options{})
	pf, tok := r.pairingURL(t, "pairing-url")
	u, _ := os.ReadFile(pf)
	n, err := NewNetwork(r.caFile, nil)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = Pair(t.Context(), PairRequest{TokenURL: strings.TrimSpace(string(u)), Dir: filepath.Join(r.dir, "elsewhere")}, n, nil)
	g.Expect(err).NotTo(HaveOccurred(), "the token is used up elsewhere")

	b, _ := r.broker(t, connectorConfig(r, pf, ""))
	_, _, err = b.Load(t.Context())
	g.Expect(err).To(HaveOccurred())
	g.Expect(errors.Is(err, ErrConfig)).To(BeFalse(), "the connector said no: a runtime failure (exit 1)")
	g.Expect(err.Error()).To(ContainSubstring(`certificates[0] "connector"`))
	g.Expect(err.Error()).NotTo(ContainSubstring(tok))
	g.Expect(filepath.Join(r.dir, "connector", "tls.key")).NotTo(BeAnExistingFile())
	g.Expect(b.certs.items).To(BeEmpty(), "nothing held after the failure")
	g.Expect(r.srv.Issued()).To(HaveLen(1))
}

// The connector client that renews is built before the watcher whose
// certificate it presents: until the watcher exists the certificate
// answers "no pair yet" and never dereferences a nil watcher.
func TestLiveCertBeforeItsWatcher(t *testing.T) {
	g := NewWithT(t)
	lc := &liveCert{name: "connector"}
	_, err := lc.GetClientCertificate(nil)
	g.Expect(errors.Is(err, certwatch.ErrNoPair)).To(BeTrue(), "%v", err)
	_, err = lc.GetCertificate(nil)
	g.Expect(errors.Is(err, certwatch.ErrNoPair)).To(BeTrue())
	g.Expect(lc.Current()).To(BeNil())
	g.Expect(lc.State().LastError).NotTo(BeEmpty())
}
