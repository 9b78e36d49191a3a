package main

import (
	"bytes"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/testpki"
)

func summaryFor(id connector.ClientIdentity) string {
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.ClientAuth(), testpki.WithCommonName("app"), testpki.WithSerial(2))
	p := &connector.Pairing{Certificate: connector.Certificate{Key: leaf.Key, Chain: []*x509.Certificate{leaf.Cert}}, TokenURL: "https://connector.localhost/v1/applications/signingRequests/info"}
	now := time.Now()
	conn := &connector.Connection{Pairing: p, ConnectionInfo: connector.NewConnectionInfo(p, &connector.ManagementInfo{ClientIdentity: id}, now)}
	var b bytes.Buffer
	printPairSummary(&b, "/tmp/x", conn, now)
	return b.String()
}

// TestPairSummaryOfARuntimeHasNoEmptyApplication: a runtime's identity has a
// group and a tenant but no application.
func TestPairSummaryOfARuntimeHasNoEmptyApplication(t *testing.T) {
	g := NewWithT(t)
	out := summaryFor(connector.ClientIdentity{Group: "g1", Tenant: "t1"})
	g.Expect(out).NotTo(ContainSubstring("application:"))
	g.Expect(out).To(MatchRegexp(`(?m)^  runtime: +group "g1", tenant "t1"$`))

	out = summaryFor(connector.ClientIdentity{Application: "app1"})
	g.Expect(out).To(MatchRegexp(`(?m)^  application: +app1$`))
	out = summaryFor(connector.ClientIdentity{Application: "app1", Tenant: "t1"})
	g.Expect(out).To(MatchRegexp(`(?m)^  application: +app1 \(tenant "t1"\)$`))
}

// TestPairSummaryShowsTheFingerprint: serials repeat (the Kyma connector
// issues serial 2 every time); the fingerprint tells certificates apart.
func TestPairSummaryShowsTheFingerprint(t *testing.T) {
	g := NewWithT(t)
	out := summaryFor(connector.ClientIdentity{Application: "app1"})
	g.Expect(out).To(MatchRegexp(`(?m)^  sha256: +[0-9a-f]{64}$`))
	g.Expect(strings.Count(out, "serial:")).To(Equal(1))
}
