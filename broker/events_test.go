package broker

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

// metric returns the value of the series of name with exactly labels
// (-1 when there is none).
func metric(t *testing.T, m *sidecar.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range s.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return s.GetCounter().GetValue()
		}
	}
	return -1
}

// brokerWithMetrics is rig.broker with metrics of the test's own.
func (r *rig) brokerWithMetrics(t *testing.T, config string, m *sidecar.Metrics) *Broker {
	t.Helper()
	cfgFile := r.write(t, "credbroker.yaml", config)
	vcapFile := r.write(t, "vcap.json", string(r.srv.VCAPServices()))
	b, err := New(Options{ConfigFile: cfgFile, CAFile: r.caFile, Bindings: vcap.Sources{VCAPFile: vcapFile}}, WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Pairing at start, heartbeats and certificate loads are counted by
// outcome; a rotated pair that does not verify is counted as refused.
func TestCertificateEventsAreCounted(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, mockauth.Options{})
	pf, _ := r.pairingURL(t, "pairing-url")
	m := sidecar.NewMetrics()
	b := r.brokerWithMetrics(t, connectorConfig(r, pf, ""), m)
	_, deps := load(t, b)
	defer deps.Close()
	conn := map[string]string{"certificate": "connector", "outcome": "ok"}

	g.Expect(metric(t, m, "credbroker_connector_pairings_total", conn)).To(Equal(1.0))
	g.Expect(metric(t, m, "credbroker_certificate_reloads_total", conn)).To(Equal(1.0), "the load at start")
	g.Eventually(func() float64 { return metric(t, m, "credbroker_connector_heartbeat_results_total", conn) }, 30*time.Second).
		Should(BeNumerically(">=", 1))

	// An expired pair replaces the one on disk: refused, the current pair
	// stays.
	lc := deps.Certificates["connector"].(*liveCert)
	cur := lc.Current()
	expired := testpki.NewCA().Issue(testpki.WithNotBeforeAfter(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
	g.Expect(certwatch.Persist(t.Context(), filepath.Join(r.dir, "connector"),
		certwatch.Files{CertPEM: expired.CertPEM(), KeyPEM: expired.KeyPEM(testpki.PKCS8)})).To(Succeed())
	// The watcher may see the files first; either way one refusal.
	_ = lc.watcher().Reload(t.Context())
	g.Expect(metric(t, m, "credbroker_certificate_reloads_total", map[string]string{"certificate": "connector", "outcome": "refused"})).To(Equal(1.0))
	g.Expect(lc.Current()).To(BeIdenticalTo(cur))
}

// A pairing the connector refuses is counted as an error.
func TestFailedPairingIsCounted(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, mockauth.Options{})
	// A pairing URL whose token the connector does not know.
	u, tok, err := r.srv.NewPairingToken("orders")
	g.Expect(err).NotTo(HaveOccurred())
	pf := r.write(t, "pairing-url", strings.Replace(u, tok, "unknown-"+tok, 1)+"\n")
	m := sidecar.NewMetrics()
	b := r.brokerWithMetrics(t, connectorConfig(r, pf, ""), m)
	_, _, err = b.Load(t.Context())
	g.Expect(err).To(HaveOccurred())
	g.Expect(metric(t, m, "credbroker_connector_pairings_total", map[string]string{"certificate": "connector", "outcome": "error"})).To(Equal(1.0))
	g.Expect(metric(t, m, "credbroker_connector_pairings_total", map[string]string{"certificate": "connector", "outcome": "ok"})).To(Equal(-1.0))
}
